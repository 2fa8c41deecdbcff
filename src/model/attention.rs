//! Attention layers: plain multi-head (optionally GQA) and grouped
//! differential attention (docs/design: `shared/design/gda.md` §1–2).
//!
//! Head layout of `gda`, for H_s signal heads, H_n noise heads, H_kv K/V heads
//! and G = H_s / H_n:
//! - signal head i belongs to group g = i / G and uses K/V head
//!   g / (H_n / H_kv) (contiguous groups, as GQA and SDPA's `enable_gqa`);
//! - noise head g is computed once and subtracted, scaled by λ, from each of
//!   the G signal heads of its group (`noise_scope = "one"`: from the first
//!   only; the others are plain softmax heads);
//! - K2 heads may differ from K1/V heads (`noise_kv_heads`; the no-share
//!   ablation gives each noise head its own K2): noise head j reads K2 head
//!   j / (H_n / H_k2) and V head j / (H_n / H_kv);
//! - V is 2d wide; each head output goes through the shared `subln` RMSNorm
//!   over 2d and is scaled by (1 − λ_init).

use tch::{nn, Kind, Tensor};

use super::fused;
use super::layers::{at_least_f32, Linear, RmsNorm, Rope};
use crate::config::{AttentionKind, ModelConfig, NoiseScope};

/// Which computation to run: fused SDPA (training; no T×T map is stored) or
/// explicit softmax maps (tests and attention analysis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fused,
    Materialised,
}

/// Attention maps of one layer from the materialised path.
pub struct AttnMaps {
    /// softmax(Q1 K1ᵀ/√d) for gda, the plain softmax map for standard: (B, H_s, T, T).
    pub signal: Tensor,
    /// softmax(Q2 K2ᵀ/√d), one per group: (B, H_n, T, T); `None` for standard.
    pub noise: Option<Tensor>,
    /// signal − λ·noise (the map actually applied to V): (B, H_s, T, T);
    /// under `noise_scope = "one"` just the signal map for all heads but the
    /// first of each group.
    pub effective: Tensor,
    pub lambda: Option<f64>,
}

/// Keys (after RoPE) and values of every position one attention layer has
/// seen, for incremental decoding: a forward with a cache attends from its
/// new positions to these and the new ones, and appends the new ones.
/// Standard attention keeps one key tensor (K), gda two (K1, K2); each is
/// (B, H_k, T_past, d), values (B, H_kv, T_past, width).
#[derive(Default)]
pub struct LayerCache {
    keys: Vec<Tensor>,
    values: Option<Tensor>,
}

impl LayerCache {
    /// Positions held.
    pub fn len(&self) -> i64 {
        self.values.as_ref().map_or(0, |v| v.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache of the batch rows `rows` (an int64 index, repeats allowed):
    /// one context's positions shared by several continuations.
    pub(super) fn select_rows(&self, rows: &Tensor) -> LayerCache {
        LayerCache {
            keys: self.keys.iter().map(|k| k.index_select(0, rows)).collect(),
            values: self.values.as_ref().map(|v| v.index_select(0, rows)),
        }
    }

    /// Appends the new positions' keys and values along the time axis and
    /// returns all of them (past then new), which the layer attends to.
    fn extend(&mut self, keys: &[&Tensor], values: &Tensor) -> (Vec<Tensor>, Tensor) {
        let cat = |past: Option<&Tensor>, new: &Tensor| match past {
            Some(p) => Tensor::cat(&[p, new], 2),
            None => new.shallow_clone(),
        };
        self.keys = keys.iter().enumerate().map(|(i, k)| cat(self.keys.get(i), k)).collect();
        let values = cat(self.values.as_ref(), values);
        self.values = Some(values.shallow_clone());
        (self.keys.iter().map(Tensor::shallow_clone).collect(), values)
    }
}

pub struct StandardAttention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    fused: bool,
}

pub struct GdaAttention {
    pub q1: Linear,
    pub q2: Linear,
    pub k1: Linear,
    pub k2: Linear,
    pub v: Linear,
    pub o: Linear,
    pub lambda_q1: Tensor,
    pub lambda_k1: Tensor,
    pub lambda_q2: Tensor,
    pub lambda_k2: Tensor,
    pub subln: RmsNorm,
    pub lambda_init: f64,
    signal_heads: i64,
    noise_heads: i64,
    kv_heads: i64,
    noise_kv_heads: i64,
    head_dim: i64,
    /// (1, 1, G, 1, 1) weights of the noise map per signal head of a group
    /// when noise_scope = "one"; `None` means all ones (GDA).
    scope: Option<Tensor>,
    fused: bool,
}

pub enum Attention {
    Standard(StandardAttention),
    Gda(GdaAttention),
}

/// Weights of the linear projections of one attention layer (the matmul
/// parameters; see docs/tensors.md for the shapes).
pub fn linear_params(cfg: &ModelConfig) -> usize {
    linear_params_f64(cfg) as usize
}

/// [`linear_params`] in floating point: exact below 2^53, and finite for the
/// absurd shapes a memory check has to refuse (usize products would wrap).
pub fn linear_params_f64(cfg: &ModelConfig) -> f64 {
    let (c, d, kv) = (cfg.d_model as f64, cfg.head_dim as f64, cfg.kv_heads as f64);
    match cfg.attention {
        AttentionKind::Standard => {
            let h = cfg.heads as f64;
            c * d * (h + 2.0 * kv) + h * d * c
        }
        AttentionKind::Gda => {
            let (hs, hn, k2) = (cfg.signal_heads as f64, cfg.noise_heads as f64, cfg.noise_kv_heads as f64);
            c * d * (hs + hn + kv + k2) + c * 2.0 * d * kv + hs * 2.0 * d * c
        }
    }
}

/// All parameters of one attention layer: projections, plus λ vectors and
/// `subln` under gda (in floating point, as [`linear_params_f64`]).
pub fn param_count_f64(cfg: &ModelConfig) -> f64 {
    match cfg.attention {
        AttentionKind::Standard => linear_params_f64(cfg),
        AttentionKind::Gda => linear_params_f64(cfg) + 6.0 * cfg.head_dim as f64,
    }
}

/// How [`project`] lays out one layer's heads: the head counts of the
/// d-wide projections that RoPE rotates (their weights come first), V's
/// heads and width, and whether the fused kernel rotates them.
struct Heads<'a> {
    rotated: &'a [i64],
    d: i64,
    v: (i64, i64),
    fused: bool,
}

/// All of a layer's input projections in one matmul (their weights stacked
/// row-wise), and RoPE applied once to the query/key part: fewer, larger
/// kernels than one per projection. Returns the rotated projections, each
/// (B, H, T, d), and V, (B, H_v, T, width).
fn project(x: &Tensor, weights: &[&Tensor], heads: &Heads, cos: &Tensor, sin: &Tensor) -> (Vec<Tensor>, Tensor) {
    let (b, t) = (x.size()[0], x.size()[1]);
    let (d, (v_heads, v_width)) = (heads.d, heads.v);
    let w = Tensor::cat(weights, 0).to_kind(x.kind());
    let y = x.linear::<Tensor>(&w, None);
    let hr: i64 = heads.rotated.iter().sum();
    let parts = y.split_with_sizes([hr * d, v_heads * v_width], 2);
    let qk = if fused::applies(heads.fused, x) {
        fused::rope_heads(&parts[0], cos, sin, hr, d)
    } else {
        // (B, T, H, d) layout: the tables broadcast as (T, 1, d/2).
        Rope::apply(&parts[0].view([b, t, hr, d]), &cos.unsqueeze(1), &sin.unsqueeze(1)).transpose(1, 2)
    };
    let v = parts[1].view([b, t, v_heads, v_width]).transpose(1, 2);
    (qk.split_with_sizes(heads.rotated, 1), v)
}

/// Repeats each K/V head `n` times along dim 1 (the GQA expansion), for the
/// materialised path only.
fn expand_kv(x: &Tensor, n: i64) -> Tensor {
    if n == 1 {
        x.shallow_clone()
    } else {
        x.repeat_interleave_self_int(n, 1, None)
    }
}

/// The causal mask of queries at the last `tq` of `tk` positions (the
/// earlier ones come from a decoding cache): true where a key lies in a
/// query's future. (tq, tk), bottom-right aligned.
fn future_mask(tq: i64, tk: i64, device: tch::Device) -> Tensor {
    Tensor::ones([tq, tk], (Kind::Bool, device)).triu(1 + tk - tq)
}

/// Causal softmax(q kᵀ/√d), with k's heads expanded to q's: (B, Hq, Tq, Tk);
/// Tk > Tq when the keys include a decoding cache's.
fn softmax_map(q: &Tensor, k: &Tensor) -> Tensor {
    let (hq, hk, tq, d) = (q.size()[1], k.size()[1], q.size()[2], q.size()[3]);
    let k = expand_kv(k, hq / hk);
    let up = at_least_f32(q.kind());
    let scores = q.to_kind(up).matmul(&k.to_kind(up).transpose(-2, -1)) / (d as f64).sqrt();
    let future = future_mask(tq, k.size()[2], q.device());
    scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, up)
}

/// The longest window and widest head (Q/K or V) [`sdpa`] gives the fused
/// causal kernel; longer or wider ones go to ATen's flash kernel, whose
/// blocked GEMMs pay off there (measured on 2 threads: at d_model 512 with
/// 64-wide heads flash was 1.2–1.4× faster, at gda's default 8/16-wide heads
/// the fused kernel 1.1× faster on attention alone).
const FUSED_ATTENTION_MAX: (i64, i64) = (1024, 32);

/// Causal SDPA with GQA expansion (`fused`: gda's own kernel where it
/// applies). ATen's CPU and CUDA fused kernels want equal Q/K/V head
/// widths; for GDA's 2d-wide values, Q and K are zero-padded to 2d (the
/// padding adds nothing to any score; the scale stays 1/√d). Measured on 2
/// CPU threads this is 2.6× faster than two SDPA calls over the halves of V.
/// Keys longer than the queries (a decoding cache) are the past of every
/// query: SDPA's `is_causal` aligns its mask top-left, so a single new query
/// runs unmasked and several get an explicit bottom-right mask.
fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, fused: bool) -> Tensor {
    let gqa = q.size()[1] != k.size()[1];
    let (d, dv) = (q.size()[3], v.size()[3]);
    let (tq, tk) = (q.size()[2], k.size()[2]);
    let scale = 1.0 / (d as f64).sqrt();
    let (max_t, max_d) = FUSED_ATTENTION_MAX;
    if tq == tk && tq <= max_t && d.max(dv) <= max_d && fused::applies(fused, q) {
        return fused::causal_attention(q, k, v, scale);
    }
    let (q, k) = if dv > d {
        (q.constant_pad_nd([0, dv - d]), k.constant_pad_nd([0, dv - d]))
    } else {
        (q.shallow_clone(), k.shallow_clone())
    };
    if tq == tk {
        return Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, v, None, 0.0, true, scale, gqa);
    }
    let mask = (tq > 1).then(|| future_mask(tq, tk, q.device()).logical_not());
    Tensor::scaled_dot_product_attention(&q, &k, v, mask.as_ref(), 0.0, false, scale, gqa)
}

impl StandardAttention {
    fn new(vs: nn::Path, cfg: &ModelConfig, out_std: f64) -> Self {
        let (c, d) = (cfg.d_model, cfg.head_dim);
        StandardAttention {
            q: Linear::new(&vs / "q", c, cfg.heads * d, cfg.init_std),
            k: Linear::new(&vs / "k", c, cfg.kv_heads * d, cfg.init_std),
            v: Linear::new(&vs / "v", c, cfg.kv_heads * d, cfg.init_std),
            o: Linear::new(&vs / "o", cfg.heads * d, c, out_std),
            heads: cfg.heads as i64,
            kv_heads: cfg.kv_heads as i64,
            head_dim: d as i64,
            fused: cfg.fused,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        path: Path,
        cache: Option<&mut LayerCache>,
    ) -> (Tensor, Option<AttnMaps>) {
        let (b, t) = (x.size()[0], x.size()[1]);
        let d = self.head_dim;
        let weights = [&self.q.weight, &self.k.weight, &self.v.weight];
        let heads = Heads { rotated: &[self.heads, self.kv_heads], d, v: (self.kv_heads, d), fused: self.fused };
        let (qk, v) = project(x, &weights, &heads, cos, sin);
        let (k, v) = match cache {
            None => (qk[1].shallow_clone(), v),
            Some(c) => {
                let (mut keys, v) = c.extend(&[&qk[1]], &v);
                (keys.remove(0), v)
            }
        };
        let (q, k) = (&qk[0], &k);
        let (out, maps) = match path {
            Path::Fused => (sdpa(q, k, &v, self.fused), None),
            Path::Materialised => {
                let map = softmax_map(q, k);
                let v = expand_kv(&v, self.heads / self.kv_heads).to_kind(map.kind());
                let out = map.matmul(&v).to_kind(x.kind());
                (out, Some(AttnMaps { signal: map.shallow_clone(), noise: None, effective: map, lambda: None }))
            }
        };
        let out = out.transpose(1, 2).contiguous().view([b, t, self.heads * d]);
        (self.o.forward(&out), maps)
    }
}

impl GdaAttention {
    fn new(vs: nn::Path, cfg: &ModelConfig, layer: usize, out_std: f64) -> Self {
        let (c, d) = (cfg.d_model, cfg.head_dim);
        let (hs, hn, kv) = (cfg.signal_heads, cfg.noise_heads, cfg.kv_heads);
        let lam = |name: &str| vs.var(name, &[d as i64], nn::Init::Randn { mean: 0.0, stdev: 0.1 });
        GdaAttention {
            q1: Linear::new(&vs / "q1", c, hs * d, cfg.init_std),
            q2: Linear::new(&vs / "q2", c, hn * d, cfg.init_std),
            k1: Linear::new(&vs / "k1", c, kv * d, cfg.init_std),
            k2: Linear::new(&vs / "k2", c, cfg.noise_kv_heads * d, cfg.init_std),
            v: Linear::new(&vs / "v", c, kv * 2 * d, cfg.init_std),
            o: Linear::new(&vs / "o", hs * 2 * d, c, out_std),
            lambda_q1: lam("lambda_q1"),
            lambda_k1: lam("lambda_k1"),
            lambda_q2: lam("lambda_q2"),
            lambda_k2: lam("lambda_k2"),
            subln: RmsNorm::new(&vs / "subln", 2 * d, 1e-5, cfg.fused),
            lambda_init: cfg.lambda_init[layer],
            signal_heads: hs as i64,
            noise_heads: hn as i64,
            kv_heads: kv as i64,
            noise_kv_heads: cfg.noise_kv_heads as i64,
            head_dim: d as i64,
            scope: match cfg.noise_scope {
                NoiseScope::Group => None,
                NoiseScope::One => {
                    let g = (hs / hn) as i64;
                    let w: Vec<f32> = (0..g).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
                    Some(Tensor::from_slice(&w).view([1, 1, g, 1, 1]).to_device(vs.device()))
                }
            },
            fused: cfg.fused,
        }
    }

    /// The noise term of every signal head, (B, H_n, 1 or G, T, w) → broadcastable
    /// against the signal heads viewed as (B, H_n, G, T, w).
    fn scoped(&self, noise: Tensor) -> Tensor {
        match &self.scope {
            None => noise,
            Some(s) => {
                let kind = noise.kind();
                noise * s.to_kind(kind)
            }
        }
    }

    /// λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init, a 0-dim fp32 tensor.
    pub fn lambda(&self) -> Tensor {
        (&self.lambda_q1 * &self.lambda_k1).sum(Kind::Float).exp()
            - (&self.lambda_q2 * &self.lambda_k2).sum(Kind::Float).exp()
            + self.lambda_init
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        path: Path,
        cache: Option<&mut LayerCache>,
    ) -> (Tensor, Option<AttnMaps>) {
        let (b, t) = (x.size()[0], x.size()[1]);
        let (d, hs, hn, kv, k2n) =
            (self.head_dim, self.signal_heads, self.noise_heads, self.kv_heads, self.noise_kv_heads);
        let g = hs / hn;
        // On the fused path one kernel does RMSNorm(signal − λ·noise)·(1 − λ_init)
        // straight into the o-projection's layout.
        let combine = fused::applies(self.fused, x) && path == Path::Fused && self.scope.is_none();
        let weights = [&self.q1.weight, &self.q2.weight, &self.k1.weight, &self.k2.weight, &self.v.weight];
        let heads = Heads { rotated: &[hs, hn, kv, k2n], d, v: (kv, 2 * d), fused: self.fused };
        let (qk, v) = project(x, &weights, &heads, cos, sin);
        let (keys, v) = match cache {
            None => (vec![qk[2].shallow_clone(), qk[3].shallow_clone()], v),
            Some(c) => c.extend(&[&qk[2], &qk[3]], &v),
        };
        let (q1, q2, k1, k2) = (&qk[0], &qk[1], &keys[0], &keys[1]);
        let lambda = self.lambda();
        let (out, maps) = match path {
            Path::Fused => {
                // The subtraction distributes over V, so each map is applied by
                // its own SDPA call; the noise output (one per group) is
                // broadcast over the G signal heads of its group, not copied.
                let signal = sdpa(q1, k1, &v, self.fused);
                let noise = if k2n == kv {
                    sdpa(q2, k2, &v, self.fused)
                } else {
                    // K2 and V differ in head count (no-share ablation): SDPA
                    // needs one K/V layout, so both are expanded to one per noise head.
                    sdpa(q2, &expand_kv(k2, hn / k2n), &expand_kv(&v, hn / kv), self.fused)
                };
                if combine {
                    let w = self.subln.weight.to_kind(x.kind());
                    let out = fused::diff_combine(&signal, &noise, &lambda, &w, 1.0 - self.lambda_init, self.subln.eps);
                    return (self.o.forward(&out), None);
                }
                let signal = signal.view([b, hn, g, t, 2 * d]);
                let out = match &self.scope {
                    // signal − λ·noise in one kernel.
                    None => signal.addcmul(&noise.unsqueeze(2), &-lambda.to_kind(x.kind())),
                    Some(_) => signal - self.scoped(noise.unsqueeze(2) * lambda.to_kind(x.kind())),
                };
                (out.view([b, hs, t, 2 * d]), None)
            }
            Path::Materialised => {
                let signal = softmax_map(q1, k1);
                let noise = softmax_map(q2, k2);
                let tk = signal.size()[3];
                let effective =
                    (signal.view([b, hn, g, t, tk]) - self.scoped(noise.unsqueeze(2) * &lambda)).view([b, hs, t, tk]);
                let out = effective.matmul(&expand_kv(&v, hs / kv).to_kind(effective.kind())).to_kind(x.kind());
                let lam = lambda.double_value(&[]);
                (out, Some(AttnMaps { signal, noise: Some(noise), effective, lambda: Some(lam) }))
            }
        };
        let out = self.subln.forward_scaled(&out, 1.0 - self.lambda_init);
        let out = out.transpose(1, 2).contiguous().view([b, t, hs * 2 * d]);
        (self.o.forward(&out), maps)
    }
}

impl Attention {
    pub fn new(vs: nn::Path, cfg: &ModelConfig, layer: usize, out_std: f64) -> Attention {
        match cfg.attention {
            AttentionKind::Standard => Attention::Standard(StandardAttention::new(vs, cfg, out_std)),
            AttentionKind::Gda => Attention::Gda(GdaAttention::new(vs, cfg, layer, out_std)),
        }
    }

    /// x (B, T, d_model) → (B, T, d_model), plus the maps on the materialised path.
    pub fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, path: Path) -> (Tensor, Option<AttnMaps>) {
        self.forward_cached(x, cos, sin, path, None)
    }

    /// [`Attention::forward`] for positions that follow those in `cache`
    /// (RoPE tables `cos`/`sin` of the new positions only): attends to the
    /// cached keys and values too, and appends the new ones. The maps are
    /// then (B, H, T_new, T_past + T_new).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        path: Path,
        cache: Option<&mut LayerCache>,
    ) -> (Tensor, Option<AttnMaps>) {
        match self {
            Attention::Standard(a) => a.forward(x, cos, sin, path, cache),
            Attention::Gda(a) => a.forward(x, cos, sin, path, cache),
        }
    }

    pub fn lambda(&self) -> Option<Tensor> {
        match self {
            Attention::Standard(_) => None,
            Attention::Gda(a) => Some(a.lambda()),
        }
    }
}

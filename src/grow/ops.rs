//! Function-preserving growth of a model's named tensors
//! (shared/design/gda.md §5, after HyperCloning: apple/ml-hypercloning,
//! `hypercloning/common.py`).
//!
//! [`grow`] takes a resolved [`ModelConfig`] and the model's tensors (names as
//! in docs/tensors.md, e.g. from `VarStore::variables()` or a checkpoint) and
//! returns a larger config plus tensors that compute the same logits, up to
//! float rounding, at step 0. It is pure: the inputs are not modified, every
//! returned tensor is a fresh copy on the input's device and dtype, and the
//! optional clone noise comes from its own seeded generator (libtorch's global
//! RNG is not used for it). `checkpoint::load_map` copies the result into a model's VarStore.
//!
//! What each operation does, with the head order it produces (H_s signal, H_n
//! noise, H_kv K1/V, H_k2 K2 heads, G = H_s / H_n, d = head_dim):
//!
//! - [`GrowOp::SignalOnly`] `{ per_group: p }`: group g's signal heads become
//!   `[g·G, …, g·G+G−1, g·G, …, g·G+p−1]` (its G originals, then copies of its
//!   first p), so the new group g is heads g·G'..(g+1)·G' with G' = G + p and
//!   the contiguous-group rule (head i → group i / G') still holds. Only
//!   `attn.q1.weight` (rows) and `attn.o.weight` (columns) change; Q2, K1, K2,
//!   V, λ vectors and `subln` are the source's tensors, bit for bit.
//! - [`GrowOp::Uniform`] `{ groups: k }`: whole copies of groups 0..k are
//!   appended: signal heads `[0..H_s, 0..k·G]`, noise heads `[0..H_n, 0..k]`,
//!   K1/V heads `[0..H_kv, 0..k/r]` with r = H_n / H_kv, K2 heads
//!   `[0..H_k2, 0..k/r2]` with r2 = H_n / H_k2. New group H_n + j then reads
//!   K/V head (H_n + j)/r = H_kv + j/r, the copy of group j's K/V head; this
//!   needs k to be a multiple of r and r2 (always true when every group has its
//!   own K/V heads, and for k = H_n, doubling). G is kept.
//! - [`GrowOp::Width`] `{ factor: n }`: HyperCloning. d_model, mlp_hidden and
//!   every head count ×n, head_dim kept. The residual stream becomes n copies
//!   of the old one, `[x, x, …]`. Every head list becomes `[heads…, heads…, …]`
//!   (n times), so new signal head i + a·H_s is in group g + a·H_n, which
//!   reads K/V head g/r + a·H_kv: each a copy of the corresponding old head.
//! - [`GrowOp::Depth`]: block l becomes blocks 2l (itself) and 2l+1 (a copy
//!   whose `attn.o` and `mlp.down` are zero, so it adds nothing to the
//!   residual stream); λ_init of both is the source layer's λ_init.
//!
//! Clone noise ([`CloneNoise`]): wherever two copies of a weight block read the
//! same input and their products are summed — the output-projection columns
//! of a duplicated signal head (SignalOnly, Uniform) and the input blocks
//! 2j, 2j+1 of a width-grown linear (Width) — one copy gets +ε and the other
//! −ε, ε ~ N(0, (std(block)/snr)²) drawn per block. Because the two blocks
//! multiply identical inputs, the ±ε terms cancel in the sum, so the function
//! is unchanged (up to rounding), while the copies' gradients differ and
//! training can pull them apart. Nothing else is noised: noise on Q1 rows, on
//! an un-summed copy or on a zeroed Depth projection would change the function.
//! With an odd width factor the last input block has no partner and stays
//! clean (HyperCloning's pairing). Depth has no summed copies and ignores it.

use std::collections::{BTreeMap, HashMap};

use tch::{Device, Kind, Tensor};

use crate::config::{AttentionKind, ModelConfig, NoiseScope, Spec};
use crate::data::Rng;
use crate::model::Model;

/// One growth step; see the module docs for the exact head order each produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowOp {
    /// Clone signal heads only: `per_group` new signal heads in every group
    /// (copies of the group's first `per_group` heads; 1 ≤ per_group ≤ G).
    /// Noise heads, K1, K2 and V are untouched; G becomes G + per_group.
    SignalOnly { per_group: usize },
    /// Clone the first `groups` whole groups (G signal heads, the noise head
    /// and their K1/K2/V heads), keeping G. `groups` ≤ H_n and a multiple of
    /// H_n / H_kv and H_n / H_k2, so that each new group has its own copied
    /// K/V heads (any value when every group has its own K/V heads;
    /// `groups = H_n` doubles every head count).
    Uniform { groups: usize },
    /// HyperCloning width growth ×factor: d_model, mlp_hidden and every head
    /// count ×factor, head_dim kept. Untied LM head only.
    Width { factor: usize },
    /// Insert after each block a copy of it whose `attn.o` and `mlp.down` are
    /// zero; each copy keeps its source layer's λ_init. n_layers doubles.
    Depth,
}

/// Optional symmetric noise on duplicated blocks (see the module docs): ε has
/// std std(block)/snr; `seed` makes it reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloneNoise {
    pub snr: f64,
    pub seed: u64,
}

/// Grows `cfg` (resolved, as `Spec::load` leaves it) and its `tensors` by
/// `op`. The returned config resolves unchanged and the returned tensors have
/// exactly the names and shapes `Model::new(&new_cfg, …)` creates.
pub fn grow(
    cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    op: &GrowOp,
    noise: Option<&CloneNoise>,
) -> Result<(ModelConfig, HashMap<String, Tensor>), String> {
    if resolved(cfg)? != *cfg {
        return Err("the model config is not resolved (kv_heads, noise_kv_heads, mlp_hidden or lambda_init left at 0/empty); resolve the spec first".into());
    }
    check_tensors(cfg, tensors)?;
    let mut jitter = match noise {
        Some(n) if !(n.snr.is_finite() && n.snr > 0.0) => {
            return Err(format!("clone noise snr = {}; allowed: a finite number > 0", n.snr))
        }
        Some(n) => Some(Jitter { rng: Normal::new(n.seed), snr: n.snr }),
        None => None,
    };
    // Sorted names: the order the noise is drawn in, so a seed gives one result.
    let sorted: BTreeMap<&str, Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v.detach())).collect();
    let (new_cfg, out) = tch::no_grad(|| match *op {
        GrowOp::SignalOnly { per_group } => signal_only(cfg, &sorted, per_group, &mut jitter),
        GrowOp::Uniform { groups } => uniform(cfg, &sorted, groups, &mut jitter),
        GrowOp::Width { factor } => width(cfg, &sorted, factor, &mut jitter),
        GrowOp::Depth => Ok(depth(cfg, &sorted)),
    })?;
    // Both are guaranteed by construction; checked so a bug surfaces here and
    // not as a failed checkpoint load later.
    if resolved(&new_cfg)? != new_cfg {
        return Err(format!("internal error: the grown config does not resolve unchanged: {new_cfg:?}"));
    }
    check_tensors(&new_cfg, &out).map_err(|e| format!("internal error: {e}"))?;
    Ok((new_cfg, out))
}

// ------------------------------------------------------------ the operations

type Named = HashMap<String, Tensor>;

fn signal_only(
    cfg: &ModelConfig,
    src: &BTreeMap<&str, Tensor>,
    p: usize,
    jitter: &mut Option<Jitter>,
) -> Result<(ModelConfig, Named), String> {
    gda_only(cfg, "signal-only")?;
    let (g, hn) = (cfg.ratio(), cfg.noise_heads);
    if p == 0 || p > g {
        return Err(format!("signal-only growth by {p} head(s) per group; allowed: 1..={g} (at most G = {g}, the heads a group has to copy)"));
    }
    if cfg.noise_scope == NoiseScope::One {
        // Only the first head of a group subtracts the noise map under "one";
        // a copy of it placed later in the group would become a plain head.
        return Err("signal-only growth of a noise_scope = \"one\" model would not preserve its function (a copy of a group's first head would lose the noise term); allowed: noise_scope = \"group\"".into());
    }
    // Group g: its G originals, then copies of its first p heads.
    let heads: Vec<usize> = (0..hn).flat_map(|grp| (0..g).chain(0..p).map(move |j| grp * g + j)).collect();
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    Ok(select_heads(cfg, src, [&heads, &all(hn), &all(cfg.kv_heads), &all(cfg.noise_kv_heads)], jitter))
}

/// The attention tensors of a model whose heads are copies of the source's:
/// new signal, noise, K1/V and K2 head j is old head `lists[..][j]`. Output
/// columns follow the signal list, split between a head and its copies.
fn select_heads(
    cfg: &ModelConfig,
    src: &BTreeMap<&str, Tensor>,
    lists: [&[usize]; 4],
    jitter: &mut Option<Jitter>,
) -> (ModelConfig, Named) {
    let [sig, noise, kvh, k2h] = lists;
    let mut new = cfg.clone();
    new.signal_heads = sig.len();
    new.noise_heads = noise.len();
    new.kv_heads = kvh.len();
    new.noise_kv_heads = k2h.len();
    let d = cfg.head_dim as i64;
    let out = src
        .iter()
        .map(|(&name, t)| {
            let grown = match block_suffix(name).map(|(_, s)| s) {
                Some("attn.q1.weight") => pick_heads(t, 0, d, sig),
                Some("attn.q2.weight") => pick_heads(t, 0, d, noise),
                Some("attn.k1.weight") => pick_heads(t, 0, d, kvh),
                Some("attn.v.weight") => pick_heads(t, 0, 2 * d, kvh),
                Some("attn.k2.weight") => pick_heads(t, 0, d, k2h),
                Some("attn.o.weight") => split_columns(t, 2 * d, sig, jitter),
                _ => t.copy(),
            };
            (name.to_string(), grown)
        })
        .collect();
    (new, out)
}

fn uniform(
    cfg: &ModelConfig,
    src: &BTreeMap<&str, Tensor>,
    k: usize,
    jitter: &mut Option<Jitter>,
) -> Result<(ModelConfig, Named), String> {
    gda_only(cfg, "uniform")?;
    let (g, hs, hn, kv, k2) = (cfg.ratio(), cfg.signal_heads, cfg.noise_heads, cfg.kv_heads, cfg.noise_kv_heads);
    let (r, r2) = (hn / kv, hn / k2);
    let step = lcm(r, r2);
    if k == 0 || k > hn || !k.is_multiple_of(step) {
        let allowed: Vec<String> = (step..=hn).step_by(step).map(|x| x.to_string()).collect();
        return Err(format!(
            "uniform growth by {k} group(s) of a model with {hn} groups, {kv} K/V and {k2} K2 heads; allowed: {} (each copied group must bring its own K/V heads, so a multiple of {step} noise heads per K/V head, at most {hn})",
            allowed.join(", ")
        ));
    }
    let append = |n: usize, extra: usize| -> Vec<usize> { (0..n).chain(0..extra).collect() };
    let (sig, noise, kvh, k2h) = (append(hs, k * g), append(hn, k), append(kv, k / r), append(k2, k / r2));
    Ok(select_heads(cfg, src, [&sig, &noise, &kvh, &k2h], jitter))
}

fn width(
    cfg: &ModelConfig,
    src: &BTreeMap<&str, Tensor>,
    n: usize,
    jitter: &mut Option<Jitter>,
) -> Result<(ModelConfig, Named), String> {
    if n < 2 {
        return Err(format!("width growth ×{n}; allowed: a factor of at least 2"));
    }
    if cfg.tie_embeddings {
        // A tied head reads the repeated embedding, so its logits would be n
        // times too large; it needs a 1/n scale the model does not have.
        return Err("width growth of a model with tie_embeddings = true is not supported (the tied LM head would need a 1/n scale); allowed: untied models".into());
    }
    let mut new = cfg.clone();
    new.d_model *= n;
    new.mlp_hidden *= n;
    new.kv_heads *= n;
    match cfg.attention {
        AttentionKind::Gda => {
            new.signal_heads *= n;
            new.noise_heads *= n;
            new.noise_kv_heads *= n;
        }
        AttentionKind::Standard => new.heads *= n,
    }
    let n = n as i64;
    let out = src
        .iter()
        .map(|(&name, t)| {
            let suffix = block_suffix(name).map(|(_, s)| s).unwrap_or(name);
            let grown = match suffix {
                // The stream is [x, x, …]: RMSNorm of it is [norm(x)…] with the
                // same rms, so the weights are repeated, not divided.
                "tok_emb.weight" => t.repeat([1, n]),
                "norm.weight" | "attn_norm.weight" | "mlp_norm.weight" => t.repeat([n]),
                // Per-head and head_dim-sized: every head keeps its own.
                "attn.subln.weight" | "attn.lambda_q1" | "attn.lambda_k1" | "attn.lambda_q2" | "attn.lambda_k2" => {
                    t.copy()
                }
                "lm_head.weight" => widen_linear(t, 1, n, jitter),
                // Every other tensor is a linear (check_tensors saw the list).
                _ => widen_linear(t, n, n, jitter),
            };
            (name.to_string(), grown)
        })
        .collect();
    Ok((new, out))
}

fn depth(cfg: &ModelConfig, src: &BTreeMap<&str, Tensor>) -> (ModelConfig, Named) {
    let mut new = cfg.clone();
    new.n_layers *= 2;
    new.lambda_init = cfg.lambda_init.iter().flat_map(|&l| [l, l]).collect();
    let mut out = HashMap::new();
    for (&name, t) in src {
        match block_suffix(name) {
            Some((l, suffix)) => {
                out.insert(format!("blocks.{}.{suffix}", 2 * l), t.copy());
                // The copy's residual writes are zero, so at step 0 it is the identity.
                let copy =
                    if matches!(suffix, "attn.o.weight" | "mlp.down.weight") { t.zeros_like() } else { t.copy() };
                out.insert(format!("blocks.{}.{suffix}", 2 * l + 1), copy);
            }
            None => {
                out.insert(name.to_string(), t.copy());
            }
        }
    }
    (new, out)
}

// ------------------------------------------------------------------ helpers

fn gda_only(cfg: &ModelConfig, what: &str) -> Result<(), String> {
    match cfg.attention {
        AttentionKind::Gda => Ok(()),
        AttentionKind::Standard => Err(format!(
            "{what} growth needs attention = \"gda\" (it clones signal/noise heads); allowed for standard attention: width and depth growth"
        )),
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut x: usize, mut y: usize| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

/// `blocks.<l>.<suffix>` → (l, suffix).
fn block_suffix(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blocks.")?;
    let (l, suffix) = rest.split_once('.')?;
    Some((l.parse().ok()?, suffix))
}

/// Head blocks of `width` rows (dim 0) or columns (dim 1) of `t`, in the order
/// `heads` lists source heads (a source head may appear several times).
fn pick_heads(t: &Tensor, dim: i64, width: i64, heads: &[usize]) -> Tensor {
    let idx: Vec<i64> = heads.iter().flat_map(|&h| h as i64 * width..(h as i64 + 1) * width).collect();
    t.index_select(dim, &Tensor::from_slice(&idx).to_device(t.device()))
}

/// The output projection for the new signal-head list `heads`: each head's
/// column block is its source's, divided by how often that source occurs, so
/// the copies' outputs (identical, as they are computed by identical weights
/// from the same inputs) sum to the source's contribution. Occurrences are
/// paired for the ±ε noise.
fn split_columns(o: &Tensor, width: i64, heads: &[usize], jitter: &mut Option<Jitter>) -> Tensor {
    let w = pick_heads(o, 1, width, heads);
    let mut places: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for (pos, &h) in heads.iter().enumerate() {
        places.entry(h).or_default().push(pos as i64);
    }
    for pos in places.values().filter(|p| p.len() > 1) {
        for &p in pos {
            let _ = w.narrow(1, p * width, width).g_div_scalar_(pos.len() as f64);
        }
        if let Some(j) = jitter {
            for pair in pos.chunks_exact(2) {
                j.add_pair(&w.narrow(1, pair[0] * width, width), &w.narrow(1, pair[1] * width, width));
            }
        }
    }
    w
}

/// HyperCloning's linear: `W.repeat(n_out, n_in) / n_in`. Its input is n_in
/// copies of the old input, so each of the n_out output blocks is W·x again;
/// rows stay in head blocks, so the head list is the old one n_out times.
/// Noise pairs input blocks (2j, 2j+1) within each output block.
fn widen_linear(w: &Tensor, n_out: i64, n_in: i64, jitter: &mut Option<Jitter>) -> Tensor {
    let (rows, cols) = (w.size()[0], w.size()[1]);
    let grown = w.repeat([n_out, n_in]) / n_in as f64;
    if let Some(j) = jitter {
        for i in 0..n_out {
            let block_row = grown.narrow(0, i * rows, rows);
            for pair in 0..n_in / 2 {
                j.add_pair(
                    &block_row.narrow(1, 2 * pair * cols, cols),
                    &block_row.narrow(1, (2 * pair + 1) * cols, cols),
                );
            }
        }
    }
    grown
}

/// The config as `Spec::resolve` leaves it (a model config cannot resolve on
/// its own: the spec owns the tokenizer).
fn resolved(cfg: &ModelConfig) -> Result<ModelConfig, String> {
    let mut spec = Spec { model: cfg.clone(), ..Spec::default() };
    spec.resolve().map_err(|e| format!("{}: {}", e.key, e.msg))?;
    Ok(spec.model)
}

/// Names and shapes of every tensor `Model::new(cfg, …)` creates, read off a
/// model built on the CPU (the model is the one definition of its layout).
fn tensor_shapes(cfg: &ModelConfig) -> BTreeMap<String, Vec<i64>> {
    let (vs, _model) = Model::build(cfg, Device::Cpu);
    vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect()
}

/// The tensors must be exactly the model's: every name, every shape, nothing else.
fn check_tensors(cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let expected = tensor_shapes(cfg);
    for (name, shape) in &expected {
        let t =
            tensors.get(name).ok_or_else(|| format!("the tensors do not match the model config: {name} is missing"))?;
        if &t.size() != shape {
            return Err(format!(
                "the tensors do not match the model config: {name} has shape {:?}, the config gives {shape:?}",
                t.size()
            ));
        }
    }
    if let Some(extra) = tensors.keys().find(|k| !expected.contains_key(*k)) {
        return Err(format!("the tensors do not match the model config: unexpected tensor {extra}"));
    }
    Ok(())
}

/// Seeded ±ε noise on pairs of duplicated blocks.
struct Jitter {
    rng: Normal,
    snr: f64,
}

impl Jitter {
    /// a += ε, b −= ε in place, ε ~ N(0, (std(a)/snr)²) (a and b are views
    /// into the grown weight and hold the same values before this call).
    fn add_pair(&mut self, a: &Tensor, b: &Tensor) {
        let std = a.to_kind(Kind::Double).std(false).double_value(&[]) / self.snr;
        let eps = self.rng.tensor_like(a, std);
        let _ = a.shallow_clone().g_add_(&eps);
        let _ = b.shallow_clone().g_sub_(&eps);
    }
}

/// Box–Muller over the project's counter-based generator, so the noise
/// depends only on the seed.
struct Normal {
    rng: Rng,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal { rng: Rng::from_counter(seed) }
    }

    /// Uniform in (0, 1): open at both ends, for the logarithm.
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn tensor_like(&mut self, like: &Tensor, std: f64) -> Tensor {
        let n = like.numel();
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let (u1, u2) = (self.uniform(), self.uniform());
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = 2.0 * std::f64::consts::PI * u2;
            v.push(r * a.cos());
            v.push(r * a.sin());
        }
        v.truncate(n);
        Tensor::from_slice(&v).view(like.size().as_slice()).to_kind(like.kind()).to_device(like.device())
    }
}

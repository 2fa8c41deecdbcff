//! Numerical tests of the attention layers (shared/design/gda.md §1–2):
//! an independent reference implementation of differential attention, the
//! fused and materialised paths against each other (outputs and gradients),
//! causality, the group structure of noise heads, the attention maps, and the
//! parameter count; also the two layouts of the repetition ablation (§4):
//! `noise_kv_heads` (the no-share twin: every signal head its own Q2/K2) and
//! `noise_scope = "one"` (only the first signal head of a group subtracts the
//! group's noise map). Everything runs on small fp32 CPU tensors.

mod common;

use common::{
    assign, gda_config, gda_layer, max_abs, max_diff, randomize_gda, randomize_model, seeded, std_config, CPU, F32,
};
use gda::config::{ModelConfig, NoiseScope};
use gda::model::attention::{Attention, GdaAttention, Path};
use gda::model::layers::Rope;
use gda::model::Model;
use tch::{nn, Kind, Tensor};

/// Weight init std: fairly large, so the attention maps are far from uniform.
const ATTN_STD: f64 = 0.2;

// ---------------------------------------------------------------- helpers

/// A gda config; `kv_heads` 0 means one per noise head.
fn gda_cfg(hs: usize, hn: usize, kv: usize, d: usize, c: usize, n_layers: usize) -> ModelConfig {
    ablation_cfg(hs, hn, kv, 0, NoiseScope::Group, d, c, n_layers)
}

/// A gda config with the ablation keys: `noise_kv` K2 heads (0 = kv_heads)
/// and the noise scope.
#[allow(clippy::too_many_arguments)]
fn ablation_cfg(
    hs: usize,
    hn: usize,
    kv: usize,
    noise_kv: usize,
    scope: NoiseScope,
    d: usize,
    c: usize,
    n_layers: usize,
) -> ModelConfig {
    gda_config(hs, hn, kv, noise_kv, scope, d, c, n_layers, ATTN_STD)
}

fn std_cfg(heads: usize, kv: usize, d: usize, c: usize, n_layers: usize) -> ModelConfig {
    std_config(heads, kv, d, c, n_layers, ATTN_STD)
}

/// Adds `delta` to rows [start, start+len) of a weight, in place.
fn add_rows(var: &Tensor, start: i64, len: i64, delta: &Tensor) {
    tch::no_grad(|| {
        let _ = var.shallow_clone().narrow(0, start, len).g_add_(delta);
    });
}

/// An attention layer of `cfg` at `layer`, in its own VarStore.
fn layer(cfg: &ModelConfig, layer: usize) -> (nn::VarStore, Attention) {
    let vs = nn::VarStore::new(CPU);
    let attn = Attention::new(vs.root() / "attn", cfg, layer, ATTN_STD);
    if let Attention::Gda(a) = &attn {
        randomize_gda(a);
    }
    (vs, attn)
}

fn crate_tables(cfg: &ModelConfig, t: i64) -> (Tensor, Tensor) {
    Rope::new(cfg.head_dim, cfg.rope_theta).tables(t, CPU)
}

/// "Hs=.. Hn=.. Hkv=.. Hk2=.. scope=..", for messages.
fn describe(cfg: &ModelConfig) -> String {
    format!(
        "Hs={} Hn={} Hkv={} Hk2={} scope={:?}",
        cfg.signal_heads, cfg.noise_heads, cfg.kv_heads, cfg.noise_kv_heads, cfg.noise_scope
    )
}

/// The layouts of the repetition ablation checked below, at d = 8, d_model =
/// 32, 2 layers: the no-share twins of 4:2 and 4:1 (every signal head its own
/// Q2/K2; K1 and V stay per original group), a layout with fewer K2 than
/// K1/V heads, and noise_scope = "one" at G = 2 and G = 4.
fn ablation_cfgs() -> Vec<ModelConfig> {
    let mut cfgs = Vec::new();
    for (hs, hn, kv, nkv) in [(4, 4, 2, 4), (4, 4, 1, 4), (8, 4, 4, 2)] {
        cfgs.push(ablation_cfg(hs, hn, kv, nkv, NoiseScope::Group, 8, 32, 2));
    }
    for (hs, hn, kv) in [(4, 2, 2), (8, 2, 1)] {
        cfgs.push(ablation_cfg(hs, hn, kv, 0, NoiseScope::One, 8, 32, 2));
    }
    cfgs
}

// ------------------------------------------------- independent reference

/// The parameters of one gda layer as float64 leaf tensors, so the reference
/// runs in float64 and autograd gives reference gradients.
struct RefParams {
    q1: Tensor,
    q2: Tensor,
    k1: Tensor,
    k2: Tensor,
    v: Tensor,
    o: Tensor,
    lambda_q1: Tensor,
    lambda_k1: Tensor,
    lambda_q2: Tensor,
    lambda_k2: Tensor,
    subln: Tensor,
    lambda_init: f64,
}

impl RefParams {
    /// float64 copies of the layer's weights that require grad; λ_init is
    /// taken from the config, not from the layer.
    fn f64_leaves(a: &GdaAttention, lambda_init: f64) -> RefParams {
        let f = |t: &Tensor| t.detach().to_kind(Kind::Double).set_requires_grad(true);
        RefParams {
            q1: f(&a.q1.weight),
            q2: f(&a.q2.weight),
            k1: f(&a.k1.weight),
            k2: f(&a.k2.weight),
            v: f(&a.v.weight),
            o: f(&a.o.weight),
            lambda_q1: f(&a.lambda_q1),
            lambda_k1: f(&a.lambda_k1),
            lambda_q2: f(&a.lambda_q2),
            lambda_k2: f(&a.lambda_k2),
            subln: f(&a.subln.weight),
            lambda_init,
        }
    }

    /// (name as in the VarStore under "attn", tensor), sorted by name.
    fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("attn.k1.weight", &self.k1),
            ("attn.k2.weight", &self.k2),
            ("attn.lambda_k1", &self.lambda_k1),
            ("attn.lambda_k2", &self.lambda_k2),
            ("attn.lambda_q1", &self.lambda_q1),
            ("attn.lambda_q2", &self.lambda_q2),
            ("attn.o.weight", &self.o),
            ("attn.q1.weight", &self.q1),
            ("attn.q2.weight", &self.q2),
            ("attn.subln.weight", &self.subln),
            ("attn.v.weight", &self.v),
        ]
    }
}

/// RoPE written out from its definition (rotate-half layout): x (B, T, d).
fn ref_rope(x: &Tensor, theta: f64) -> Tensor {
    let (t, d) = (x.size()[1], x.size()[2]);
    let half = d / 2;
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for pos in 0..t {
        for j in 0..half {
            let inv_freq = theta.powf(-2.0 * j as f64 / d as f64);
            let angle = pos as f64 * inv_freq;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let cos = Tensor::from_slice(&cos).view([t, half]).to_kind(x.kind());
    let sin = Tensor::from_slice(&sin).view([t, half]).to_kind(x.kind());
    let x1 = x.narrow(2, 0, half);
    let x2 = x.narrow(2, half, half);
    Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x2 * &cos + &x1 * &sin], 2)
}

/// Causal softmax(q kᵀ/√d + M) for q, k (B, T, d): (B, T, T).
fn ref_softmax_map(q: &Tensor, k: &Tensor) -> Tensor {
    let (t, d) = (q.size()[1], q.size()[2]);
    let mut mask = Vec::new();
    for i in 0..t {
        for j in 0..t {
            mask.push(if j > i { f64::NEG_INFINITY } else { 0.0 });
        }
    }
    let mask = Tensor::from_slice(&mask).view([t, t]).to_kind(q.kind());
    let scores = q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt() + mask;
    scores.softmax(-1, q.kind())
}

/// x (B, T, C) times the rows [head·w, (head+1)·w) of `weight` (out, in), transposed.
fn ref_proj(x: &Tensor, weight: &Tensor, head: i64, w: i64) -> Tensor {
    x.matmul(&weight.narrow(0, head * w, w).transpose(0, 1))
}

/// Grouped differential attention straight from §1–2 and §4 of the design,
/// one head at a time. Signal head i is in group g = i / G and reads K1 and V
/// head i / (H_s / H_kv); noise head g reads K2 head g / (H_n / H_k2) and V
/// head g / (H_n / H_kv) (the same V head as its signal heads, written out
/// separately so the reference does not assume it). Under noise_scope "one"
/// only signal head g·G subtracts the noise term; the others are plain
/// softmax(Q1 K1ᵀ) V heads, still through subln and (1 − λ_init). With G = 1
/// and H_kv = H_k2 = H_n this is DIFF. Computes in x's dtype and is
/// differentiable in every parameter.
fn ref_gda(p: &RefParams, cfg: &ModelConfig, x: &Tensor) -> Tensor {
    let d = cfg.head_dim as i64;
    let (hs, hn, kv) = (cfg.signal_heads as i64, cfg.noise_heads as i64, cfg.kv_heads as i64);
    let k2n = cfg.noise_kv_heads as i64;
    assert!(k2n > 0, "resolve() fills noise_kv_heads");
    let g_ratio = hs / hn;
    let theta = cfg.rope_theta;
    let kind = x.kind();
    let lambda =
        (&p.lambda_q1 * &p.lambda_k1).sum(kind).exp() - (&p.lambda_q2 * &p.lambda_k2).sum(kind).exp() + p.lambda_init;
    let mut outs = Vec::new();
    for i in 0..hs {
        let g = i / g_ratio;
        let kvh = i / (hs / kv);
        let q1 = ref_rope(&ref_proj(x, &p.q1, i, d), theta);
        let k1 = ref_rope(&ref_proj(x, &p.k1, kvh, d), theta);
        let v = ref_proj(x, &p.v, kvh, 2 * d);
        let a1 = ref_softmax_map(&q1, &k1);
        let subtracts = match cfg.noise_scope {
            NoiseScope::Group => true,
            NoiseScope::One => i == g * g_ratio,
        };
        let o = if subtracts {
            let q2 = ref_rope(&ref_proj(x, &p.q2, g, d), theta);
            let k2 = ref_rope(&ref_proj(x, &p.k2, g / (hn / k2n), d), theta);
            let v2 = ref_proj(x, &p.v, g / (hn / kv), 2 * d);
            a1.matmul(&v) - ref_softmax_map(&q2, &k2).matmul(&v2) * &lambda
        } else {
            a1.matmul(&v)
        };
        let rms = ((&o * &o).mean_dim([-1i64].as_slice(), true, kind) + 1e-5).sqrt();
        outs.push(o / rms * &p.subln * (1.0 - p.lambda_init));
    }
    Tensor::cat(&outs, 2).matmul(&p.o.transpose(0, 1))
}

/// Output and all gradients (VarStore variables sorted by name, then "x") of
/// the scalar loss sum(out · r), with every gradient zeroed first.
fn forward_and_grads(
    cfg: &ModelConfig,
    vs: &nn::VarStore,
    attn: &Attention,
    x0: &Tensor,
    r: &Tensor,
    path: Path,
) -> (Tensor, Vec<(String, Tensor)>) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in vars.iter_mut() {
        v.zero_grad();
    }
    let x = x0.detach().set_requires_grad(true);
    let (cos, sin) = crate_tables(cfg, x.size()[1]);
    let (out, _) = attn.forward(&x, &cos, &sin, path);
    (&out * r).sum(Kind::Float).backward();
    let mut grads: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| {
            let g = v.grad();
            assert!(g.defined(), "{path:?}: no gradient for {n}");
            (n.clone(), g.copy())
        })
        .collect();
    let gx = x.grad();
    assert!(gx.defined(), "{path:?}: no gradient for x");
    grads.push(("x".into(), gx.copy()));
    (out.detach(), grads)
}

fn check_paths_agree(cfg: &ModelConfig, what: &str) {
    let (vs, attn) = layer(cfg, 1);
    let t = 12;
    let x0 = Tensor::randn([2, t, cfg.d_model as i64], F32);
    let r = Tensor::randn([2, t, cfg.d_model as i64], F32);
    let (out_f, grads_f) = forward_and_grads(cfg, &vs, &attn, &x0, &r, Path::Fused);
    let (out_m, grads_m) = forward_and_grads(cfg, &vs, &attn, &x0, &r, Path::Materialised);
    assert!(max_abs(&out_f) > 1e-2, "{what}: degenerate output");
    let diff = max_diff(&out_f, &out_m);
    assert!(diff <= 1e-5, "{what}: fused vs materialised outputs differ by {diff:e}");
    assert_eq!(grads_f.len(), grads_m.len());
    assert_eq!(grads_f.len(), vs.variables().len() + 1);
    for ((name, gf), (name_m, gm)) in grads_f.iter().zip(&grads_m) {
        assert_eq!(name, name_m);
        assert!(max_abs(gf) > 0.0, "{what}: gradient of {name} is identically zero");
        assert_close(gf, gm, 1e-4, &format!("{what}: gradient of {name}, fused vs materialised"));
    }
}

/// Max |a − b| must be within `atol · max(1, max|b|)`.
fn assert_close(a: &Tensor, b: &Tensor, atol: f64, what: &str) {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let scale = max_abs(&b).max(1.0);
    let diff = max_diff(&a, &b);
    assert!(diff <= atol * scale, "{what}: max |diff| = {diff:e} > {atol:e}·{scale:e}");
}

/// Both paths of the layer against the reference run in float64 on the same
/// weights: the output to 1e-5, and the gradients of sum(out · r) w.r.t. every
/// parameter and the input to 1e-4 (relative to the gradient's magnitude when
/// that exceeds 1).
fn check_against_reference(cfg: &ModelConfig, layer_idx: usize) {
    let (vs, attn) = layer(cfg, layer_idx);
    let a = gda_layer(&attn);
    let what = format!("{} layer {layer_idx}", describe(cfg));
    let t = 11;
    let x0 = Tensor::randn([2, t, cfg.d_model as i64], F32);
    let r = Tensor::randn([2, t, cfg.d_model as i64], F32);

    let p = RefParams::f64_leaves(a, cfg.lambda_init[layer_idx]);
    let x = x0.to_kind(Kind::Double).set_requires_grad(true);
    let expected = ref_gda(&p, cfg, &x);
    (&expected * r.to_kind(Kind::Double)).sum(Kind::Double).backward();
    let mut ref_grads: Vec<(String, Tensor)> = p.named().into_iter().map(|(n, t)| (n.to_string(), t.grad())).collect();
    ref_grads.push(("x".into(), x.grad()));
    assert!(max_abs(&expected) > 1e-2, "{what}: reference output is degenerate");

    for path in [Path::Fused, Path::Materialised] {
        let (out, grads) = forward_and_grads(cfg, &vs, &attn, &x0, &r, path);
        let diff = max_diff(&out.to_kind(Kind::Double), &expected.detach());
        assert!(diff <= 1e-5, "{what} {path:?} vs reference: max |diff| = {diff:e}");
        assert_eq!(grads.len(), ref_grads.len());
        for ((name, g), (ref_name, rg)) in grads.iter().zip(&ref_grads) {
            assert_eq!(name, ref_name, "the reference must cover every VarStore variable");
            assert!(max_abs(rg) > 0.0, "{what}: reference gradient of {name} is zero");
            assert_close(g, rg, 1e-4, &format!("{what} {path:?}: gradient of {name} vs reference"));
        }
    }
}

/// With an identity output projection (d_model = H_s·2d, so the output is the
/// concatenation of the signal heads' outputs), perturbs one head's rows of
/// each projection, or one λ vector, and checks on both paths which signal
/// heads move: exactly those the layout says (by more than 1e-4), the others
/// not at all (less than 1e-6). Signal head i is in group g = i / G, reads K1
/// and V head i / (H_s / H_kv), and subtracts noise head g (which reads K2
/// head g / (H_n / H_k2)) unless the scope is "one" and i ≠ g·G.
fn check_head_dependencies(cfg: &ModelConfig) {
    let (hs, hn, kv, k2n, d) = (
        cfg.signal_heads as i64,
        cfg.noise_heads as i64,
        cfg.kv_heads as i64,
        cfg.noise_kv_heads as i64,
        cfg.head_dim as i64,
    );
    let c = hs * 2 * d;
    assert_eq!(cfg.d_model as i64, c, "the identity o-projection needs d_model = Hs·2d");
    let g = hs / hn;
    let subtracts = |i: i64| cfg.noise_scope == NoiseScope::Group || i % g == 0;
    let heads_where = |f: &dyn Fn(i64) -> bool| (0..hs).filter(|&i| f(i)).collect::<Vec<i64>>();
    let (_vs, attn) = layer(cfg, 1);
    let a = gda_layer(&attn);
    assign(&a.o.weight, &Tensor::eye(c, F32));
    let t = 10;
    let x = Tensor::randn([2, t, c], F32);
    let (cos, sin) = crate_tables(cfg, t);
    let head = |out: &Tensor, i: i64| out.narrow(2, i * 2 * d, 2 * d);

    // (what, variable, first row, rows, signal heads that must change)
    let mut cases: Vec<(String, &Tensor, i64, i64, Vec<i64>)> = Vec::new();
    for i in 0..hs {
        cases.push((format!("q1 of signal head {i}"), &a.q1.weight, i * d, d, vec![i]));
    }
    for m in 0..kv {
        let readers = heads_where(&|i| i / (hs / kv) == m);
        cases.push((format!("k1 of K/V head {m}"), &a.k1.weight, m * d, d, readers.clone()));
        cases.push((format!("v of K/V head {m}"), &a.v.weight, m * 2 * d, 2 * d, readers));
    }
    for j in 0..hn {
        let readers = heads_where(&|i| i / g == j && subtracts(i));
        cases.push((format!("q2 of noise head {j}"), &a.q2.weight, j * d, d, readers));
    }
    for m in 0..k2n {
        let readers = heads_where(&|i| (i / g) / (hn / k2n) == m && subtracts(i));
        cases.push((format!("k2 of K2 head {m}"), &a.k2.weight, m * d, d, readers));
    }
    for (name, v) in [("λq1", &a.lambda_q1), ("λk1", &a.lambda_k1), ("λq2", &a.lambda_q2), ("λk2", &a.lambda_k2)] {
        cases.push((name.to_string(), v, 0, d, heads_where(&subtracts)));
    }

    let label = describe(cfg);
    for path in [Path::Fused, Path::Materialised] {
        let base = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
        for (what, var, start, len, affected) in &cases {
            assert!(!affected.is_empty(), "{label}: {what} serves no signal head");
            let saved = var.detach().copy();
            let mut shape = var.size();
            shape[0] = *len;
            add_rows(var, *start, *len, &(Tensor::randn(shape, F32) * 0.5));
            let out = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
            assign(var, &saved);
            for i in 0..hs {
                let diff = max_diff(&head(&out, i), &head(&base, i));
                if affected.contains(&i) {
                    assert!(
                        diff > 1e-4,
                        "{label} {path:?}: perturbing {what} did not change signal head {i} ({diff:e})"
                    );
                } else {
                    assert!(diff < 1e-6, "{label} {path:?}: perturbing {what} changed signal head {i} by {diff:e}");
                }
            }
        }
        // The weights were restored exactly.
        let again = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
        assert_eq!(max_diff(&again, &base), 0.0);
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn gda_ratio_1_is_differential_attention() {
    let _rng = seeded(1);
    // G = 1, one K/V head per noise head: plain DIFF, on layers 0 and 1
    // (λ_init 0.2 and 0.8 − 0.6·e^−0.3).
    let cfg = gda_cfg(2, 2, 2, 8, 32, 2);
    for l in 0..2 {
        assert!((cfg.lambda_init[l] - (0.8 - 0.6 * (-0.3 * l as f64).exp())).abs() < 1e-15);
        check_against_reference(&cfg, l);
    }
    // Every layer of a model gets its own λ_init, 0-based.
    let cfg = gda_cfg(2, 2, 2, 8, 32, 4);
    let vs = nn::VarStore::new(CPU);
    let model = Model::new(&cfg, vs.root());
    for (l, block) in model.blocks.iter().enumerate() {
        let expected = 0.8 - 0.6 * (-0.3 * l as f64).exp();
        assert!((gda_layer(&block.attn).lambda_init - expected).abs() < 1e-15, "layer {l}: λ_init");
    }
}

#[test]
fn grouped_layout_matches_reference() {
    let _rng = seeded(2);
    // G = 2 and G = 4, and K/V heads shared by several noise heads.
    for (hs, hn, kv) in [(4, 2, 2), (4, 1, 1), (8, 4, 2), (8, 2, 1)] {
        check_against_reference(&gda_cfg(hs, hn, kv, 8, 32, 2), 1);
    }
}

#[test]
fn ablation_layouts_match_reference() {
    let _rng = seeded(8);
    // No-share twins of 4:2 and 4:1, fewer K2 than K1/V heads, and
    // noise_scope = "one" at G = 2 and G = 4.
    for cfg in ablation_cfgs() {
        check_against_reference(&cfg, 1);
    }
}

#[test]
fn fused_and_materialised_paths_agree() {
    let _rng = seeded(3);
    for (hs, hn, kv) in [(4, 4, 4), (4, 2, 2), (4, 1, 1), (8, 4, 2), (8, 2, 1)] {
        let cfg = gda_cfg(hs, hn, kv, 8, 32, 2);
        check_paths_agree(&cfg, &format!("gda Hs={hs} Hn={hn} Hkv={kv}"));
    }
    for cfg in ablation_cfgs() {
        check_paths_agree(&cfg, &format!("gda {}", describe(&cfg)));
    }
    for (heads, kv) in [(4, 2), (4, 4), (4, 1)] {
        let cfg = std_cfg(heads, kv, 8, 32, 2);
        check_paths_agree(&cfg, &format!("standard H={heads} Hkv={kv}"));
    }
}

#[test]
fn attention_is_causal() {
    let _rng = seeded(4);
    let (b, t) = (2i64, 12i64);
    let mut cfgs = vec![gda_cfg(4, 2, 0, 8, 32, 2), std_cfg(4, 2, 8, 32, 2)];
    for c in cfgs.iter_mut() {
        c.init_std = 0.1;
    }
    for cfg in &cfgs {
        let vs = nn::VarStore::new(CPU);
        let model = Model::new(cfg, vs.root());
        randomize_model(&model, false);
        let vocab = cfg.vocab_size as i64;
        let tokens = Tensor::randint(vocab, [b, t], (Kind::Int64, CPU));
        for path in [Path::Fused, Path::Materialised] {
            let base = tch::no_grad(|| model.forward_path(&tokens, path).0);
            for cut in [0i64, 4, 9] {
                // Change every token after `cut` to a different token.
                let changed = tokens.copy();
                let len = t - cut - 1;
                let shift = Tensor::randint(vocab - 1, [b, len], (Kind::Int64, CPU)) + 1;
                changed.narrow(1, cut + 1, len).copy_(&((tokens.narrow(1, cut + 1, len) + shift).remainder(vocab)));
                assert_eq!(
                    changed.narrow(1, cut + 1, len).eq_tensor(&tokens.narrow(1, cut + 1, len)).any().int64_value(&[]),
                    0
                );
                let logits = tch::no_grad(|| model.forward_path(&changed, path).0);
                let past = max_diff(&logits.narrow(1, 0, cut + 1), &base.narrow(1, 0, cut + 1));
                let future = max_diff(&logits.narrow(1, cut + 1, len), &base.narrow(1, cut + 1, len));
                assert!(past < 1e-6, "{:?} {path:?}: logits up to {cut} moved by {past:e}", cfg.attention);
                assert!(future > 1e-4, "{:?} {path:?}: logits after {cut} did not move ({future:e})", cfg.attention);
            }
        }
    }
}

#[test]
fn noise_head_only_affects_its_group() {
    let _rng = seeded(5);
    let (hs, hn, kv, d) = (4i64, 2i64, 2i64, 8i64);
    let g = hs / hn;
    let c = hs * 2 * d;
    let cfg = gda_cfg(hs as usize, hn as usize, kv as usize, d as usize, c as usize, 2);
    let (_vs, attn) = layer(&cfg, 1);
    let a = gda_layer(&attn);
    // Identity output projection: the output is the concatenation of heads.
    assign(&a.o.weight, &Tensor::eye(c, F32));
    let t = 10;
    let x = Tensor::randn([2, t, c], F32);
    let (cos, sin) = crate_tables(&cfg, t);
    let head = |out: &Tensor, i: i64| out.narrow(2, i * 2 * d, 2 * d);
    for path in [Path::Fused, Path::Materialised] {
        let base = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
        // (what, weight, rows' head index, signal heads that may change)
        let mut cases: Vec<(String, &Tensor, i64, Vec<i64>)> = Vec::new();
        for j in 0..hn {
            cases.push((format!("q2 of noise head {j}"), &a.q2.weight, j, (j * g..(j + 1) * g).collect()));
        }
        for j in 0..kv {
            // K/V head j serves noise heads j·(Hn/Hkv).. and their signal heads.
            let per_kv = hs / kv;
            cases.push((format!("k2 of kv head {j}"), &a.k2.weight, j, (j * per_kv..(j + 1) * per_kv).collect()));
        }
        for i in 0..hs {
            cases.push((format!("q1 of signal head {i}"), &a.q1.weight, i, vec![i]));
        }
        for (what, weight, idx, affected) in cases {
            let saved = weight.detach().copy();
            add_rows(weight, idx * d, d, &(Tensor::randn([d, c], F32) * 0.5));
            let out = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
            assign(weight, &saved);
            for i in 0..hs {
                let diff = max_diff(&head(&out, i), &head(&base, i));
                if affected.contains(&i) {
                    assert!(diff > 1e-4, "{path:?}: perturbing {what} did not change signal head {i} ({diff:e})");
                } else {
                    assert!(diff < 1e-6, "{path:?}: perturbing {what} changed signal head {i} by {diff:e}");
                }
            }
        }
        // The weights were restored exactly.
        let again = tch::no_grad(|| attn.forward(&x, &cos, &sin, path).0);
        assert_eq!(max_diff(&again, &base), 0.0);
    }
}

#[test]
fn noise_scope_one_leaves_other_heads_plain() {
    let _rng = seeded(9);
    // G = 2 and G = 4: q2, k2 and the λ vectors move only the first signal
    // head of each group; q1, k1 and v keep their usual reach.
    for (hs, hn, kv) in [(4, 2, 2), (8, 2, 1)] {
        check_head_dependencies(&ablation_cfg(hs, hn, kv, 0, NoiseScope::One, 8, hs * 16, 2));
    }
}

#[test]
fn no_share_gives_each_signal_head_its_own_noise() {
    let _rng = seeded(10);
    // The no-share twins of 4:2 and 4:1: q2 and k2 of noise head j move only
    // signal head j, while k1 and v still move their whole original group.
    for (hs, hn, kv, nkv) in [(4, 4, 2, 4), (4, 4, 1, 4)] {
        check_head_dependencies(&ablation_cfg(hs, hn, kv, nkv, NoiseScope::Group, 8, hs * 16, 2));
    }
    // The converse: fewer K2 than K1/V heads, so one K2 head serves two groups.
    check_head_dependencies(&ablation_cfg(8, 4, 4, 2, NoiseScope::Group, 8, 128, 2));
}

#[test]
fn materialised_maps_are_consistent() {
    let _rng = seeded(6);
    let t = 10i64;
    let mut cases: Vec<(ModelConfig, usize)> =
        [(8, 4, 2), (4, 1, 1), (2, 2, 2)].into_iter().map(|(hs, hn, kv)| (gda_cfg(hs, hn, kv, 8, 32, 3), 2)).collect();
    cases.extend(ablation_cfgs().into_iter().map(|cfg| (cfg, 1)));
    for (cfg, layer_idx) in cases {
        let (hs, hn) = (cfg.signal_heads as i64, cfg.noise_heads as i64);
        let (_vs, attn) = layer(&cfg, layer_idx);
        let a = gda_layer(&attn);
        let x = Tensor::randn([2, t, 32], F32);
        let (cos, sin) = crate_tables(&cfg, t);
        let (_, maps) = tch::no_grad(|| attn.forward(&x, &cos, &sin, Path::Materialised));
        let maps = maps.expect("the materialised path returns maps");
        let noise = maps.noise.as_ref().expect("gda has noise maps");
        assert_eq!(maps.signal.size(), vec![2, hs, t, t]);
        assert_eq!(noise.size(), vec![2, hn, t, t]);
        assert_eq!(maps.effective.size(), vec![2, hs, t, t]);
        let lam = maps.lambda.expect("gda reports λ");
        let lam_ref = a.lambda().double_value(&[]);
        assert!((lam - lam_ref).abs() < 1e-12);
        assert!((lam - a.lambda_init).abs() > 1e-3, "λ = {lam} is λ_init");
        let upper = Tensor::ones([t, t], F32).triu(1);
        for (name, m) in [("signal", &maps.signal), ("noise", noise)] {
            let rows = m.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
            let err = max_abs(&(rows - 1.0));
            assert!(err < 1e-5, "{name} rows do not sum to 1 (max err {err:e})");
            assert_eq!(max_abs(&(m * &upper)), 0.0, "{name} map attends to the future");
            assert!(m.min().double_value(&[]) >= 0.0, "{name} map has negative entries");
        }
        assert_eq!(max_abs(&(&maps.effective * &upper)), 0.0, "effective map attends to the future");
        let g = hs / hn;
        for i in 0..hs {
            // Under noise_scope "one" only the first head of a group subtracts.
            let w = if cfg.noise_scope == NoiseScope::Group || i % g == 0 { lam } else { 0.0 };
            let expected = maps.signal.narrow(1, i, 1) - noise.narrow(1, i / g, 1) * w;
            let diff = max_diff(&maps.effective.narrow(1, i, 1), &expected);
            assert!(diff < 1e-6, "{}: effective map of head {i} is off by {diff:e}", describe(&cfg));
        }
    }
    // Standard attention: no noise map, no λ, effective = signal.
    let cfg = std_cfg(4, 2, 8, 32, 2);
    let (_vs, attn) = layer(&cfg, 0);
    let x = Tensor::randn([2, t, 32], F32);
    let (cos, sin) = crate_tables(&cfg, t);
    let maps = tch::no_grad(|| attn.forward(&x, &cos, &sin, Path::Materialised).1).unwrap();
    assert!(maps.noise.is_none() && maps.lambda.is_none());
    assert_eq!(maps.signal.size(), vec![2, 4, t, t]);
    assert_eq!(max_diff(&maps.signal, &maps.effective), 0.0);
    let err = max_abs(&(maps.signal.sum_dim_intlist([-1i64].as_slice(), false, Kind::Float) - 1.0));
    assert!(err < 1e-5);
}

#[test]
fn parameter_count_matches_varstore() {
    // Model::new draws from the shared RNG, so this test takes the lock too.
    let _rng = seeded(7);
    let mut cfgs = Vec::new();
    for (hs, hn, kv) in [(8, 2, 0), (8, 8, 0), (8, 4, 2), (4, 1, 0), (6, 3, 1)] {
        cfgs.push(gda_cfg(hs, hn, kv, 8, 48, 2));
    }
    // Ablation layouts: no-share twins, fewer K2 than K/V heads, scope "one".
    for (hs, hn, kv, nkv, scope) in [
        (4, 4, 2, 4, NoiseScope::Group),
        (4, 4, 1, 4, NoiseScope::Group),
        (8, 4, 4, 2, NoiseScope::Group),
        (8, 8, 2, 8, NoiseScope::Group),
        (4, 2, 2, 0, NoiseScope::One),
        (8, 2, 1, 0, NoiseScope::One),
    ] {
        cfgs.push(ablation_cfg(hs, hn, kv, nkv, scope, 8, 48, 2));
    }
    for (heads, kv) in [(4, 0), (4, 2), (6, 1)] {
        cfgs.push(std_cfg(heads, kv, 8, 48, 3));
    }
    for mut cfg in cfgs {
        for tie in [false, true] {
            cfg.tie_embeddings = tie;
            let vs = nn::VarStore::new(CPU);
            let _model = Model::new(&cfg, vs.root());
            let actual: usize = vs.variables().values().map(|v| v.numel()).sum();
            let predicted = gda::model::param_count(&cfg);
            assert_eq!(
                predicted, actual,
                "{:?} Hs={} Hn={} H={} Hkv={} Hk2={} scope={:?} tie={tie}: param_count {predicted} != VarStore {actual}",
                cfg.attention, cfg.signal_heads, cfg.noise_heads, cfg.heads, cfg.kv_heads, cfg.noise_kv_heads, cfg.noise_scope
            );
        }
    }
    // What the ablations cost, counted from the VarStores: a no-share twin adds
    // exactly the extra Q2 and K2 rows, 2·(H_s − H_n)·d·d_model per layer;
    // noise_scope "one" adds nothing.
    let count = |cfg: &ModelConfig| {
        let vs = nn::VarStore::new(CPU);
        let _model = Model::new(cfg, vs.root());
        vs.variables().values().map(|v| v.numel()).sum::<usize>()
    };
    let (d, c, layers) = (8, 48, 2);
    for (hs, hn) in [(4, 2), (4, 1), (8, 2)] {
        let orig = count(&gda_cfg(hs, hn, 0, d, c, layers));
        let twin = count(&ablation_cfg(hs, hs, hn, hs, NoiseScope::Group, d, c, layers));
        let one = count(&ablation_cfg(hs, hn, 0, 0, NoiseScope::One, d, c, layers));
        assert_eq!(twin - orig, layers * 2 * (hs - hn) * d * c, "no-share twin of {hs}:{hn}");
        assert_eq!(one, orig, "noise_scope one of {hs}:{hn}");
    }
}

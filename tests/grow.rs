//! Function-preserving growth (shared/design/gda.md §5, src/grow.rs): every
//! operation, at G = 1, 2 and 4, with and without clone noise, must give a
//! model whose logits equal the source's on both attention paths; the grown
//! config must resolve, count its parameters right and load its tensors; the
//! head layout must be the documented one (copies where they are promised,
//! untouched tensors bit-identical, output columns split between copies); the
//! clone noise must make the copies differ; Depth must carry λ_init per layer;
//! and every invalid request must be refused with a message. Small fp32 CPU
//! models throughout.

mod common;

use std::collections::HashMap;

use common::{gda_config, gda_layer, max_abs, max_diff, randomize_model, resolve, seeded, std_config, CPU, F32};
use gda::config::{AttentionKind, ModelConfig, NoiseScope};
use gda::grow::{grow, CloneNoise, GrowOp};
use gda::model::attention::Path;
use gda::model::Model;
use gda::train::checkpoint::load_map;
use tch::{nn, Kind, Tensor};

/// Weight init std: large enough that attention maps are far from uniform
/// and the logits are O(1), so 1e-4 is a meaningful tolerance.
const INIT_STD: f64 = 0.1;
/// Max |logits_grown − logits_source| allowed.
const TOL: f64 = 1e-4;
const NOISE: CloneNoise = CloneNoise { snr: 10.0, seed: 7 };
const BATCH: i64 = 2;
const T: i64 = 16;

// ---------------------------------------------------------------- helpers

/// A gda config at d = 8, d_model = 32, 2 layers; 0 means the default count.
fn gda_cfg(hs: usize, hn: usize, kv: usize, noise_kv: usize, scope: NoiseScope) -> ModelConfig {
    gda_config(hs, hn, kv, noise_kv, scope, 8, 32, 2, INIT_STD)
}

fn plain(hs: usize, hn: usize, kv: usize) -> ModelConfig {
    gda_cfg(hs, hn, kv, 0, NoiseScope::Group)
}

fn std_cfg(heads: usize, kv: usize) -> ModelConfig {
    std_config(heads, kv, 8, 32, 2, INIT_STD)
}

fn describe(cfg: &ModelConfig) -> String {
    match cfg.attention {
        AttentionKind::Gda => format!(
            "gda Hs={} Hn={} Hkv={} Hk2={} scope={:?} C={} L={}",
            cfg.signal_heads,
            cfg.noise_heads,
            cfg.kv_heads,
            cfg.noise_kv_heads,
            cfg.noise_scope,
            cfg.d_model,
            cfg.n_layers
        ),
        AttentionKind::Standard => {
            format!("standard H={} Hkv={} C={} L={}", cfg.heads, cfg.kv_heads, cfg.d_model, cfg.n_layers)
        }
    }
}

/// A source model with random weights, λ vectors, subln and norm weights (the
/// norms are not all ones, so repeating them is actually tested).
fn source(cfg: &ModelConfig) -> (nn::VarStore, Model) {
    let vs = nn::VarStore::new(CPU);
    let model = Model::new(cfg, vs.root());
    randomize_model(&model, true);
    (vs, model)
}

fn tensors(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

/// A deep copy (tch's Tensor is not Clone).
fn deep(m: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    m.iter().map(|(k, v)| (k.clone(), v.copy())).collect()
}

fn logits(model: &Model, tokens: &Tensor, path: Path) -> Tensor {
    tch::no_grad(|| model.forward_path(tokens, path).0)
}

/// Head block `i` of `width` rows (dim 0) or columns (dim 1).
fn head(t: &Tensor, dim: i64, width: usize, i: usize) -> Tensor {
    t.narrow(dim, (i * width) as i64, width as i64)
}

fn layer_tensor<'a>(m: &'a HashMap<String, Tensor>, l: usize, suffix: &str) -> &'a Tensor {
    let name = format!("blocks.{l}.{suffix}");
    m.get(&name).unwrap_or_else(|| panic!("no tensor {name}"))
}

/// The result of one checked growth.
struct Grown {
    cfg: ModelConfig,
    src: HashMap<String, Tensor>,
    out: HashMap<String, Tensor>,
    model: Model,
    /// Max |logits_grown − logits_source| over both paths.
    diff: f64,
}

/// Builds a random source model of `cfg`, grows it by `ops` in turn, loads the
/// result into a fresh `Model` of the grown config, and checks: the source
/// tensors were not modified, the config resolves unchanged, the parameter
/// count of the config equals the VarStore's, and the logits on random tokens
/// equal the source's within TOL on the fused and the materialised path.
fn grow_and_check(cfg: &ModelConfig, ops: &[GrowOp], noise: Option<&CloneNoise>) -> Grown {
    let what = format!("{} {ops:?} noise={:?}", describe(cfg), noise.map(|n| n.snr));
    let (vs, model) = source(cfg);
    let src = tensors(&vs);
    let (mut cur_cfg, mut cur) = (cfg.clone(), deep(&src));
    for op in ops {
        let before = deep(&cur);
        let (c, t) = grow(&cur_cfg, &cur, op, noise).unwrap_or_else(|e| panic!("{what}: grow failed: {e}"));
        for (name, t) in &before {
            assert!(t.equal(&cur[name]), "{what}: grow modified its input {name}");
        }
        (cur_cfg, cur) = (c, t);
    }
    assert_eq!(resolve(cur_cfg.clone()), cur_cfg, "{what}: the grown config does not resolve unchanged");
    let vs2 = nn::VarStore::new(CPU);
    let model2 = Model::new(&cur_cfg, vs2.root());
    load_map(&vs2, &cur).unwrap_or_else(|e| panic!("{what}: the grown tensors do not load: {e}"));
    let counted: usize = vs2.variables().values().map(|v| v.numel()).sum();
    assert_eq!(gda::model::param_count(&cur_cfg), counted, "{what}: param_count of the grown config != VarStore");
    assert!(counted > vs.variables().values().map(|v| v.numel()).sum::<usize>(), "{what}: nothing grew");

    let tokens = Tensor::randint(cfg.vocab_size as i64, [BATCH, T], (Kind::Int64, CPU));
    let mut diff: f64 = 0.0;
    for path in [Path::Fused, Path::Materialised] {
        let a = logits(&model, &tokens, path);
        let b = logits(&model2, &tokens, path);
        assert!(max_abs(&a) > 0.1, "{what} {path:?}: degenerate logits");
        let d = max_diff(&a, &b);
        assert!(d <= TOL, "{what} {path:?}: grown logits differ from the source's by {d:e}");
        diff = diff.max(d);
    }
    Grown { cfg: cur_cfg, src, out: cur, model: model2, diff }
}

/// Two blocks that were cloned from `orig` and split: without noise both are
/// exactly `orig / n`; with noise they differ from each other (by about
/// std(orig / n)/snr per entry) while their sum is still 2·orig/n.
fn check_split_pair(a: &Tensor, b: &Tensor, orig: &Tensor, n: f64, noisy: bool, what: &str) {
    let part = orig / n;
    let sum_err = max_diff(&(a + b), &(&part * 2.0));
    assert!(sum_err <= 1e-6, "{what}: the two copies do not sum to the source (off by {sum_err:e})");
    if noisy {
        let spread = max_diff(a, b);
        let expect = part.std(false).double_value(&[]) / NOISE.snr;
        assert!(spread > expect, "{what}: clone noise did not make the copies differ ({spread:e} vs ε std {expect:e})");
    } else {
        assert!(a.equal(&part) && b.equal(&part), "{what}: copies are not exactly source / {n}");
    }
}

fn noise_opts() -> [Option<&'static CloneNoise>; 2] {
    [None, Some(&NOISE)]
}

/// Worst logit difference seen, printed so `--nocapture` shows tolerances.
fn report(what: &str, diffs: &[f64]) {
    let worst = diffs.iter().cloned().fold(0.0, f64::max);
    eprintln!("{what}: {} growths, max |Δlogits| = {worst:e}", diffs.len());
}

// ------------------------------------------------------------------ tests

#[test]
fn signal_only_growth_is_exact() {
    let _rng = seeded(1);
    let mut diffs = Vec::new();
    // G = 1, 2, 4; K/V shared by two groups; the no-share layout (own K2 per noise head).
    let layouts =
        [plain(4, 4, 0), plain(4, 2, 0), plain(4, 1, 0), plain(8, 4, 2), gda_cfg(4, 4, 2, 4, NoiseScope::Group)];
    for cfg in &layouts {
        let (g, hn, d) = (cfg.ratio(), cfg.noise_heads, cfg.head_dim);
        let mut per_group = vec![1, g];
        per_group.dedup();
        for &p in &per_group {
            for noise in noise_opts() {
                let r = grow_and_check(cfg, &[GrowOp::SignalOnly { per_group: p }], noise);
                let what = format!("{} signal-only +{p} noise={}", describe(cfg), noise.is_some());
                diffs.push(r.diff);
                let g2 = g + p;
                let mut expected = cfg.clone();
                expected.signal_heads = hn * g2;
                assert_eq!(r.cfg, expected, "{what}: grown config");
                assert_eq!(r.cfg.ratio(), g2);
                // Everything but Q1 and the output projection is the source's, bit for bit.
                for (name, t) in &r.src {
                    if !(name.ends_with("attn.q1.weight") || name.ends_with("attn.o.weight")) {
                        assert!(t.equal(&r.out[name]), "{what}: {name} changed");
                    }
                }
                for l in 0..cfg.n_layers {
                    let (q1, q1s) =
                        (layer_tensor(&r.out, l, "attn.q1.weight"), layer_tensor(&r.src, l, "attn.q1.weight"));
                    let (o, os) = (layer_tensor(&r.out, l, "attn.o.weight"), layer_tensor(&r.src, l, "attn.o.weight"));
                    for grp in 0..hn {
                        // New group grp is heads grp·G'..(grp+1)·G': the G originals, then copies of the first p.
                        for j in 0..g2 {
                            let src_head = grp * g + if j < g { j } else { j - g };
                            assert!(
                                head(q1, 0, d, grp * g2 + j).equal(&head(q1s, 0, d, src_head)),
                                "{what}: layer {l} Q1 of new head {} is not source head {src_head}",
                                grp * g2 + j
                            );
                        }
                        for j in 0..g {
                            let orig = head(os, 1, 2 * d, grp * g + j);
                            let kept = head(o, 1, 2 * d, grp * g2 + j);
                            if j < p {
                                let copy = head(o, 1, 2 * d, grp * g2 + g + j);
                                check_split_pair(
                                    &kept,
                                    &copy,
                                    &orig,
                                    2.0,
                                    noise.is_some(),
                                    &format!("{what}: layer {l} o of head {}", grp * g + j),
                                );
                            } else {
                                assert!(kept.equal(&orig), "{what}: layer {l} o columns of an uncopied head changed");
                            }
                        }
                    }
                }
            }
        }
    }
    report("signal-only", &diffs);
}

#[test]
fn uniform_growth_is_exact() {
    let _rng = seeded(2);
    let mut diffs = Vec::new();
    let cases = [
        (plain(4, 4, 0), vec![1, 2, 4]),
        (plain(4, 2, 0), vec![1, 2]),
        (plain(4, 1, 0), vec![1]),
        // K/V shared by 2 groups: copies come in pairs of groups.
        (plain(8, 4, 2), vec![2, 4]),
        (plain(8, 4, 1), vec![4]),
        // No-share twin and fewer K2 than K1/V heads.
        (gda_cfg(4, 4, 2, 4, NoiseScope::Group), vec![2]),
        (gda_cfg(8, 4, 4, 2, NoiseScope::Group), vec![2, 4]),
        // Whole groups keep their order, so "one" stays exact.
        (gda_cfg(8, 2, 0, 0, NoiseScope::One), vec![1, 2]),
    ];
    for (cfg, ks) in &cases {
        let (g, hs, hn, kv, k2, d) =
            (cfg.ratio(), cfg.signal_heads, cfg.noise_heads, cfg.kv_heads, cfg.noise_kv_heads, cfg.head_dim);
        for &k in ks {
            for noise in noise_opts() {
                let r = grow_and_check(cfg, &[GrowOp::Uniform { groups: k }], noise);
                let what = format!("{} uniform +{k} noise={}", describe(cfg), noise.is_some());
                diffs.push(r.diff);
                let (kv_add, k2_add) = (k / (hn / kv), k / (hn / k2));
                let mut expected = cfg.clone();
                expected.signal_heads = hs + k * g;
                expected.noise_heads = hn + k;
                expected.kv_heads = kv + kv_add;
                expected.noise_kv_heads = k2 + k2_add;
                assert_eq!(r.cfg, expected, "{what}: grown config");
                assert_eq!(r.cfg.ratio(), g, "{what}: G changed");
                for (name, t) in &r.src {
                    if !name.contains(".attn.") || name.contains("lambda") || name.contains("subln") {
                        assert!(t.equal(&r.out[name]), "{what}: {name} changed");
                    }
                }
                for l in 0..cfg.n_layers {
                    // Originals first, then copies of the first heads (rows).
                    for (suffix, n_old, n_add, w) in [
                        ("attn.q1.weight", hs, k * g, d),
                        ("attn.q2.weight", hn, k, d),
                        ("attn.k1.weight", kv, kv_add, d),
                        ("attn.k2.weight", k2, k2_add, d),
                        ("attn.v.weight", kv, kv_add, 2 * d),
                    ] {
                        let (t, ts) = (layer_tensor(&r.out, l, suffix), layer_tensor(&r.src, l, suffix));
                        assert_eq!(t.size()[0] as usize, (n_old + n_add) * w, "{what}: {suffix} rows");
                        assert!(
                            t.narrow(0, 0, (n_old * w) as i64).equal(ts),
                            "{what}: layer {l} {suffix}: originals changed"
                        );
                        for j in 0..n_add {
                            assert!(
                                head(t, 0, w, n_old + j).equal(&head(ts, 0, w, j)),
                                "{what}: layer {l} {suffix}: head {} is not a copy of {j}",
                                n_old + j
                            );
                        }
                    }
                    let (o, os) = (layer_tensor(&r.out, l, "attn.o.weight"), layer_tensor(&r.src, l, "attn.o.weight"));
                    for i in 0..hs {
                        let orig = head(os, 1, 2 * d, i);
                        if i < k * g {
                            let pair = (head(o, 1, 2 * d, i), head(o, 1, 2 * d, hs + i));
                            check_split_pair(
                                &pair.0,
                                &pair.1,
                                &orig,
                                2.0,
                                noise.is_some(),
                                &format!("{what}: layer {l} o of head {i}"),
                            );
                        } else {
                            assert!(
                                head(o, 1, 2 * d, i).equal(&orig),
                                "{what}: layer {l} o of an uncloned head changed"
                            );
                        }
                    }
                }
            }
        }
    }
    report("uniform", &diffs);
}

#[test]
fn width_growth_is_exact() {
    let _rng = seeded(3);
    let mut diffs = Vec::new();
    let cases = [
        (plain(4, 4, 0), 2),
        (plain(4, 2, 0), 2),
        (plain(4, 1, 0), 2),
        (plain(8, 4, 2), 2),
        (gda_cfg(4, 4, 2, 4, NoiseScope::Group), 2),
        (gda_cfg(8, 2, 0, 0, NoiseScope::One), 2),
        // An odd factor: the last input block has no noise partner.
        (plain(4, 2, 0), 3),
        (std_cfg(4, 2), 2),
        (std_cfg(4, 4), 3),
    ];
    for (cfg, n) in &cases {
        let n = *n;
        for noise in noise_opts() {
            let r = grow_and_check(cfg, &[GrowOp::Width { factor: n }], noise);
            let what = format!("{} width ×{n} noise={}", describe(cfg), noise.is_some());
            diffs.push(r.diff);
            let mut expected = cfg.clone();
            expected.d_model *= n;
            expected.mlp_hidden *= n;
            expected.kv_heads *= n;
            if cfg.attention == AttentionKind::Gda {
                expected.signal_heads *= n;
                expected.noise_heads *= n;
                expected.noise_kv_heads *= n;
            } else {
                expected.heads *= n;
            }
            assert_eq!(r.cfg, expected, "{what}: grown config");
            assert_eq!(r.cfg.ratio(), cfg.ratio(), "{what}: G changed");
            let (c, ni) = (cfg.d_model as i64, n as i64);
            // Embedding and norms repeated, not divided.
            let emb = &r.src["tok_emb.weight"];
            assert!(r.out["tok_emb.weight"].equal(&emb.repeat([1, ni])), "{what}: embedding is not repeated");
            for name in ["norm.weight", "blocks.1.attn_norm.weight", "blocks.0.mlp_norm.weight"] {
                assert!(r.out[name].equal(&r.src[name].repeat([ni])), "{what}: {name} is not repeated");
            }
            for name in ["attn.lambda_q1", "attn.lambda_k2", "attn.subln.weight"] {
                let name = format!("blocks.1.{name}");
                if let Some(t) = r.src.get(&name) {
                    assert!(t.equal(&r.out[&name]), "{what}: {name} changed");
                }
            }
            // A linear: output block 1, input blocks 0 and 1 are W/n (± ε).
            let (up, ups) = (layer_tensor(&r.out, 0, "mlp.up.weight"), layer_tensor(&r.src, 0, "mlp.up.weight"));
            let f = ups.size()[0];
            let block = |i: i64, j: i64| up.narrow(0, i * f, f).narrow(1, j * c, c);
            check_split_pair(&block(1, 0), &block(1, 1), ups, n as f64, noise.is_some(), &format!("{what}: mlp.up"));
            // The LM head: n input blocks, one output block.
            let (lm, lms) = (&r.out["lm_head.weight"], &r.src["lm_head.weight"]);
            check_split_pair(
                &lm.narrow(1, 0, c),
                &lm.narrow(1, c, c),
                lms,
                n as f64,
                noise.is_some(),
                &format!("{what}: lm_head"),
            );
            if n % 2 == 1 {
                // The unpaired last input block stays clean.
                assert!(
                    lm.narrow(1, (n as i64 - 1) * c, c).equal(&(lms / n as f64)),
                    "{what}: unpaired block was noised"
                );
            }
            // Each new query head is a copy of an old one, in the order [heads…, heads…].
            if noise.is_none() {
                let (q, hq) = match cfg.attention {
                    AttentionKind::Gda => ("attn.q1.weight", cfg.signal_heads),
                    AttentionKind::Standard => ("attn.q.weight", cfg.heads),
                };
                let (qt, qs) = (layer_tensor(&r.out, 1, q), layer_tensor(&r.src, 1, q));
                let d = cfg.head_dim;
                for a in 0..n {
                    for i in 0..hq {
                        let expect = head(qs, 0, d, i).repeat([1, ni]) / n as f64;
                        assert!(
                            head(qt, 0, d, a * hq + i).equal(&expect),
                            "{what}: query head {} is not head {i}",
                            a * hq + i
                        );
                    }
                }
            }
        }
    }
    report("width", &diffs);
}

#[test]
fn depth_growth_is_exact_and_keeps_lambda_init() {
    let _rng = seeded(4);
    let mut diffs = Vec::new();
    let mut custom = plain(4, 2, 0);
    custom.lambda_init = vec![0.3, 0.65];
    let cases = [custom, plain(4, 4, 0), plain(4, 1, 0), plain(8, 4, 2), std_cfg(4, 2)];
    for cfg in &cases {
        for noise in noise_opts() {
            let r = grow_and_check(cfg, &[GrowOp::Depth], noise);
            let what = format!("{} depth noise={}", describe(cfg), noise.is_some());
            diffs.push(r.diff);
            let l0 = &cfg.lambda_init;
            let mut expected = cfg.clone();
            expected.n_layers = 4;
            expected.lambda_init = vec![l0[0], l0[0], l0[1], l0[1]];
            assert_eq!(r.cfg, expected, "{what}: grown config");
            if cfg.attention == AttentionKind::Gda {
                // λ_init travels with the layer, into the built model too (not
                // the default schedule of a 4-layer model).
                for (l, block) in r.model.blocks.iter().enumerate() {
                    assert_eq!(gda_layer(&block.attn).lambda_init, l0[l / 2], "{what}: λ_init of layer {l}");
                }
                assert_ne!(r.cfg.lambda_init[1], gda::config::default_lambda_init(1));
            }
            // Block 2l is block l; block 2l+1 is block l with zero attn.o and mlp.down.
            for (name, t) in &r.out {
                let src_name = match name.strip_prefix("blocks.").and_then(|s| s.split_once('.')) {
                    Some((l, suffix)) => {
                        let l: usize = l.parse().unwrap();
                        if l % 2 == 1 && (suffix == "attn.o.weight" || suffix == "mlp.down.weight") {
                            assert_eq!(max_abs(t), 0.0, "{what}: {name} of the inserted copy is not zero");
                            continue;
                        }
                        format!("blocks.{}.{suffix}", l / 2)
                    }
                    None => name.clone(),
                };
                assert!(t.equal(&r.src[&src_name]), "{what}: {name} is not {src_name}");
            }
            // Depth has nothing to split between copies: clone noise changes nothing.
            let plain_out = grow(cfg, &r.src, &GrowOp::Depth, None).unwrap().1;
            assert!(plain_out.iter().all(|(k, t)| t.equal(&r.out[k])), "{what}: clone noise changed a depth growth");
        }
    }
    report("depth", &diffs);
}

#[test]
fn growth_steps_compose() {
    let _rng = seeded(5);
    // Signal-only, then uniform, then width, then depth, with noise at every
    // step: still the source's function.
    let ops = [
        GrowOp::SignalOnly { per_group: 1 },
        GrowOp::Uniform { groups: 2 },
        GrowOp::Width { factor: 2 },
        GrowOp::Depth,
    ];
    let r = grow_and_check(&plain(4, 2, 0), &ops, Some(&NOISE));
    // 4:2 → 6:2 (G 3) → 12:4 → 24:8 at d_model 64, 4 layers.
    assert_eq!(
        (r.cfg.signal_heads, r.cfg.noise_heads, r.cfg.kv_heads, r.cfg.d_model, r.cfg.n_layers),
        (24, 8, 8, 64, 4)
    );
    report("composed", &[r.diff]);
}

#[test]
fn clone_noise_is_seeded_and_scaled() {
    let _rng = seeded(6);
    let cfg = plain(4, 2, 0);
    let (vs, _model) = source(&cfg);
    let src = tensors(&vs);
    let op = GrowOp::Width { factor: 2 };
    let run = |seed: u64| grow(&cfg, &src, &op, Some(&CloneNoise { snr: 10.0, seed })).unwrap().1;
    let (a, b, other) = (run(1), run(1), run(2));
    let same = a.iter().all(|(k, t)| t.equal(&b[k]));
    assert!(same, "the same seed gave different tensors");
    assert!(!a["blocks.0.mlp.up.weight"].equal(&other["blocks.0.mlp.up.weight"]), "another seed gave the same noise");
    // ε = (block0 − block1)/2 has std ≈ std(W/2)/snr (3072 draws per block).
    let up = &a["blocks.0.mlp.up.weight"];
    let (f, c) = (src["blocks.0.mlp.up.weight"].size()[0], cfg.d_model as i64);
    let eps = (up.narrow(0, 0, f).narrow(1, 0, c) - up.narrow(0, 0, f).narrow(1, c, c)) / 2.0;
    let want = (&src["blocks.0.mlp.up.weight"] / 2.0).std(false).double_value(&[]) / 10.0;
    let got = eps.std(false).double_value(&[]);
    assert!((got / want - 1.0).abs() < 0.1, "ε std {got:e}, expected std(block)/snr = {want:e}");
}

#[test]
fn invalid_growth_is_refused() {
    let _rng = seeded(7);
    let expect_err =
        |cfg: &ModelConfig, tensors: &HashMap<String, Tensor>, op: GrowOp, noise: Option<&CloneNoise>, needle: &str| {
            match grow(cfg, tensors, &op, noise) {
                Ok((c, _)) => panic!("{} {op:?}: expected an error, got {}", describe(cfg), describe(&c)),
                Err(e) => {
                    assert!(e.contains(needle), "{} {op:?}: error {e:?} does not mention {needle:?}", describe(cfg))
                }
            }
        };
    let model_tensors = |cfg: &ModelConfig| tensors(&source(cfg).0);

    let c42 = plain(4, 2, 0);
    let t42 = model_tensors(&c42);
    expect_err(&c42, &t42, GrowOp::SignalOnly { per_group: 0 }, None, "allowed: 1..=2");
    expect_err(&c42, &t42, GrowOp::SignalOnly { per_group: 3 }, None, "allowed: 1..=2");
    expect_err(&c42, &t42, GrowOp::Uniform { groups: 0 }, None, "allowed: 1, 2");
    expect_err(&c42, &t42, GrowOp::Uniform { groups: 3 }, None, "allowed: 1, 2");
    expect_err(&c42, &t42, GrowOp::Width { factor: 0 }, None, "at least 2");
    expect_err(&c42, &t42, GrowOp::Width { factor: 1 }, None, "at least 2");
    for snr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        expect_err(&c42, &t42, GrowOp::Width { factor: 2 }, Some(&CloneNoise { snr, seed: 0 }), "snr");
    }
    // One K/V head per two groups: a single cloned group would have no K/V head of its own.
    let c842 = plain(8, 4, 2);
    let t842 = model_tensors(&c842);
    expect_err(&c842, &t842, GrowOp::Uniform { groups: 1 }, None, "allowed: 2, 4");
    expect_err(&c842, &t842, GrowOp::Uniform { groups: 3 }, None, "allowed: 2, 4");
    // Under noise_scope "one" a copied first head would lose its noise term.
    let one = gda_cfg(8, 2, 0, 0, NoiseScope::One);
    expect_err(&one, &model_tensors(&one), GrowOp::SignalOnly { per_group: 1 }, None, "noise_scope");
    // Tied embeddings cannot be widened.
    let mut tied = c42.clone();
    tied.tie_embeddings = true;
    let t_tied = model_tensors(&tied);
    expect_err(&tied, &t_tied, GrowOp::Width { factor: 2 }, None, "tie_embeddings");
    // Standard attention has no signal/noise heads to clone.
    let s = std_cfg(4, 2);
    let ts = model_tensors(&s);
    expect_err(&s, &ts, GrowOp::SignalOnly { per_group: 1 }, None, "attention = \"gda\"");
    expect_err(&s, &ts, GrowOp::Uniform { groups: 1 }, None, "attention = \"gda\"");
    // An unresolved config, and tensors that do not fit the config.
    let mut unresolved = c42.clone();
    unresolved.kv_heads = 0;
    expect_err(&unresolved, &t42, GrowOp::Depth, None, "not resolved");
    let mut missing = deep(&t42);
    missing.remove("blocks.1.attn.k2.weight");
    expect_err(&c42, &missing, GrowOp::Depth, None, "blocks.1.attn.k2.weight is missing");
    let mut extra = deep(&t42);
    extra.insert("blocks.2.attn.k2.weight".into(), Tensor::zeros([16, 32], F32));
    expect_err(&c42, &extra, GrowOp::Depth, None, "unexpected tensor blocks.2.attn.k2.weight");
    let mut wrong = deep(&t42);
    wrong.insert("blocks.0.attn.q1.weight".into(), Tensor::zeros([24, 32], F32));
    expect_err(&c42, &wrong, GrowOp::Depth, None, "blocks.0.attn.q1.weight has shape [24, 32]");
    // The valid neighbours of those requests do work (the errors are not blanket refusals).
    for (cfg, t, op) in [
        (&c42, &t42, GrowOp::SignalOnly { per_group: 2 }),
        (&c42, &t42, GrowOp::Uniform { groups: 2 }),
        (&c842, &t842, GrowOp::Uniform { groups: 2 }),
        (&tied, &t_tied, GrowOp::Depth),
        (&s, &ts, GrowOp::Width { factor: 2 }),
    ] {
        grow(cfg, t, &op, Some(&NOISE)).unwrap_or_else(|e| panic!("{} {op:?}: {e}", describe(cfg)));
    }
    // load_map is as strict as checkpoint::load_weights.
    let vs = nn::VarStore::new(CPU);
    let _m = Model::new(&c42, vs.root());
    assert!(load_map(&vs, &missing).unwrap_err().contains("missing"));
    assert!(load_map(&vs, &extra).unwrap_err().contains("unexpected"));
    assert!(load_map(&vs, &wrong).unwrap_err().contains("shape"));
}

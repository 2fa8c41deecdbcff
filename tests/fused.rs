//! The fused CPU kernels (src/model/kernels.cpp, `model.fused`) against the
//! ATen path they replace: each kernel's outputs and gradients in f64 to
//! 1e-10, on shapes with vector tails, non-contiguous inputs and enough rows
//! to split over threads, on 1 and 2 threads; every attention layout and the
//! whole model (also with a decoding cache) with `fused` on and off, f64 to
//! 1e-10, checking that the kernels really ran; and a training run with
//! fused on and off giving the same loss curve to the f32 bound.

mod common;

use common::{gda, gda_config, max_abs, max_diff, randomize_gda, randomize_model, seeded, std_config, CPU};
use gda::config::{ModelConfig, NoiseScope, Spec};
use gda::model::attention::{Attention, Path};
use gda::model::layers::Rope;
use gda::model::{fused, KvCache, Model};
use tch::{nn, Kind, Tensor};

const F64: (Kind, tch::Device) = (Kind::Double, CPU);

fn leaf(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, F64).set_requires_grad(true)
}

/// Gradients of Σ_i sum(outs_i · seeds_i) with respect to `inputs`.
fn grads_of(outs: &[&Tensor], seeds: &[&Tensor], inputs: &[&Tensor]) -> Vec<Tensor> {
    let loss =
        outs.iter().zip(seeds).map(|(o, r)| (*o * *r).sum(Kind::Double)).reduce(|a, b| a + b).expect("an output");
    // The graph is kept: the ATen and fused runs share leaves' parents (λ).
    Tensor::run_backward(&[loss], inputs, true, false)
}

/// max |a − b| ≤ 1e-10 · max(1, max |b|).
fn assert_same(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let (diff, scale) = (max_diff(&a, &b), max_abs(&b).max(1.0));
    assert!(diff <= 1e-10 * scale, "{what}: fused vs ATen differ by {diff:e} (scale {scale:e})");
    assert!(max_abs(&b) > 0.0, "{what}: identically zero, so the comparison says nothing");
}

fn assert_all_same(fused: &[Tensor], aten: &[Tensor], names: &[&str], what: &str) {
    assert_eq!(fused.len(), aten.len());
    for ((f, a), n) in fused.iter().zip(aten).zip(names) {
        assert_same(f, a, &format!("{what}: {n}"));
    }
}

/// Runs `check` on 1 and on 2 threads (the kernels' reductions over rows go
/// through one partial sum per thread).
fn on_threads(seed: i64, check: impl Fn(&str)) {
    let _guard = seeded(seed);
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        check(&format!("{threads} thread(s)"));
    }
    tch::set_num_threads(1);
}

#[test]
fn add_rms_norm_and_rms_norm_match_aten() {
    on_threads(1, |th| {
        // 600 rows of 37: vector tails, and more rows than one task takes.
        let (x, a, w) = (leaf(&[4, 150, 37]), leaf(&[4, 150, 37]), leaf(&[37]));
        let (rs, ry) = (Tensor::randn([4, 150, 37], F64), Tensor::randn([4, 150, 37], F64));
        let (s, y) = fused::add_rms_norm(&x, &a, &w, 1e-5);
        let s0 = &x + &a;
        let y0 = s0.rms_norm([37], Some(&w), 1e-5);
        assert_all_same(
            &[s.shallow_clone(), y.shallow_clone()],
            &[s0.shallow_clone(), y0.shallow_clone()],
            &["s", "y"],
            th,
        );
        let names = ["dx", "da", "dw"];
        let g = grads_of(&[&s, &y], &[&rs, &ry], &[&x, &a, &w]);
        let g0 = grads_of(&[&s0, &y0], &[&rs, &ry], &[&x, &a, &w]);
        assert_all_same(&g, &g0, &names, &format!("add_rms_norm {th}"));
        // Only the norm used downstream: no gradient arrives for s.
        let (_, y) = fused::add_rms_norm(&x, &a, &w, 1e-5);
        let y0 = (&x + &a).rms_norm([37], Some(&w), 1e-5);
        let g = grads_of(&[&y], &[&ry], &[&x, &a, &w]);
        let g0 = grads_of(&[&y0], &[&ry], &[&x, &a, &w]);
        assert_all_same(&g, &g0, &names, &format!("add_rms_norm, y only, {th}"));
        let y = fused::rms_norm(&x, &w, 1e-5);
        let y0 = x.rms_norm([37], Some(&w), 1e-5);
        assert_same(&y, &y0, &format!("rms_norm {th}"));
        let g = grads_of(&[&y], &[&ry], &[&x, &w]);
        let g0 = grads_of(&[&y0], &[&ry], &[&x, &w]);
        assert_all_same(&g, &g0, &["dx", "dw"], &format!("rms_norm {th}"));
    });
}

#[test]
fn swiglu_matches_aten() {
    on_threads(2, |th| {
        let gu = leaf(&[4, 100, 90]);
        let r = Tensor::randn([4, 100, 45], F64);
        let h = fused::swiglu(&gu);
        let c = gu.chunk(2, -1);
        let h0 = c[0].silu() * &c[1];
        assert_same(&h, &h0, &format!("swiglu {th}"));
        let g = grads_of(&[&h], &[&r], &[&gu]);
        let g0 = grads_of(&[&h0], &[&r], &[&gu]);
        assert_all_same(&g, &g0, &["dgu"], &format!("swiglu {th}"));
    });
}

#[test]
fn rope_heads_matches_aten_rotation_transpose_and_pad() {
    on_threads(3, |th| {
        let (b, t, h, d) = (4, 128, 6, 8);
        // The q/k columns of a wider projection: rows are not contiguous.
        let y = leaf(&[b, t, h * d + 12]);
        let x = y.narrow(2, 0, h * d);
        let (cos, sin) = Rope::new(d as usize, 10000.0).tables(t, CPU);
        for width in [d, 2 * d] {
            let what = format!("rope_heads, width {width}, {th}");
            let out = fused::rope_heads(&x, &cos, &sin, h, width);
            let rotated = Rope::apply(&x.view([b, t, h, d]), &cos.unsqueeze(1), &sin.unsqueeze(1)).transpose(1, 2);
            let out0 = rotated.constant_pad_nd([0, width - d]);
            assert_same(&out, &out0, &what);
            let r = Tensor::randn([b, h, t, width], F64);
            let g = grads_of(&[&out], &[&r], &[&y]);
            let g0 = grads_of(&[&out0], &[&r], &[&y]);
            assert_all_same(&g, &g0, &["dy"], &what);
        }
    });
}

#[test]
fn diff_combine_matches_aten() {
    on_threads(4, |th| {
        let (b, hs, hn, t, w) = (2, 8, 2, 128, 16);
        let g = hs / hn;
        // SDPA's outputs are (B, T, H, W) in memory, viewed as (B, H, T, W).
        let (sig_leaf, noise_leaf) = (leaf(&[b, t, hs, w]), leaf(&[b, t, hn, w]));
        let (signal, noise) = (sig_leaf.transpose(1, 2), noise_leaf.transpose(1, 2));
        let (lq, lk, weight) = (leaf(&[3]), leaf(&[3]), leaf(&[w]));
        let lambda = (&lq * &lk).sum(Kind::Double).exp() * 0.5 + 0.1;
        let (scale, eps) = (0.7, 1e-5);
        let out = fused::diff_combine(&signal, &noise, &lambda, &weight, scale, eps);
        let o = (signal.reshape([b, hn, g, t, w]) - noise.unsqueeze(2) * &lambda).reshape([b, hs, t, w]);
        let out0 = o.rms_norm([w], Some(&(&weight * scale)), eps).transpose(1, 2).reshape([b, t, hs * w]);
        assert_same(&out, &out0, &format!("diff_combine {th}"));
        let r = Tensor::randn([b, t, hs * w], F64);
        let inputs = [&sig_leaf, &noise_leaf, &lq, &lk, &weight];
        let gr = grads_of(&[&out], &[&r], &inputs);
        let g0 = grads_of(&[&out0], &[&r], &inputs);
        assert_all_same(&gr, &g0, &["dsignal", "dnoise", "dλq", "dλk", "dw"], &format!("diff_combine {th}"));
    });
}

#[test]
fn causal_attention_matches_aten_sdpa() {
    on_threads(7, |th| {
        for (hq, hk, t, dk, dv) in [(8, 2, 50, 8, 16), (4, 4, 33, 16, 16), (6, 3, 17, 5, 7)] {
            let what = format!("causal_attention Hq={hq} Hk={hk} T={t} dk={dk} dv={dv}, {th}");
            // Strided inputs, as the projection's split and transpose give them.
            let qk_leaf = leaf(&[2, t, hq + hk, dk]);
            let v_leaf = leaf(&[2, t, hk, dv]);
            let qk = qk_leaf.transpose(1, 2);
            let (q, k, v) = (qk.narrow(1, 0, hq), qk.narrow(1, hq, hk), v_leaf.transpose(1, 2));
            let scale = 1.0 / (dk as f64).sqrt();
            let out = fused::causal_attention(&q, &k, &v, scale);
            let pad = |x: &Tensor| x.constant_pad_nd([0, dv.max(dk) - dk]);
            let v0 = v.constant_pad_nd([0, dv.max(dk) - dv]);
            let out0 = Tensor::scaled_dot_product_attention::<Tensor>(
                &pad(&q),
                &pad(&k),
                &v0,
                None,
                0.0,
                true,
                scale,
                hq != hk,
            )
            .narrow(3, 0, dv);
            assert_same(&out, &out0, &what);
            let r = Tensor::randn([2, hq, t, dv], F64);
            let g = grads_of(&[&out], &[&r], &[&qk_leaf, &v_leaf]);
            let g0 = grads_of(&[&out0], &[&r], &[&qk_leaf, &v_leaf]);
            assert_all_same(&g, &g0, &["dqk", "dv"], &what);
        }
    });
}

/// Every attention layout the parity tests cover (tests/attention.rs): GDA
/// at 1:1, 4:1 and with GQA K/V, the no-share twins, fewer K2 than K/V
/// heads, noise_scope = "one", and standard attention with and without GQA.
fn layouts() -> Vec<ModelConfig> {
    let mut cfgs = Vec::new();
    for (hs, hn, kv, nkv) in [(4, 4, 0, 0), (8, 2, 0, 0), (8, 2, 1, 0), (4, 4, 2, 4), (4, 4, 1, 4), (8, 4, 4, 2)] {
        cfgs.push(gda_config(hs, hn, kv, nkv, NoiseScope::Group, 8, 32, 2, 0.2));
    }
    for (hs, hn, kv) in [(4, 2, 2), (8, 2, 1)] {
        cfgs.push(gda_config(hs, hn, kv, 0, NoiseScope::One, 8, 32, 2, 0.2));
    }
    cfgs.push(std_config(4, 0, 8, 32, 2, 0.2));
    cfgs.push(std_config(4, 2, 8, 32, 2, 0.2));
    cfgs
}

fn unfused(cfg: &ModelConfig) -> ModelConfig {
    ModelConfig { fused: false, ..cfg.clone() }
}

/// Variables sorted by name, then `extra`.
fn sorted_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Output and gradients (every variable, then the input) of sum(out · r).
fn layer_run(
    vs: &nn::VarStore,
    attn: &Attention,
    cfg: &ModelConfig,
    x: &Tensor,
    r: &Tensor,
    path: Path,
) -> Vec<Tensor> {
    let x = x.detach().set_requires_grad(true);
    let (cos, sin) = Rope::new(cfg.head_dim, cfg.rope_theta).tables(x.size()[1], CPU);
    let (out, _) = attn.forward(&x, &cos, &sin, path);
    let vars = sorted_vars(vs);
    let mut inputs: Vec<&Tensor> = vars.iter().map(|(_, v)| v).collect();
    inputs.push(&x);
    let mut all = vec![out.detach()];
    all.extend(grads_of(&[&out], &[r], &inputs));
    all
}

/// Runs `f` and says how many fused-kernel calls it made.
fn kernel_calls<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = fused::calls();
    let out = f();
    (out, fused::calls() - before)
}

#[test]
fn every_attention_layout_gives_the_same_outputs_and_gradients_fused_or_not() {
    let _guard = seeded(5);
    for cfg in layouts() {
        let mut vs_on = nn::VarStore::new(CPU);
        let on = Attention::new(vs_on.root() / "attn", &cfg, 1, 0.2);
        if let Attention::Gda(a) = &on {
            randomize_gda(a);
        }
        let mut vs_off = nn::VarStore::new(CPU);
        let off = Attention::new(vs_off.root() / "attn", &unfused(&cfg), 1, 0.2);
        vs_off.copy(&vs_on).expect("same variables");
        vs_on.double();
        vs_off.double();
        let what = format!(
            "{:?} Hs={} Hn={} Hkv={} Hk2={} {:?}",
            cfg.attention, cfg.signal_heads, cfg.noise_heads, cfg.kv_heads, cfg.noise_kv_heads, cfg.noise_scope
        );
        let x = Tensor::randn([2, 12, 32], F64);
        let r = Tensor::randn([2, 12, 32], F64);
        for path in [Path::Fused, Path::Materialised] {
            let (got, calls) = kernel_calls(|| layer_run(&vs_on, &on, &cfg, &x, &r, path));
            let (want, calls_off) = kernel_calls(|| layer_run(&vs_off, &off, &cfg, &x, &r, path));
            assert!(calls > 0, "{what} {path:?}: the fused kernels never ran");
            assert_eq!(calls_off, 0, "{what} {path:?}: fused = false still ran a fused kernel");
            let mut names: Vec<String> = vec!["output".into()];
            names.extend(sorted_vars(&vs_on).into_iter().map(|(n, _)| format!("d{n}")));
            names.push("dx".into());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            assert_all_same(&got, &want, &names, &format!("{what} {path:?}"));
        }
    }
}

/// A model of `cfg` in f64, with `fused` on and off on the same weights.
fn model_pair(cfg: &ModelConfig) -> [(nn::VarStore, Model); 2] {
    let mut vs_on = nn::VarStore::new(CPU);
    let mut on = Model::new(cfg, vs_on.root());
    randomize_model(&on, true);
    let mut vs_off = nn::VarStore::new(CPU);
    let mut off = Model::new(&unfused(cfg), vs_off.root());
    vs_off.copy(&vs_on).expect("same variables");
    for (vs, m) in [(&mut vs_on, &mut on), (&mut vs_off, &mut off)] {
        vs.double();
        m.compute_kind = Kind::Double;
    }
    [(vs_on, on), (vs_off, off)]
}

#[test]
fn the_whole_model_gives_the_same_logits_gradients_and_cached_decoding_fused_or_not() {
    let _guard = seeded(6);
    for cfg in [gda_config(8, 2, 0, 0, NoiseScope::Group, 8, 32, 3, 0.2), std_config(4, 2, 8, 32, 3, 0.2)] {
        let cfg = ModelConfig { vocab_size: 256, ..cfg };
        let [(vs_on, on), (vs_off, off)] = model_pair(&cfg);
        let tokens = Tensor::randint(256, [2, 20], (Kind::Int64, CPU));
        let r = Tensor::randn([2, 20, 256], F64);
        let run = |vs: &nn::VarStore, m: &Model| {
            let logits = m.forward(&tokens);
            let vars = sorted_vars(vs);
            let inputs: Vec<&Tensor> = vars.iter().map(|(_, v)| v).collect();
            let mut all = vec![logits.detach()];
            all.extend(grads_of(&[&logits], &[&r], &inputs));
            all
        };
        let (got, calls) = kernel_calls(|| run(&vs_on, &on));
        let (want, calls_off) = kernel_calls(|| run(&vs_off, &off));
        assert!(calls >= 3 * 4, "{:?}: only {calls} fused-kernel calls", cfg.attention);
        assert_eq!(calls_off, 0);
        let names: Vec<String> =
            std::iter::once("logits".to_string()).chain(sorted_vars(&vs_on).into_iter().map(|(n, _)| n)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_all_same(&got, &want, &names, &format!("{:?} model", cfg.attention));
        // Incremental decoding: 14 positions into the cache, then 6 more.
        let decode = |m: &Model| {
            tch::no_grad(|| {
                let mut cache = KvCache::new(m);
                let _ = m.forward_cached(&tokens.narrow(1, 0, 14), Path::Fused, Some(&mut cache));
                m.forward_cached(&tokens.narrow(1, 14, 6), Path::Fused, Some(&mut cache)).0
            })
        };
        assert_same(&decode(&on), &decode(&off), &format!("{:?} cached decoding", cfg.attention));
        assert_same(&decode(&on), &got[0].narrow(1, 14, 6), &format!("{:?} cached vs full forward", cfg.attention));
    }
}

#[test]
fn fused_is_left_out_of_the_run_identity() {
    let on = Spec::default();
    let mut off = Spec::default();
    off.model.fused = false;
    assert_eq!(on.hash(), off.hash());
    assert!(on.fixed_diff(&off).is_empty());
    let mut other = Spec::default();
    other.model.d_model = 64;
    assert_ne!(on.hash(), other.hash(), "the hash must still see a real change");
}

/// The smoke spec trained with fused on and off: the logged losses agree to
/// the f32 bound (the kernels round differently, and 60 steps of AdamW
/// carry that forward).
#[test]
fn a_training_run_gives_the_same_loss_curve_fused_or_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = common::repo().join("experiments/smoke.toml");
    let mut curves = Vec::new();
    for fused in [true, false] {
        let out = tmp.path().join(format!("fused-{fused}"));
        let run = gda()
            .args(["train", "--spec"])
            .arg(&spec)
            .args(["--set", &format!("model.fused={fused}"), "--out"])
            .arg(&out)
            .output()
            .expect("gda runs");
        assert!(run.status.success(), "fused={fused}: {}", common::stderr_of(&run));
        curves.push((common::column(&out, "train_loss"), common::column(&out, "val_loss")));
    }
    for (name, a, b) in [("train_loss", &curves[0].0, &curves[1].0), ("val_loss", &curves[0].1, &curves[1].1)] {
        assert!(a.len() >= 3 && a.len() == b.len(), "{name}: {} vs {} rows", a.len(), b.len());
        for ((sa, la), (sb, lb)) in a.iter().zip(b.iter()) {
            assert_eq!(sa, sb);
            assert!((la - lb).abs() <= 1e-3 * lb.abs(), "{name} at step {sa}: fused {la} vs ATen {lb}");
        }
    }
}

//! `gda sample` and the incremental decoding under it: a forward with a KV
//! cache gives the logits of the full forward (every attention layout gda
//! trains), decoding with the cache picks the same tokens as recomputing the
//! whole window, greedy is the argmax of the full forward, the seed fixes the
//! text, and bad input is refused with exit code 2.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{
    gda, gda_config, hf_offline, randomize_model, seeded, std_config, stderr_of, stdout_of, write_spec, CPU, TINY,
};
use gda::config::{ModelConfig, NoiseScope};
use gda::data::rng::Rng;
use gda::eval::sample::{generate, pick, Generated, Sampling};
use gda::model::attention::Path as AttnPath;
use gda::model::{KvCache, Model};
use tch::Tensor;

/// Weight init std: large enough that the logits are peaked, so that greedy
/// choices are not decided by rounding.
const STD: f64 = 0.2;

/// The layouts gda trains, tiny (d = 8, d_model = 32, 2 layers, vocab 256).
fn layouts() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("GDA 4:1", gda_config(8, 2, 0, 0, NoiseScope::Group, 8, 32, 2, STD)),
        ("DIFF 1:1", gda_config(4, 4, 0, 0, NoiseScope::Group, 8, 32, 2, STD)),
        ("standard + GQA", std_config(4, 2, 8, 32, 2, STD)),
        // The no-share twin of 4:1: every signal head its own Q2/K2, K1 and V per original group.
        ("no-share", gda_config(4, 4, 1, 4, NoiseScope::Group, 8, 32, 2, STD)),
        // The equal-parameter control, with GQA under it.
        ("noise_scope one", gda_config(8, 2, 1, 0, NoiseScope::One, 8, 32, 2, STD)),
    ]
}

/// A model of `cfg` with random weights (λ and norms too) in its own VarStore.
fn model(cfg: &ModelConfig, seed: i64) -> (tch::nn::VarStore, Model) {
    let _guard = seeded(seed);
    let (vs, m) = Model::build(cfg, CPU);
    randomize_model(&m, true);
    (vs, m)
}

fn random_ids(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(256) as u32).collect()
}

fn tensor(ids: &[u32]) -> Tensor {
    Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).view([1, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn cached_forward_gives_the_full_forwards_logits() {
    for (name, cfg) in layouts() {
        let (_vs, m) = model(&cfg, 11);
        let ids = random_ids(20, 5);
        for path in [AttnPath::Fused, AttnPath::Materialised] {
            let full = tch::no_grad(|| m.forward_path(&tensor(&ids), path).0);
            // A prompt of 7, then single tokens, then a chunk of 4 (several
            // queries after a cache: the explicit mask), then single tokens.
            let mut cache = KvCache::new(&m);
            let mut parts = Vec::new();
            let mut at = 0;
            for len in [7, 1, 1, 1, 4, 1, 1, 1, 1, 1, 1] {
                let x = tensor(&ids[at..at + len]);
                parts.push(tch::no_grad(|| m.forward_cached(&x, path, Some(&mut cache)).0));
                at += len;
                assert_eq!(cache.len(), at as i64);
            }
            assert_eq!(at, ids.len());
            let cached = Tensor::cat(&parts, 1);
            let d = max_diff(&cached, &full);
            assert!(d < 1e-5, "{name} {path:?}: cached logits differ from the full forward's by {d:e}");
            // Not trivially equal: the logits vary along the sequence.
            let spread = max_diff(&full.narrow(1, 0, 1), &full.narrow(1, 19, 1));
            assert!(spread > 0.1, "{name}: {spread}");
        }
    }
}

/// The bench scorer's layout: two contexts of one length run once as a
/// batch into a cache, the cache copied to each context's continuations
/// (`select_rows`), and continuations of different lengths run as one
/// right-padded batch after it. Every real position's logits equal the full
/// forward of its own context + continuation (padding and the other rows
/// change nothing).
#[test]
fn a_shared_prefix_cache_with_right_padded_rows_gives_each_rows_full_logits() {
    for (name, cfg) in layouts() {
        let (_vs, m) = model(&cfg, 13);
        let contexts = [random_ids(6, 7), random_ids(6, 8)];
        // (context, continuation length): 3 rows of the first, 2 of the second.
        let rows = [(0usize, 4usize), (0, 1), (0, 3), (1, 2), (1, 4)];
        let conts: Vec<Vec<u32>> = (0..rows.len()).map(|r| random_ids(rows[r].1, 20 + r as u64)).collect();
        let width = 4;
        let mut cache = KvCache::new(&m);
        let prefix = Tensor::cat(&[tensor(&contexts[0]), tensor(&contexts[1])], 0);
        let _ = tch::no_grad(|| m.hidden(&prefix, Some(&mut cache)));
        let copies: Vec<i64> = rows.iter().map(|r| r.0 as i64).collect();
        let mut cache = cache.select_rows(&Tensor::from_slice(&copies));
        assert_eq!(cache.len(), 6);
        // Padding with token 255, not 0: a wrong mask would let it show.
        let padded: Vec<Tensor> = conts
            .iter()
            .map(|c| tensor(&c.iter().copied().chain(std::iter::repeat(255)).take(width).collect::<Vec<_>>()))
            .collect();
        let batch = tch::no_grad(|| m.head(&m.hidden(&Tensor::cat(&padded, 0), Some(&mut cache))));
        for (r, (ctx, len)) in rows.iter().enumerate() {
            let whole: Vec<u32> = contexts[*ctx].iter().chain(&conts[r]).copied().collect();
            let full = tch::no_grad(|| m.forward(&tensor(&whole))).narrow(1, 6, *len as i64);
            let d = max_diff(&batch.narrow(0, r as i64, 1).narrow(1, 0, *len as i64), &full);
            assert!(d < 1e-5, "{name} row {r}: shared-cache logits differ from the full forward's by {d:e}");
        }
    }
}

/// The cached path's maps are the rows of the full path's maps for the new
/// positions, over all positions so far.
#[test]
fn cached_attention_maps_are_rows_of_the_full_maps() {
    for (name, cfg) in layouts() {
        let (_vs, m) = model(&cfg, 12);
        let ids = random_ids(9, 6);
        let (_, full) = tch::no_grad(|| m.forward_path(&tensor(&ids), AttnPath::Materialised));
        let mut cache = KvCache::new(&m);
        let _ = tch::no_grad(|| m.forward_cached(&tensor(&ids[..6]), AttnPath::Materialised, Some(&mut cache)));
        let (_, maps) = tch::no_grad(|| m.forward_cached(&tensor(&ids[6..]), AttnPath::Materialised, Some(&mut cache)));
        assert_eq!(maps.len(), full.len());
        for (c, f) in maps.iter().zip(&full) {
            assert_eq!(c.effective.size()[2..], [3, 9], "{name}");
            let d = max_diff(&c.effective, &f.effective.narrow(2, 6, 3));
            assert!(d < 1e-5, "{name}: effective maps differ by {d:e}");
        }
    }
}

fn run(m: &Model, prompt: &[u32], n: usize, context: usize, s: &Sampling, cache: bool) -> Generated {
    tch::set_num_threads(1);
    generate(m, prompt, n, context, 256, s, cache, CPU, |_| true)
}

#[test]
fn kv_cache_decoding_picks_the_tokens_of_recomputing_the_window() {
    let greedy = Sampling { temperature: 0.0, top_k: None, seed: 0 };
    let sampled = Sampling { temperature: 1.0, top_k: Some(50), seed: 9 };
    for (name, cfg) in layouts() {
        let (_vs, m) = model(&cfg, 13);
        let prompt = random_ids(5, 7);
        // Context 16 with 40 new tokens: the window restarts (at the last 8
        // tokens) at lengths 17, 26, 35 and 44, which both ways must do alike.
        for (what, s) in [("greedy", &greedy), ("sampled", &sampled)] {
            let with = run(&m, &prompt, 40, 16, s, true);
            let without = run(&m, &prompt, 40, 16, s, false);
            assert_eq!(with.tokens, without.tokens, "{name} {what}");
            assert_eq!((with.restarts, without.restarts), (4, 4), "{name} {what}");
            assert_eq!(with.tokens.len(), 40);
            // Not a constant: the model's choices depend on what came before.
            let distinct: std::collections::BTreeSet<_> = with.tokens.iter().collect();
            assert!(distinct.len() > 3, "{name} {what}: {:?}", with.tokens);
        }
        let other = run(&m, &prompt, 40, 16, &Sampling { seed: 10, ..sampled }, true);
        assert_ne!(other.tokens, run(&m, &prompt, 40, 16, &sampled, true).tokens, "{name}: seeds 9 and 10");
    }
}

#[test]
fn greedy_is_the_argmax_of_the_full_forward_at_each_step() {
    for (name, cfg) in layouts() {
        let (_vs, m) = model(&cfg, 14);
        let prompt = random_ids(4, 8);
        let greedy = Sampling { temperature: 0.0, top_k: None, seed: 0 };
        let out = run(&m, &prompt, 12, 64, &greedy, true);
        let mut seq = prompt.clone();
        for &t in &out.tokens {
            let logits = tch::no_grad(|| m.forward(&tensor(&seq))).select(1, -1).view([-1]);
            assert_eq!(t as i64, logits.argmax(0, false).int64_value(&[]), "{name} after {seq:?}");
            seq.push(t);
        }
        // Top-k 1 leaves only the argmax to draw, at any temperature.
        let top1 = run(&m, &prompt, 12, 64, &Sampling { temperature: 1.5, top_k: Some(1), seed: 4 }, true);
        assert_eq!(top1.tokens, out.tokens, "{name}");
    }
}

#[test]
fn pick_draws_by_the_seeded_generator() {
    let logits: Vec<f32> = (0..256).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let s = Sampling { temperature: 1.0, top_k: None, seed: 1 };
    let draws = |seed| {
        let mut rng = Rng::new(seed);
        (0..64).map(|_| pick(&logits, &s, &mut rng)).collect::<Vec<_>>()
    };
    assert_eq!(draws(1), draws(1));
    assert_ne!(draws(1), draws(2));
}

// ------------------------------------------------------------ the CLI

/// A tiny byte-level GDA run trained once for all tests of this file.
fn trained() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let spec = write_spec(tmp.path(), "tiny", TINY);
        let run = tmp.path().join("run");
        let out = gda()
            .args(["train", "--spec"])
            .arg(&spec)
            .args(["--set", "train.steps=40", "--out"])
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        (tmp, run)
    })
    .1
}

/// `gda sample RUN ARGS...`: (exit code, stdout bytes, stderr).
fn sample(run: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = gda().arg("sample").arg(run).args(args).args(["--threads", "1"]).output().unwrap();
    let err = stderr_of(&out);
    (out.status.code(), out.stdout, err)
}

#[test]
fn sample_continues_the_prompt_the_same_way_with_and_without_the_cache() {
    let run = trained();
    for opts in [&["--temperature", "0"][..], &["--temperature", "0.9", "--top-k", "40", "--seed", "5"]] {
        let mut args = vec!["--prompt", "ROMEO:", "--max-new-tokens", "60"];
        args.extend(opts);
        let (code, with, err) = sample(run, &args);
        assert_eq!(code, Some(0), "{err}");
        assert!(with.starts_with(b"ROMEO:") && with.len() > 6 + 30, "{}", String::from_utf8_lossy(&with));
        assert!(err.contains("60 tokens in") && err.contains("tokens/s, KV cache"), "{err}");
        // 6 + 60 tokens in a context of 32: the window restarted.
        assert!(err.contains("window restarted"), "{err}");
        args.push("--no-cache");
        let (code, without, err) = sample(run, &args);
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("tokens/s, no cache"), "{err}");
        assert_eq!(String::from_utf8_lossy(&with), String::from_utf8_lossy(&without), "{opts:?}");
    }
}

#[test]
fn the_seed_fixes_the_text() {
    let run = trained();
    let text = |seed: &str| {
        let (code, out, err) = sample(run, &["--prompt", "KING", "--temperature", "1", "--seed", seed]);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    assert_eq!(text("1"), text("1"));
    assert_ne!(text("1"), text("2"));
    // Greedy ignores the seed; top-k 1 is greedy.
    let greedy = |extra: &[&str]| {
        let mut args = vec!["--prompt", "KING", "--max-new-tokens", "40"];
        args.extend(extra);
        sample(run, &args).1
    };
    let g = greedy(&["--temperature", "0", "--seed", "1"]);
    assert_eq!(g, greedy(&["--temperature", "0", "--seed", "2"]));
    assert_eq!(g, greedy(&["--temperature", "0.5", "--top-k", "1", "--seed", "3"]));
}

/// `--stop TEXT` ends the text at the first occurrence of TEXT in what is
/// generated: the output is the greedy text without a stop, cut just past
/// that occurrence, and fewer tokens are generated.
#[test]
fn a_stop_string_ends_the_text_at_its_first_occurrence() {
    let run = trained();
    let base = ["--prompt", "ROMEO:", "--max-new-tokens", "60", "--temperature", "0"];
    let (code, full, err) = sample(run, &base);
    assert_eq!(code, Some(0), "{err}");
    let new = &full[b"ROMEO:".len()..full.len() - 1];
    // Two bytes from the middle of the continuation: they may occur earlier too.
    let stop = String::from_utf8(new[20..22].to_vec()).expect("a byte-level model trained on ASCII text");
    let first = new.windows(2).position(|w| w == stop.as_bytes()).unwrap() + 2;
    let mut args = base.to_vec();
    args.extend(["--stop", &stop]);
    let (code, cut, err) = sample(run, &args);
    assert_eq!(code, Some(0), "{err}");
    let mut want = b"ROMEO:".to_vec();
    want.extend(&new[..first]);
    want.push(b'\n');
    assert_eq!(String::from_utf8_lossy(&cut), String::from_utf8_lossy(&want), "stop {stop:?}");
    assert!(err.contains(&format!("sample: {first} tokens in")) && err.contains("ended at --stop"), "{err}");
    // A stop string the text never holds changes nothing.
    let mut args = base.to_vec();
    args.extend(["--stop", "\u{7}never"]);
    let (code, same, err) = sample(run, &args);
    assert_eq!((code, same), (Some(0), full), "{err}");
    assert!(!err.contains("ended at --stop"), "{err}");
}

#[test]
fn bad_input_is_refused_with_exit_code_2() {
    let run = trained();
    let long = "x".repeat(40);
    let not_run = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--prompt", ""], "--prompt is empty"),
        (vec!["--prompt", &long], "--prompt is 40 tokens, longer than the context"),
        (vec!["--prompt", "a", "--temperature", "-1"], "--temperature -1: allowed: 0 (greedy) or a positive number"),
        (vec!["--prompt", "a", "--top-k", "0"], "--top-k 0 would leave no token to draw"),
        (vec!["--prompt", "a", "--device", "tpu"], "device tpu"),
        (vec!["--prompt", "a", "--stop", ""], "--stop is empty"),
    ];
    for (args, msg) in cases {
        let (code, out, err) = sample(run, &args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
    }
    let (code, _, err) = sample(not_run.path(), &["--prompt", "a"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a gda run or checkpoint") && err.contains(&not_run.path().display().to_string()));
    assert!(err.contains("error:"), "{err}");
}

/// transformers' greedy generate() on the `gda export --format hf` folder of
/// the run, with and without its KV cache: the ids after the prompt.
const HF_GREEDY: &str = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, dtype=torch.float32).eval()
prompt = torch.tensor([list(sys.argv[2].encode())])
for cache in (True, False):
    with torch.no_grad():
        ids = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=int(sys.argv[3]),
                             do_sample=False, pad_token_id=0, use_cache=cache)
    print(json.dumps(ids[0, prompt.shape[1]:].tolist()))
"#;

/// `gda sample --temperature 0` writes what greedy generate() of the exported
/// model writes in transformers (byte-level run: the ids are the bytes),
/// within the context (past it, generate() extrapolates RoPE where gda
/// restarts the window).
#[test]
fn greedy_sample_equals_transformers_generate_of_the_export() {
    let run = trained();
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    let out = gda().arg("export").arg(run).args(["--format", "hf", "--out"]).arg(&hf).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // 6 + 26 = 32 tokens: the whole context, no restart.
    let (code, text, err) = sample(run, &["--prompt", "ROMEO:", "--temperature", "0", "--max-new-tokens", "26"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("restarted"), "{err}");
    let ours: Vec<u64> = text[6..text.len() - 1].iter().map(|&b| b as u64).collect();
    assert_eq!(ours.len(), 26);
    // Not a constant continuation, which a wrong model could match too.
    let distinct: std::collections::BTreeSet<_> = ours.iter().collect();
    assert!(distinct.len() >= 3, "{:?}", String::from_utf8_lossy(&text));
    let out = hf_offline().args(["-c", HF_GREEDY]).arg(&hf).args(["ROMEO:", "26"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let lines: Vec<Vec<u64>> = stdout_of(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", stdout_of(&out));
    assert_eq!(lines[0], ours, "transformers generate() with its cache against gda sample");
    assert_eq!(lines[1], ours, "transformers generate() without a cache against gda sample");
}

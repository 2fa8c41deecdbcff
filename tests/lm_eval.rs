//! `gda eval --suite bench` against EleutherAI's lm-evaluation-harness,
//! item by item: small trained models are exported (`gda export --format
//! hf`) and scored by `lm_eval` through scripts/lm-eval.sh (task YAMLs that
//! include lm-eval's own configs, only the dataset pointed at the fixtures),
//! offline, in the venv scripts/hf-venv.sh makes. Per item: the same
//! request strings, per-choice log-likelihoods within 1e-4, the same chosen
//! answer (except where two choices' scores lie within 1e-4 of each other:
//! counted and printed); per task: the same acc and acc_norm, lambada's
//! perplexity to 1e-4 relative.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{gda, repo, stderr_of, stdout_of, write_spec, TINY};
use gda::data::bench::{parse_tasks, read_task, Format};
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/bench")
}

/// Trains TINY at `context` (chosen so that some fixture items are
/// truncated and some are not) with its `noise_heads = 2` line replaced by
/// `model` and `[data]` keys `data`.
fn train(dir: &Path, name: &str, context: usize, model: &str, data: &str) -> PathBuf {
    let text = TINY
        .replace("context = 32", &format!("context = {context}"))
        .replace("steps = 60", "steps = 20")
        .replace("noise_heads = 2", model)
        .replace("[train]", &format!("[data]\n{data}\n[train]"));
    let spec = write_spec(dir, name, &text);
    let run = dir.join(name);
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    run
}

fn f(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap(),
    }
}

/// The first index of the largest value (np.argmax).
fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Two values within TOL of each other: lm-eval and gda may order them
/// differently.
fn near_tie(v: &[f64]) -> bool {
    (0..v.len()).any(|i| (i + 1..v.len()).any(|j| (v[i] - v[j]).abs() <= TOL))
}

/// The one file under `out` (lm-eval adds a folder named after the model)
/// whose name is `<prefix><date><suffix>`.
fn lm_file(out: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let mut found = Vec::new();
    for d in std::fs::read_dir(out).unwrap().flatten().filter(|d| d.path().is_dir()) {
        for e in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let date = name.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix));
            if date.is_some_and(|d| d.starts_with(|c: char| c.is_ascii_digit())) {
                found.push(e.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "{prefix}*{suffix} under {}: {found:?}", out.display());
    found.pop().unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn cross_check(arch: &str, context: usize, model: &str, data: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), arch, context, model, data);
    let ours = tmp.path().join("gda");
    let out = gda()
        .arg("eval")
        .arg(&run)
        .args(["--suite", "bench", "--threads", "1", "--tasks"])
        .arg(fixtures())
        .arg("--out")
        .arg(&ours)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let lm = tmp.path().join("lm-eval");
    let out = std::process::Command::new(repo().join("scripts/lm-eval.sh"))
        .arg(&run)
        .arg(fixtures())
        .env("GDA_BIN", env!("CARGO_BIN_EXE_gda"))
        .env("GDA_LM_EVAL_OUT", &lm)
        .env("GDA_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "lm-eval.sh failed:\n{}\n{}", stdout_of(&out), stderr_of(&out));

    let items = jsonl(&ours.join("bench_items.jsonl"));
    let (header, rows) = gda::report::table::read(&ours.join("bench.csv")).unwrap();
    let rows: Vec<BTreeMap<String, String>> =
        rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect();
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(lm_file(&lm, "results_", ".json")).unwrap()).unwrap();
    let (mut ties, mut compared, mut worst, mut truncated) = (0, 0, 0.0f64, 0);
    for task in parse_tasks(&[fixtures().display().to_string()]).unwrap() {
        let docs = read_task(&task, None).unwrap();
        let samples = jsonl(&lm_file(&lm, &format!("samples_gda_{}_", task.name), ".jsonl"));
        assert_eq!(samples.len(), docs.len(), "{arch} {}", task.name);
        let mut task_ties = 0;
        for s in &samples {
            let doc = s["doc_id"].as_u64().unwrap() as usize;
            let item = &docs[doc];
            let mine = items.iter().find(|i| i["task"] == task.name.as_str() && i["doc"] == doc).unwrap();
            let what = format!("{arch} {} line {}", task.name, item.line);
            // The same requests, character for character.
            for (k, r) in item.requests.iter().enumerate() {
                let a = &s["arguments"][format!("gen_args_{k}")];
                assert_eq!(
                    (a["arg_0"].as_str().unwrap(), a["arg_1"].as_str().unwrap()),
                    (r.context.as_str(), r.continuation.as_str()),
                    "{what}"
                );
            }
            let resps = s["filtered_resps"].as_array().unwrap();
            assert_eq!(resps.len(), item.requests.len(), "{what}");
            let theirs: Vec<f64> = resps.iter().map(|r| f(&r[0])).collect();
            let ours: Vec<f64> = mine["lls"].as_array().unwrap().iter().map(f).collect();
            for (a, b) in ours.iter().zip(&theirs) {
                worst = worst.max((a - b).abs());
                assert!((a - b).abs() <= TOL, "{what}: gda {a} vs lm-eval {b}");
                compared += 1;
            }
            truncated += usize::from(mine["truncated"].as_bool().unwrap());
            if task.format == Format::Lambada {
                let greedy = resps[0][1].as_str().map(|g| g == "True").or(resps[0][1].as_bool()).unwrap();
                assert_eq!(mine["greedy"][0].as_bool().unwrap(), greedy, "{what}");
                continue;
            }
            let norm: Vec<f64> = theirs.iter().zip(&item.choice_chars).map(|(l, &c)| l / c as f64).collect();
            if near_tie(&theirs) || (task.format.has_acc_norm() && near_tie(&norm)) {
                task_ties += 1;
                continue;
            }
            assert_eq!(mine["pred"].as_u64().unwrap() as usize, argmax(&theirs), "{what}");
            assert_eq!(f(&s["acc"]), f64::from(argmax(&theirs) == item.gold), "{what}");
            if task.format.has_acc_norm() {
                assert_eq!(mine["pred_norm"].as_u64().unwrap() as usize, argmax(&norm), "{what}");
                assert_eq!(f(&s["acc_norm"]), f64::from(argmax(&norm) == item.gold), "{what}");
            }
        }
        ties += task_ties;
        let theirs = &results["results"][format!("gda_{}", task.name)];
        let row = rows.iter().find(|r| r["task"] == task.name).unwrap();
        let got = |k: &str| row[k].parse::<f64>().unwrap();
        if task.format == Format::Lambada {
            let ppl = f(&theirs["perplexity,none"]);
            assert!((got("ppl") - ppl).abs() <= TOL * ppl, "{arch} lambada ppl {} vs {ppl}", row["ppl"]);
        }
        if task_ties == 0 {
            assert_eq!(got("acc"), f(&theirs["acc,none"]), "{arch} {} acc", task.name);
            if task.format.has_acc_norm() {
                assert_eq!(got("acc_norm"), f(&theirs["acc_norm,none"]), "{arch} {} acc_norm", task.name);
            }
        }
    }
    eprintln!(
        "{arch}: {compared} log-likelihoods within {TOL} of lm-eval's (largest difference {worst:.2e}); {truncated} items truncated; {ties} items with two choices within {TOL} (answer not compared)"
    );
    assert!(compared >= 52 && truncated > 0, "{compared} {truncated}");
}

#[test]
fn gda_4_to_1_bytes_scores_as_lm_eval() {
    cross_check("gda-4to1", 128, "noise_heads = 1", "tokenizer = \"bytes\"");
}

#[test]
fn diff_1_to_1_scores_as_lm_eval() {
    cross_check("diff-1to1", 128, "noise_heads = 4", "tokenizer = \"bytes\"");
}

/// GPT-2 BPE: merges across the context/continuation boundary make the
/// pair tokenization rule matter.
#[test]
fn standard_gqa_gpt2_scores_as_lm_eval() {
    cross_check(
        "standard-gqa-gpt2",
        32,
        "noise_heads = 2\nattention = \"standard\"\nheads = 4\nkv_heads = 2",
        "tokenizer = \"gpt2\"",
    );
}

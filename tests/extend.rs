//! Extending a run: `gda train --resume --set train.steps=N` continues a
//! finished run with the learning-rate schedule docs/spec.md describes
//! ("Extending a run"); a resume that would change steps already computed
//! is refused, leaving the run directory as it was. Real binary, real corpus.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// TINY at `steps` with evaluations and metrics rows every `every` steps.
fn spec_text(steps: usize, every: usize) -> String {
    TINY.replace("steps = 60", &format!("steps = {steps}"))
        .replace("eval_every = 20", &format!("eval_every = {every}"))
        .replace("log_every = 10", &format!("log_every = {every}"))
}

fn train(spec: &Path, run: &Path) {
    let out = gda().args(["train", "--spec"]).arg(spec).arg("--out").arg(run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn extend(run: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = gda();
    cmd.args(["train", "--resume", "--out"]).arg(run);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.output().unwrap()
}

/// Every file of a run directory and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The schedule docs/spec.md states, written out independently of
/// src/train/optim.rs: linear warmup over `w` steps to `lr`, then cosine to
/// `min` at step `total`; the update that completes step s uses step s − 1's rate.
fn documented_lr(s: usize, total: usize) -> f64 {
    let (lr, min, w) = (1e-2, 1e-3, 5.0);
    let t = (s - 1) as f64;
    if t < w {
        return lr * (t + 1.0) / w;
    }
    let progress = ((t - w) / (total as f64 - w)).min(1.0);
    min + 0.5 * (lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[test]
fn extending_a_finished_run_continues_its_metrics_on_the_new_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &spec_text(20, 10));
    let run = tmp.path().join("run");
    train(&spec, &run);
    let before = deterministic_rows(&run);

    let out = extend(&run, &["train.steps=40"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    assert!(stdout.contains("steps 20 → 40"), "the header says where the run continues: {stdout}");

    // Rows 0..=20 are the finished run's, untouched; 30 and 40 follow, once each.
    let steps: Vec<usize> = column(&run, "val_loss").iter().map(|r| r.0).collect();
    assert_eq!(steps, [0, 10, 20, 30, 40]);
    let after = deterministic_rows(&run);
    assert_eq!(after[..before.len()], before[..]);
    let tokens: Vec<f64> = column(&run, "tokens").iter().map(|r| r.1).collect();
    assert_eq!(tokens, [0.0, 2560.0, 5120.0, 7680.0, 10240.0]);

    // The steps taken kept the 20-step schedule; the new ones follow the
    // schedule recomputed for 40 steps, so the rate jumps back up at the old end.
    for (s, lr) in column(&run, "lr").into_iter().filter(|r| r.0 > 0) {
        let total = if s <= 20 { 20 } else { 40 };
        let want = documented_lr(s, total);
        assert!((lr - want).abs() < 1e-12, "step {s}: lr {lr}, documented {want}");
    }
    assert!(documented_lr(21, 40) > 2.0 * documented_lr(20, 20));

    // The run directory describes the extended run.
    let saved = gda::config::Spec::load(Some(&run.join("spec.toml")), &[]).unwrap();
    assert_eq!(saved.train.steps, 40);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["spec_hash"].as_str().unwrap(), saved.hash());
    assert_eq!(manifest["extensions"][0]["step"], 20);
    assert_eq!(manifest["extensions"][0]["changed"][0], "train.steps: 20 → 40");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 40);
    assert_eq!(summary["val_loss"].as_f64().unwrap(), column(&run, "val_loss")[4].1);
    assert!(latest_checkpoint(&run).ends_with("step-00000040"));

    // Resuming the extended run again with its own spec changes nothing.
    let rows = deterministic_rows(&run);
    let again = extend(&run, &[]);
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert_eq!(deterministic_rows(&run), rows);
}

/// Where the schedules of the old and the new length agree on every step
/// taken (the run had taken at most train.warmup_steps + 1 steps), the
/// extended run is the run trained to N from the start, bit for bit; one
/// step past that it is not.
#[test]
fn an_extension_within_the_warmup_is_bit_equal_to_training_to_n_from_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = |run: &Path| std::fs::read(latest_checkpoint(run).join("model.safetensors")).unwrap();

    let full = tmp.path().join("full");
    train(&write_spec(tmp.path(), "tiny", &spec_text(30, 5)), &full);

    let mut runs = Vec::new();
    for first in [5, 10] {
        let run = tmp.path().join(format!("from-{first}"));
        train(&write_spec(tmp.path(), "tiny", &spec_text(first, 5)), &run);
        let out = extend(&run, &["train.steps=30"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        runs.push(run);
    }
    // warmup_steps = 5: steps 1..=6 use the same rate for any length.
    assert_eq!(deterministic_rows(&runs[0]), deterministic_rows(&full));
    assert_eq!(weights(&runs[0]), weights(&full));
    // Extended after 10 steps: steps 7..=10 decayed towards step 10.
    assert_ne!(deterministic_rows(&runs[1]), deterministic_rows(&full));
    assert_ne!(weights(&runs[1]), weights(&full));
}

#[test]
fn a_resume_that_changes_computed_steps_is_refused_naming_each_key() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train(&write_spec(tmp.path(), "tiny", &spec_text(20, 10)), &run);
    let before = snapshot(&run);

    let out = extend(&run, &["train.steps=40", "model.d_model=64", "train.lr=0.02", "train.eval_every=5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("model.d_model: 32 → 64"), "{err}");
    assert!(err.contains("train.lr: 0.01 → 0.02"), "{err}");
    // Only the keys that cannot change are listed as the reason.
    let reason = err.split("); ").next().unwrap();
    assert!(!reason.contains("train.steps") && !reason.contains("train.eval_every"), "{err}");
    assert_eq!(snapshot(&run), before, "a refused resume writes nothing");

    // Fewer steps than the run has taken.
    let out = extend(&run, &["train.steps=10"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("train.steps") && err.contains("allowed: at least 20"), "{err}");
    assert_eq!(snapshot(&run), before, "a refused resume writes nothing");
}

/// A sweep point extended with `gda train` stays the sweep's (a rerun
/// skips it and summarises its extended result), and a sweep rerun with
/// more `train.steps` extends every point that has fewer, as `gda train
/// --resume` extends one run; fewer steps are refused.
#[test]
fn extended_sweep_points_stay_in_their_sweep_and_a_sweep_extends_like_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &spec_text(20, 10));
    let dir = tmp.path().join("sweep");
    let sweep = |sets: &[&str]| {
        let mut cmd = gda();
        cmd.args(["sweep", "--spec"]).arg(&spec).args(["--ratios", "1,2", "--out"]).arg(&dir);
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd.output().unwrap()
    };
    let point = |name: &str| dir.join("points").join(name);
    let steps_of = |name: &str| column(&point(name), "val_loss").iter().map(|r| r.0).collect::<Vec<_>>();
    let out = sweep(&[]);
    assert!(out.status.success(), "{}", stderr_of(&out));

    let out = extend(&point("g1-s7"), &["train.steps=40"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = sweep(&[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("2 of 2 points already finished"), "{}", stdout_of(&out));
    assert_eq!(steps_of("g1-s7"), [0, 10, 20, 30, 40]);
    assert_eq!(steps_of("g2-s7"), [0, 10, 20]);
    let (_, rows) = gda::report::table::read(&dir.join("summary.csv")).unwrap();
    let (header, _) = gda::report::table::read(&dir.join("summary.csv")).unwrap();
    let at = |c: &str| header.iter().position(|h| h == c).unwrap();
    let extended = point_json(&dir, "g1-s7", "summary.json");
    assert_eq!(rows[0][at("val_loss")].parse::<f64>().unwrap(), extended["val_loss"].as_f64().unwrap());

    let g2 = deterministic_rows(&point("g2-s7"));
    let out = sweep(&["train.steps=40"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("1 of 2 points already finished"), "{}", stdout_of(&out));
    assert_eq!(steps_of("g2-s7"), [0, 10, 20, 30, 40]);
    assert_eq!(deterministic_rows(&point("g2-s7"))[..g2.len()], g2[..], "the rows of the first 20 steps are kept");
    assert_eq!(point_json(&dir, "g2-s7", "summary.json")["steps"], 40);

    let before = snapshot(&dir);
    let out = sweep(&["train.steps=30"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("allowed: at least 40"), "{}", stderr_of(&out));
    let out = sweep(&["train.lr=0.02"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("train.lr: 0.01 → 0.02"), "{}", stderr_of(&out));
    assert_eq!(snapshot(&dir), before, "a refused sweep writes nothing");
}

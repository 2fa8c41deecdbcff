//! `gda train` end to end on the real default corpus: learning, the run
//! directory, exact resume after Ctrl-C and after kill -9, divergence.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn training_lowers_validation_loss_and_writes_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "tiny",
        &TINY.replace("steps = 60", "steps = 150").replace("eval_every = 20", "eval_every = 50"),
    );
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let val = column(&run, "val_loss");
    let steps: Vec<usize> = val.iter().map(|v| v.0).collect();
    assert_eq!(steps, vec![0, 50, 100, 150]);
    // An untrained byte model scores about ln 256 = 5.55 nats; Shakespeare's
    // letter statistics alone take a model well below 3.5 in 150 steps.
    assert!(val[0].1 > 5.0, "initial val loss {}", val[0].1);
    assert!(val[3].1 < 3.5, "final val loss {}", val[3].1);
    assert!(val.windows(2).all(|w| w[1].1 < w[0].1), "val loss should fall at every evaluation: {val:?}");

    // bits per byte of a byte-level model is loss / ln 2.
    let bpb = column(&run, "val_bpb");
    for ((_, l), (_, b)) in val.iter().zip(&bpb) {
        assert!((l / std::f64::consts::LN_2 - b).abs() < 1e-9);
    }

    // Every row has every column; rows are logged at multiples of log_every.
    let (header, rows) = metrics(&run);
    for col in [
        "step",
        "tokens",
        "train_loss",
        "val_loss",
        "val_bpb",
        "lr",
        "grad_norm",
        "lambda_mean",
        "lambda_0",
        "lambda_1",
        "tokens_per_s",
        "mfu",
        "elapsed_s",
    ] {
        assert!(header.iter().any(|h| h == col), "missing column {col}");
    }
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let mfu = column(&run, "mfu");
    assert_eq!(mfu.len(), 15, "every row after step 0 has an MFU");
    assert!(mfu.iter().all(|m| m.1 > 0.0));
    let tokens = column(&run, "tokens");
    assert_eq!(tokens.last().unwrap().1 as usize, 150 * 8 * 32);

    // The resolved spec fills every default and reloads to the same experiment.
    let saved = std::fs::read_to_string(run.join("spec.toml")).unwrap();
    assert!(saved.contains("kv_heads = 2") && saved.contains("mlp_hidden = 96") && saved.contains("lambda_init = ["));
    let reloaded = gda::config::Spec::load(Some(&run.join("spec.toml")), &[]).unwrap();
    let original = gda::config::Spec::load(Some(&spec), &[]).unwrap();
    assert_eq!(reloaded.hash(), original.hash());

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["device"], "cpu");
    assert_eq!(manifest["threads"], 1);
    assert_eq!(manifest["seed"], 7);
    // The libtorch found at build time (2.13 by default, 2.11 under scripts/build.sh --torch 2.11).
    let built = gda::device::torch::LIBTORCH_VERSION;
    assert!(["2.11.", "2.12.", "2.13."].iter().any(|v| built.starts_with(v)), "{built}");
    assert_eq!(manifest["libtorch_version"], built);
    assert_eq!(manifest["parameters"].as_u64().unwrap() as usize, gda::model::param_count(&original.model));
    assert_eq!(manifest["val_sources"].as_array().unwrap().len(), 4, "4 of the 42 works are held out");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["val_loss"].as_f64().unwrap(), val[3].1);
    // No device-to-host read on a step without a metrics row, evaluation or checkpoint.
    assert_eq!(summary["unlogged_host_reads"], 0);
    let ckpt = latest_checkpoint(&run);
    assert!(ckpt.ends_with("step-00000150"));
    for f in ["model.safetensors", "optim.safetensors", "state.json"] {
        assert!(ckpt.join(f).is_file(), "{f}");
    }
    // Plain log lines (stdout is not a terminal here), one per metrics row plus the summary.
    let stdout = stdout_of(&out);
    assert!(stdout.contains("step 150 | train"), "{stdout}");
    assert!(stdout.lines().last().unwrap().starts_with("done: tiny"));
}

#[test]
fn checkpoint_tensor_names_match_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 10"));
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ckpt = latest_checkpoint(&run);
    let mut names: Vec<String> =
        tch::Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    let cfg = gda::config::Spec::load(Some(&spec), &[]).unwrap().model;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = gda::model::Model::new(&cfg, vs.root());
    let mut expected: Vec<String> = vs.variables().into_keys().collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(names.contains(&"blocks.1.attn.q2.weight".to_string()));
    let opt: Vec<String> =
        tch::Tensor::read_safetensors(ckpt.join("optim.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(opt.len(), 2 * names.len());
}

fn spawn_train(spec: &Path, run: &Path, resume: bool) -> Child {
    let mut cmd = gda();
    cmd.args(["train", "--spec"]).arg(spec).arg("--out").arg(run);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Trains the same experiment uninterrupted and interrupted by `signal`, then
/// resumed; both must end with identical weights, optimizer state and rows.
fn check_resume_equivalence(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY
        .replace("steps = 60", "steps = 400")
        .replace("eval_every = 20", "eval_every = 100")
        .replace("[train]", "[train]\ncheckpoint_every = 25");
    let spec = write_spec(tmp.path(), "tiny", &text);

    let whole = tmp.path().join("whole");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&whole).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let cut = tmp.path().join("cut");
    let child = spawn_train(&spec, &cut, false);
    // Interrupt mid-run: after a checkpoint, at some step that is not one.
    wait_for(Duration::from_secs(60), || last_logged_step(&cut) >= 130);
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stopped_at = gda::train::checkpoint::read_state(&latest_checkpoint(&cut)).unwrap().step;
    assert!(stopped_at < 400, "the run finished before it could be interrupted");
    if signal == "-INT" {
        assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("interrupted at step") && err.contains("--resume"), "{err}");
    } else {
        assert_eq!(stopped_at % 25, 0, "after kill -9 only periodic checkpoints exist");
        // kill -9 in the middle of a row's write leaves a torn last line:
        // make one whose cut-off step (1 of 1xx) the resume would keep if it
        // took the line for a row. Readers drop it too.
        let path = cut.join("metrics.csv");
        let complete = metrics(&cut).1;
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push('1');
        std::fs::write(&path, text).unwrap();
        assert_eq!(metrics(&cut).1, complete);
    }

    let resumed = spawn_train(&spec, &cut, true).wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));

    let a = latest_checkpoint(&whole);
    let b = latest_checkpoint(&cut);
    for f in ["model.safetensors", "optim.safetensors"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs after resume");
    }
    assert_eq!(gda::train::checkpoint::read_state(&a).unwrap().step, 400);
    let (ra, rb) = (deterministic_rows(&whole), deterministic_rows(&cut));
    assert_eq!(ra.len(), 41);
    assert_eq!(ra, rb);
}

#[test]
fn resume_after_ctrl_c_matches_an_uninterrupted_run() {
    check_resume_equivalence("-INT");
}

#[test]
fn resume_after_kill_9_matches_an_uninterrupted_run() {
    check_resume_equivalence("-KILL");
}

#[test]
fn a_diverging_run_stops_with_step_and_reason_and_keeps_its_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // Decoupled weight decay with lr·wd far above 1 multiplies every matrix by
    // a large negative factor each step: activations overflow within a few steps.
    let text = TINY.replace("[train]", "[train]\ncheckpoint_every = 1\nweight_decay = 1e4");
    let spec = write_spec(tmp.path(), "div", &text);
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    let step: usize = err.split("diverged at step ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    assert!(err.contains("is NaN") || err.contains("is inf") || err.contains("non-finite"), "{err}");
    assert!(step > 1 && step < 60, "{err}");

    let ckpt = latest_checkpoint(&run);
    assert!(err.contains(&ckpt.display().to_string()), "{err}");
    assert_eq!(gda::train::checkpoint::read_state(&ckpt).unwrap().step, step - 1);
    for (name, t) in tch::Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap() {
        assert!(t.isfinite().all().int64_value(&[]) == 1, "{name} is not finite in the kept checkpoint");
    }
}

#[test]
fn resuming_a_finished_run_changes_nothing_and_a_second_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 20"));
    let run = tmp.path().join("run");
    let first = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(first.status.success());
    let rows = deterministic_rows(&run);
    let weights = std::fs::read(latest_checkpoint(&run).join("model.safetensors")).unwrap();

    let again = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_of(&again).contains("already holds a run"), "{}", stderr_of(&again));

    // --resume without --spec takes the run directory's own spec.
    let resumed = gda().args(["train", "--resume", "--out"]).arg(&run).output().unwrap();
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    assert_eq!(deterministic_rows(&run), rows);
    assert_eq!(std::fs::read(latest_checkpoint(&run).join("model.safetensors")).unwrap(), weights);

    let other = gda()
        .args(["train", "--spec"])
        .arg(&spec)
        .args(["--set", "seed=8", "--resume", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr_of(&other).contains("different experiment"), "{}", stderr_of(&other));
}

#[test]
fn gpt2_tokenizer_reports_bits_per_byte_from_token_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY.replace("steps = 60", "steps = 10").replace("[train]", "[data]\ntokenizer = \"gpt2\"\n[train]");
    let spec = write_spec(tmp.path(), "bpe", &text);
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let loss = column(&run, "val_loss");
    let bpb = column(&run, "val_bpb");
    // Untrained: about ln(50257) nats per token; GPT-2 tokens of English
    // text average 3-5 bytes, so bpb = loss / ln 2 / bytes-per-token.
    assert!((loss[0].1 - (50257f64).ln()).abs() < 0.5, "{loss:?}");
    let bytes_per_token = loss[0].1 / std::f64::consts::LN_2 / bpb[0].1;
    assert!((2.5..6.0).contains(&bytes_per_token), "{bytes_per_token}");
    let saved = std::fs::read_to_string(run.join("spec.toml")).unwrap();
    assert!(saved.contains("vocab_size = 50257"));
}

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
    let closing: Vec<&str> = stdout.lines().rev().take(2).collect();
    assert!(closing[1].starts_with("done: tiny"), "{stdout}");
}

/// The start header shows what a run will use before step 0 (a silent CPU
/// fallback under device = "auto" included); the closing lines say where
/// the results are and what to run next; the loss curve is drawn.
#[test]
fn train_prints_a_header_and_closing_lines_and_draws_its_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let human_count = |n: f64| gda::report::units::human_count(n as usize);
    let si_flops = gda::report::units::si_flops;

    // Two header lines, then step 0.
    assert!(lines[2].starts_with("step 0 |"), "{stdout}");
    let cuda = tch::Cuda::is_available();
    let device = if cuda {
        "on cuda:0 (bf16; device \"auto\")"
    } else {
        "on cpu (fp32, 1 thread; device \"auto\" found no GPU)"
    };
    assert!(lines[0].starts_with(&format!("train tiny: steps 0 → 60 {device}")), "{}", lines[0]);
    let parameters = manifest["parameters"].as_f64().unwrap();
    assert!(lines[0].contains(&format!("| {} parameters |", human_count(parameters))), "{}", lines[0]);
    assert_eq!(human_count(parameters), format!("{:.1}K", parameters / 1e3));
    let per_token = manifest["train_flops_per_token"].as_f64().unwrap();
    assert!(lines[0].ends_with(&format!("| {}/token", si_flops(per_token))), "{}", lines[0]);
    let corpus = gda::data::corpus_path("shakespeare").unwrap();
    let data = format!(
        "data: {} train / {} val tokens, text {}",
        human_count(manifest["train_tokens"].as_f64().unwrap()),
        human_count(manifest["val_tokens"].as_f64().unwrap()),
        corpus.display()
    );
    assert!(lines[1].starts_with(&data), "{}\nexpected: {data}", lines[1]);
    let peak = manifest["peak_flops"].as_f64().unwrap();
    assert!(lines[1].contains(&format!("| MFU peak {}/s (", si_flops(peak))), "{}", lines[1]);

    // The closing lines name the run directory, its metrics, the plot and the next command.
    let dir = run.display();
    assert!(lines[lines.len() - 2].starts_with("done: tiny | 60 steps |"), "{stdout}");
    assert_eq!(
        lines[lines.len() - 1],
        format!("run dir {dir} | metrics {dir}/metrics.csv | loss curve {dir}/loss_curve.svg | next: gda eval {dir}")
    );

    // loss_curve.svg: the training loss is the first line in the first
    // colour, through one point per metrics row, placed by an affine map of
    // (tokens, loss), loss upwards.
    let svg = std::fs::read_to_string(run.join("loss_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not an SVG document");
    let line = svg
        .lines()
        .find(|l| l.starts_with("<polyline") && l.contains("stroke=\"#1F77B4\""))
        .expect("a training loss line");
    let points = &line[line.find(" points=\"").unwrap() + 9..];
    let markers: Vec<(f64, f64)> = points[..points.find('"').unwrap()]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect();
    let tokens: Vec<f64> = column(&run, "train_loss").iter().map(|r| r.0 as f64 * 8.0 * 32.0).collect();
    let losses: Vec<f64> = column(&run, "train_loss").iter().map(|r| r.1).collect();
    assert_eq!(markers.len(), losses.len(), "one point per train_loss row");
    // The map through the first and last marker (x) and the lowest and
    // highest loss (y) places every marker within a pixel's rounding.
    let last = markers.len() - 1;
    let sx = (markers[last].0 - markers[0].0) / (tokens[last] - tokens[0]);
    let by_loss = |a: &usize, b: &usize| losses[*a].total_cmp(&losses[*b]);
    let (lo, hi) = ((0..=last).min_by(by_loss).unwrap(), (0..=last).max_by(by_loss).unwrap());
    let sy = (markers[hi].1 - markers[lo].1) / (losses[hi] - losses[lo]);
    assert!(sx > 0.0 && sy < 0.0, "tokens rightwards, loss upwards: {sx} {sy}");
    for i in 0..=last {
        let x = markers[0].0 + sx * (tokens[i] - tokens[0]);
        let y = markers[lo].1 + sy * (losses[i] - losses[lo]);
        assert!(
            (markers[i].0 - x).abs() <= 1.0 && (markers[i].1 - y).abs() <= 1.0,
            "marker {i}: {:?} vs ({x}, {y})",
            markers[i]
        );
    }
}

/// MFU is reported against one peak per machine: on a CPU, the matmul peak
/// measured once and cached under GDA_CACHE (keyed by host, CPU model and
/// threads), so two runs divide by the same figure; GDA_PEAK_FLOPS overrides it.
#[test]
fn mfu_divides_by_one_cached_peak_per_machine() {
    let tmp = tempfile::tempdir().unwrap();
    // A cache of its own (the corpus linked in), so the first run measures.
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(gda::data::cache_dir().join("corpora"), cache.join("corpora")).unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 20"));
    let train = |name: &str, peak: Option<&str>| {
        let run = tmp.path().join(name);
        let mut cmd = gda();
        cmd.env("GDA_CACHE", &cache).env_remove("GDA_PEAK_FLOPS");
        if let Some(p) = peak {
            cmd.env("GDA_PEAK_FLOPS", p);
        }
        let out = cmd.args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
        (run, m)
    };
    let (run_a, a) = train("a", None);
    let (run_b, b) = train("b", None);

    let files: Vec<_> = std::fs::read_dir(cache.join("peaks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one cached peak: {files:?}");
    let cached: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(cached["host"], gda::util::host::hostname());
    assert_eq!(cached["cpu_model"], gda::util::host::cpu_model());
    assert_eq!(cached["threads"], 1);
    let peak = cached["peak_flops"].as_f64().unwrap();
    for m in [&a, &b] {
        assert_eq!(m["peak_flops"].as_f64().unwrap(), peak, "both runs use the cached peak");
        let source = m["peak_source"].as_str().unwrap();
        assert!(source.contains(&files[0].display().to_string()), "{source}");
        // The run's own measurement is kept beside it.
        assert!(m["matmul_peak_flops"].as_f64().unwrap() > 0.0);
    }
    // mfu = tokens_per_s × FLOPs per token / peak (tokens_per_s rounded, mfu to 4 decimals).
    let per_token = a["train_flops_per_token"].as_f64().unwrap();
    for run in [&run_a, &run_b] {
        let tps = column(run, "tokens_per_s");
        let mfu = column(run, "mfu");
        assert_eq!(mfu.len(), 2);
        for ((_, t), (_, m)) in tps.iter().zip(&mfu) {
            let want = t * per_token / peak;
            assert!((m - want).abs() <= 5e-5 + want * 1e-3, "mfu {m}, tokens/s × FLOPs / peak = {want}");
        }
    }

    let (run_c, c) = train("c", Some("1e12"));
    assert_eq!(c["peak_flops"].as_f64().unwrap(), 1e12);
    assert_eq!(c["peak_source"], "GDA_PEAK_FLOPS");
    for ((_, t), (_, m)) in column(&run_c, "tokens_per_s").iter().zip(&column(&run_c, "mfu")) {
        assert!((m - t * per_token / 1e12).abs() <= 5e-5, "{m}");
    }
}

/// The progress bar (drawn only on a terminal: script(1) gives gda one of
/// 80 columns) fits on one line, with a seven-digit step count.
#[test]
fn the_progress_bar_fits_in_80_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        "tiny",
        &TINY.replace("steps = 60", "steps = 1000000").replace("eval_every = 20", "eval_every = 1000000"),
    );
    let run = tmp.path().join("run");
    // Interrupted after 4 s: a checkpoint, exit 130.
    let cmd = format!(
        "stty cols 80 rows 24; timeout -s INT 4 '{}' train --spec '{}' --out '{}'",
        env!("CARGO_BIN_EXE_gda"),
        spec.display(),
        run.display()
    );
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script(1) runs");
    let text = stdout_of(&out);
    let frames: Vec<&str> =
        text.split(['\r', '\n']).flat_map(|l| l.split("\x1b[2K")).filter(|f| f.contains("/1000000")).collect();
    assert!(frames.iter().any(|f| f.contains("tok/s")), "no progress bar with a loss drawn: {text}");
    for f in &frames {
        // The bar is padded to the terminal's width; the interrupt's message
        // (stderr, like the bar) follows the last frame on the next row.
        let f = f.split("error: ").next().unwrap().trim_end();
        assert!(f.chars().count() <= 80, "{} columns: {f:?}", f.chars().count());
    }
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

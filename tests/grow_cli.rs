//! `gda grow` end to end: growth from a trained run keeps its function (the
//! grown run's first validation loss is the source's last), records its
//! parent, trains on; the comparison mode; bad input.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A finished tiny run to grow from.
fn source(tmp: &Path) -> PathBuf {
    let spec = write_spec(tmp, "src", TINY);
    let run = tmp.join("src");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    run
}

fn last_val(run: &Path) -> f64 {
    column(run, "val_loss").last().unwrap().1
}

#[test]
fn every_growth_keeps_the_function_and_continues_training() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    // (arguments, tag, (H_s, H_n, d_model, layers) of the grown model)
    type Case<'a> = (&'a [&'a str], &'a str, (usize, usize, usize, usize));
    let cases: [Case; 5] = [
        (&["--signal-only"], "sig", (8, 2, 32, 2)),
        (&["--signal-only", "--per-group", "1", "--clone-noise", "10"], "sig1", (6, 2, 32, 2)),
        (&["--uniform"], "uni", (8, 4, 32, 2)),
        (&["--width", "2"], "wide", (8, 4, 64, 2)),
        (&["--depth"], "deep", (4, 2, 32, 4)),
    ];
    for (flags, name, (hs, hn, c, layers)) in cases {
        let run = tmp.path().join(name);
        let out = gda()
            .args(["grow"])
            .arg(&src)
            .args(flags)
            .args(["--set", "train.steps=20", "--out"])
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flags:?}: {}", stderr_of(&out));
        let first = column(&run, "val_loss")[0];
        assert_eq!(first.0, 0);
        assert!(
            (first.1 - last_val(&src)).abs() < 1e-5,
            "{flags:?}: grown starts at {} vs source {}",
            first.1,
            last_val(&src)
        );
        let spec = gda::config::Spec::load(Some(&run.join("spec.toml")), &[]).unwrap();
        let m = &spec.model;
        assert_eq!((m.signal_heads, m.noise_heads, m.d_model, m.n_layers), (hs, hn, c, layers), "{flags:?}");
        assert!(spec.train.init.ends_with("init.safetensors"));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
        let parent = &manifest["parent"];
        assert_eq!(parent["step"], 60);
        assert!(parent["optimizer"].as_str().unwrap().starts_with("fresh"));
        assert!(parent["max_logit_difference"].as_f64().unwrap() <= 1e-4);
        assert_eq!(parent["run"].as_str().unwrap(), src.canonicalize().unwrap().to_str().unwrap());
        assert_eq!(column(&run, "val_loss").last().unwrap().0, 20);
        // A grown run is a normal run: resuming the finished one changes nothing.
        let again = gda().args(["train", "--resume", "--out"]).arg(&run).output().unwrap();
        assert!(again.status.success(), "{}", stderr_of(&again));
    }
    // λ_init travels with each layer under depth growth.
    let deep = gda::config::Spec::load(Some(&tmp.path().join("deep/spec.toml")), &[]).unwrap();
    let shallow = gda::config::Spec::load(Some(&src.join("spec.toml")), &[]).unwrap();
    let l = &shallow.model.lambda_init;
    assert_eq!(deep.model.lambda_init, vec![l[0], l[0], l[1], l[1]]);
}

#[test]
fn growth_from_a_checkpoint_directory_and_the_comparison_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let ckpt = latest_checkpoint(&src);
    let dir = tmp.path().join("cmp");
    let out = gda()
        .args(["grow", "--compare", "--scratch"])
        .arg(&ckpt)
        .args(["--set", "train.steps=20", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let line = |s: &str| {
        md.lines().find(|l| l.starts_with(&format!("| {s} |"))).unwrap_or_else(|| panic!("{s}: {md}")).to_string()
    };
    let cells = |s: &str| line(s).split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
    let (sig, uni, scratch) = (cells("signal-only"), cells("uniform"), cells("scratch"));
    // Columns: strategy, H_s, H_n, K/V, d_model, layers, params, added, attn, first, final, bpb, status.
    assert_eq!((sig[2].as_str(), sig[3].as_str()), ("8", "2"), "signal-only doubles G, noise heads untouched");
    assert_eq!(uni[2].parse::<usize>().unwrap() / uni[3].parse::<usize>().unwrap(), 2, "uniform keeps G = 2");
    let added = |c: &[String]| c[8].parse::<i64>().unwrap();
    // Added sizes from the layout (d_model 32, d 8, 2 layers, 4:2 heads):
    // signal-only adds 4 heads' Q1 rows and o columns per layer, 2·4·(8·32 +
    // 16·32) = 6144; one uniform group adds 2 signal heads, a noise head and
    // its K1, K2, V: 2·(2·8·32 + 3·8·32 + 16·32 + 2·16·32) = 5632, the closest
    // whole-group count to 6144 (two groups would add 11264).
    assert_eq!(added(&sig), 6144);
    assert_eq!(added(&uni), 5632);
    assert_eq!((uni[2].as_str(), uni[3].as_str()), ("6", "3"));
    let src_last = format!("{:.4}", last_val(&src));
    assert_eq!(sig[10], src_last);
    assert_eq!(uni[10], src_last);
    assert!(scratch[10].parse::<f64>().unwrap() > 5.0, "scratch starts untrained");
    assert_eq!(scratch[7], sig[7], "scratch trains the signal-only architecture");
    assert!(std::fs::read_to_string(dir.join("loss_curves.svg")).unwrap().contains("<polyline"));
    assert_eq!(std::fs::read_to_string(dir.join("summary.csv")).unwrap().lines().skip(1).count(), 3, "one row per run");
    assert!(stdout_of(&out).contains(&line("uniform")));

    // A failed point stays failed on a rerun (exit 4) until --retry-failed,
    // which trains it again to the same result.
    let scratch_dir = dir.join("points/scratch");
    assert!(
        scratch_dir.join("summary.json").exists(),
        "{:?}",
        std::fs::read_dir(dir.join("points")).unwrap().collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&scratch_dir).unwrap();
    std::fs::create_dir_all(&scratch_dir).unwrap();
    std::fs::write(scratch_dir.join("failed.txt"), "made to fail by the test\n").unwrap();
    let rerun = |extra: &[&str]| {
        gda()
            .args(["grow", "--compare", "--scratch"])
            .arg(&ckpt)
            .args(["--set", "train.steps=20", "--out"])
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = rerun(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("failed: made to fail by the test"), "{}", stdout_of(&out));
    let out = rerun(&["--retry-failed"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(cells("scratch"), {
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        md.lines()
            .find(|l| l.starts_with("| scratch |"))
            .unwrap()
            .split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    });
    // A finished point is a result, whatever a later attempt recorded.
    std::fs::write(dir.join("points/uniform/failed.txt"), "a later attempt failed\n").unwrap();
    let out = rerun(&[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("3 of 3 points already finished"), "{}", stdout_of(&out));
}

#[test]
fn bad_growth_input_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let refuse = |from: &Path, flags: &[&str], code: i32| -> String {
        let run = tmp.path().join("grown");
        let out = gda().args(["grow"]).arg(from).args(flags).arg("--out").arg(&run).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {}", stderr_of(&out));
        assert!(!run.exists(), "{flags:?}: nothing may be written");
        stderr_of(&out)
    };
    let err = refuse(tmp.path(), &["--signal-only"], 2);
    assert!(err.contains("is not a gda run or checkpoint"), "{err}");
    let err = refuse(&src, &["--signal-only", "--per-group", "3"], 2);
    assert!(err.contains("cannot grow"), "{err}");
    let err = refuse(&src, &["--uniform", "--groups", "3"], 2);
    assert!(err.contains("cannot grow"), "{err}");
    let err = refuse(&src, &["--signal-only", "--retry-failed"], 2);
    assert!(err.contains("apply to gda grow --compare"), "{err}");
    let err = refuse(&src, &["--signal-only", "--set", "model.d_model=64"], 2);
    assert!(err.contains("may not change model keys"), "{err}");
    // Symmetric clone noise is exact only up to rounding: a zero tolerance refuses it.
    let err = refuse(&src, &["--signal-only", "--clone-noise", "10", "--tolerance", "0"], 5);
    assert!(err.contains("does not compute the source's function") && err.contains("val loss: source"), "{err}");

    // A checkpoint whose tensors do not match its run's spec.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(broken.join("checkpoints")).unwrap();
    let spec = std::fs::read_to_string(src.join("spec.toml")).unwrap().replace("d_model = 32", "d_model = 48");
    std::fs::write(broken.join("spec.toml"), spec).unwrap();
    let name = latest_checkpoint(&src).file_name().unwrap().to_owned();
    let dst = broken.join("checkpoints").join(&name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["model.safetensors", "optim.safetensors", "state.json"] {
        std::fs::copy(latest_checkpoint(&src).join(f), dst.join(f)).unwrap();
    }
    std::fs::copy(src.join("checkpoints/LATEST"), broken.join("checkpoints/LATEST")).unwrap();
    let err = refuse(&broken, &["--signal-only"], 2);
    assert!(err.contains("do not match"), "{err}");
}

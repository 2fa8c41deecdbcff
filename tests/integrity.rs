//! Checkpoints prove their integrity (issue 28): a damaged, truncated or
//! missing checkpoint file is refused by everything that loads one, with
//! exit 2 naming the file, the run directory left byte for byte as it was;
//! an older checkpoint is kept to continue from, and continuing from it
//! reaches the unbroken run's result.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Every file under `dir` (relative path → bytes), to compare a directory
/// before and after a refused command.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (p, q) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_tree(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}

/// The five commands that load a checkpoint, each aimed at `run`, with
/// their outputs (if any) under `scratch`.
fn loaders(run: &Path, scratch: &Path) -> Vec<(&'static str, Command)> {
    let mut resume = gda();
    resume.args(["train", "--resume", "--set", "train.steps=80", "--out"]).arg(run);
    let mut eval = gda();
    eval.arg("eval").arg(run).arg("--out").arg(scratch.join("eval"));
    let mut grow = gda();
    grow.arg("grow").arg(run).args(["--signal-only", "--out"]).arg(scratch.join("grown"));
    let mut export = gda();
    export.arg("export").arg(run).arg("--out").arg(scratch.join("hf"));
    let mut sample = gda();
    sample.arg("sample").arg(run).args(["--prompt", "ROMEO:", "--max-new-tokens", "4"]);
    vec![("train --resume", resume), ("eval", eval), ("grow", grow), ("export", export), ("sample", sample)]
}

/// Flips one byte in the middle of `path`.
fn flip(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_refused_by_every_loader_and_the_older_one_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", TINY);
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // Checkpoints at 20, 40 and 60; the newest two kept, each with checksums
    // that the standard tool accepts.
    let root = run.join("checkpoints");
    let mut kept: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-00000040", "step-00000060"]);
    for k in &kept {
        let check = Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(root.join(k)).output().unwrap();
        assert!(check.status.success(), "sha256sum -c in {k}: {}", stderr_of(&check));
        assert_eq!(stdout_of(&check).matches(": OK").count(), 3, "{}", stdout_of(&check));
    }

    let newest = "step-00000060";
    type Damage = fn(&Path);
    let damages: [(&str, &str, Damage); 5] = [
        ("model.safetensors", "has sha256", flip),
        ("optim.safetensors", "has sha256", flip),
        ("state.json", "has sha256", flip),
        ("optim.safetensors", "has sha256", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len / 2).unwrap();
        }),
        ("model.safetensors", "is missing", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (i, (file, says, damage)) in damages.iter().enumerate() {
        let broken = tmp.path().join(format!("broken-{i}"));
        copy_tree(&run, &broken);
        damage(&broken.join("checkpoints").join(newest).join(file));
        let before = snapshot(&broken);
        let scratch = tmp.path().join(format!("scratch-{i}"));
        for (what, mut cmd) in loaders(&broken, &scratch) {
            let out = cmd.output().unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{what} on a damaged {file}: {err}");
            assert!(err.contains("is damaged") && err.contains(file) && err.contains(says), "{what}, {file}: {err}");
            assert!(
                err.contains(&format!("gda train --resume-from step-00000040 --out {}", broken.display())),
                "{what}, {file}: no fallback named: {err}"
            );
            assert!(before == snapshot(&broken), "{what} changed the run directory after refusing {file}");
            assert!(!scratch.exists(), "{what} wrote {} after refusing", scratch.display());
        }
    }

    // Continuing from the older checkpoint retrains 40 → 60 to the same
    // result; the damaged newest one is set aside, not deleted.
    let broken = tmp.path().join("broken-0");
    let out = gda().args(["train", "--resume-from", "step-00000040", "--out"]).arg(&broken).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("set aside step-00000060"), "{}", stderr_of(&out));
    let aside = broken.join("checkpoints/set-aside").join(newest).join("model.safetensors");
    let damaged = tmp.path().join("damaged.safetensors");
    std::fs::copy(run.join("checkpoints").join(newest).join("model.safetensors"), &damaged).unwrap();
    flip(&damaged);
    assert!(std::fs::read(aside).unwrap() == std::fs::read(damaged).unwrap(), "the set-aside checkpoint changed");
    assert_eq!(deterministic_rows(&broken), deterministic_rows(&run), "the continued run's metrics differ");
    let weights = |r: &Path| std::fs::read(latest_checkpoint(r).join("model.safetensors")).unwrap();
    assert_eq!(weights(&broken), weights(&run), "the continued run's final weights differ");
    let summary = |r: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(r.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(summary(&broken)["val_loss"], summary(&run)["val_loss"]);
    assert!(summary(&run)["val_loss"].as_f64().is_some_and(f64::is_finite));
}

#[test]
fn a_latest_naming_no_checkpoint_is_refused_and_an_unchecked_one_loads_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 20"));
    let run = tmp.path().join("run");
    let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let latest = run.join("checkpoints/LATEST");
    let good = std::fs::read_to_string(&latest).unwrap();
    for bad in ["", "garbage\n", "step-00000999", "../../run"] {
        std::fs::write(&latest, bad).unwrap();
        let before = snapshot(&run);
        let out = gda().args(["train", "--resume", "--set", "train.steps=30", "--out"]).arg(&run).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "LATEST {bad:?}: {err}");
        assert!(err.contains("is not a complete checkpoint") && err.contains("allowed: step-00000020"), "{err}");
        assert!(before == snapshot(&run), "a refused resume with LATEST {bad:?} changed the run directory");
    }
    let out = gda().args(["train", "--resume-from", "step-00000007", "--out"]).arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("no such complete checkpoint; allowed: step-00000020"), "{}", stderr_of(&out));

    // A checkpoint from before checksums (none written) still loads, saying so.
    std::fs::write(&latest, good).unwrap();
    std::fs::remove_file(latest_checkpoint(&run).join("SHA256SUMS")).unwrap();
    let out = gda().arg("sample").arg(&run).args(["--prompt", "ROMEO:", "--max-new-tokens", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("has no SHA256SUMS") && stderr_of(&out).contains("unverified"),
        "{}",
        stderr_of(&out)
    );
    assert!(stdout_of(&out).contains("ROMEO:"), "{}", stdout_of(&out));
}

//! TensorBoard event files read back with TensorBoard's own readers (the
//! venv made by scripts/tb-venv.sh): after a kill -9 and a resume, every
//! scalar series equals its metrics.csv column and the spec is there as text.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The Python of the venv scripts/tb-venv.sh makes; a missing venv fails
/// the test (it would otherwise pass without checking anything).
fn tensorboard_python() -> PathBuf {
    let venv = gda::data::corpus::cache_dir().join("tb-venv");
    assert!(
        venv.join(".gda-complete").exists(),
        "no TensorBoard venv at {}: run scripts/tb-venv.sh (scripts/test.sh does) to install it",
        venv.display()
    );
    venv.join("bin").join("python")
}

type Series = Vec<(u64, f64)>;

/// What TensorBoard's readers see in `run/tb`: per reader, tag → series, and
/// the text summaries.
struct Seen {
    scalars: BTreeMap<String, Series>,
    plugin_scalars: BTreeMap<String, Series>,
    texts: BTreeMap<String, Vec<(u64, String)>>,
}

fn read_with_tensorboard(run: &Path) -> Seen {
    let out = Command::new(tensorboard_python())
        .arg(repo().join("tests/tensorboard/read_events.py"))
        .arg(run.join("tb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "read_events.py failed: {}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = |key: &str| -> BTreeMap<String, Series> {
        v[key]
            .as_object()
            .unwrap()
            .iter()
            .map(|(tag, s)| {
                let points = s.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()));
                (tag.clone(), points.collect())
            })
            .collect()
    };
    let texts = v["texts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, s)| {
            let entries = s.as_array().unwrap().iter();
            (tag.clone(), entries.map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_string())).collect())
        })
        .collect();
    Seen { scalars: series("scalars"), plugin_scalars: series("plugin_scalars"), texts }
}

/// Every numeric column of metrics.csv but `step` (the x axis), as
/// TensorBoard stores it: f32.
fn csv_series(run: &Path) -> BTreeMap<String, Series> {
    let (header, _) = metrics(run);
    header[1..]
        .iter()
        .map(|h| (h.clone(), column(run, h).into_iter().map(|(s, v)| (s as u64, v as f32 as f64)).collect()))
        .collect()
}

fn event_files(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tfevents"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_run_killed_and_resumed_reads_back_in_tensorboard_as_its_metrics_csv() {
    let python = tensorboard_python();
    assert!(python.exists(), "{} is missing: run scripts/tb-venv.sh", python.display());
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY
        .replace("steps = 60", "steps = 300")
        .replace("eval_every = 20", "eval_every = 100")
        .replace("[train]", "[train]\ncheckpoint_every = 50");
    let spec = write_spec(tmp.path(), "tiny", &text);
    let run = tmp.path().join("run");

    let child = gda()
        .args(["train", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Past the checkpoint at 50 and before the one at 100, so rows 60…
    // exist in the first events file and are logged again after the resume.
    wait_for(Duration::from_secs(60), || last_logged_step(&run) >= 70);
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let _ = child.wait_with_output().unwrap();
    let logged = last_logged_step(&run);
    let checkpoint = gda::train::checkpoint::read_state(&latest_checkpoint(&run)).unwrap().step;
    assert!(checkpoint < logged && logged < 300, "checkpoint {checkpoint}, logged through {logged}");

    let first = event_files(&run);
    assert_eq!(first.len(), 1, "{first:?}");
    let host = gda::util::host::hostname();
    assert!(
        first[0].starts_with("events.out.tfevents.") && first[0].ends_with(&format!(".{host}.{pid}.gda")),
        "{first:?}"
    );
    // kill -9 may cut a write short: leave the worst case, a torn last
    // record, which TensorBoard's reader must stop at.
    let path = run.join("tb").join(&first[0]);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();

    let out = gda().args(["train", "--resume", "--out"]).arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let files = event_files(&run);
    assert_eq!(files.len(), 2, "one events file per process: {files:?}");
    assert_eq!(files[0], first[0], "the resumed run's file sorts after the first");

    let seen = read_with_tensorboard(&run);
    let expected = csv_series(&run);
    assert_eq!(column(&run, "step").len(), 31, "metrics.csv has one row per 10 steps");
    assert!(expected["val_loss"].len() == 4 && expected["lambda_0"].len() == 31, "{expected:?}");
    assert_eq!(seen.scalars, expected, "EventAccumulator's scalars differ from metrics.csv");
    assert_eq!(seen.plugin_scalars, expected, "the Scalars dashboard's data differ from metrics.csv");

    // The spec as text, at the start and again at the resume.
    let toml = std::fs::read_to_string(run.join("spec.toml")).unwrap();
    let spec_text = format!("```toml\n{toml}```");
    let steps: Vec<u64> = seen.texts["spec"].iter().map(|t| t.0).collect();
    assert_eq!(steps, [0, checkpoint as u64 + 1]);
    assert!(seen.texts["spec"].iter().all(|t| t.1 == spec_text), "{:?}", seen.texts);
    assert_eq!(seen.texts.len(), 1);
}

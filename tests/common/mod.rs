//! Helpers shared by the integration tests: the real `gda` binary, a tiny
//! spec on the real default corpus, and readers for what a run writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `gda` binary built by cargo for this test run.
pub fn gda() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gda"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small GDA model that trains over a hundred steps per second on one
/// thread (one thread per process: tests run in parallel on 2 cores, and
/// oversubscribed OpenMP threads slow everything down many times).
pub const TINY: &str = r#"
seed = 7
[model]
d_model = 32
n_layers = 2
head_dim = 8
signal_heads = 4
noise_heads = 2
[train]
context = 32
batch_size = 8
steps = 60
warmup_steps = 5
lr = 1e-2
min_lr = 1e-3
eval_every = 20
eval_tokens = 2048
log_every = 10
threads = 1
"#;

/// Writes `text` as `<dir>/<name>.toml` and returns its path.
pub fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// metrics.csv as (header, rows).
pub fn metrics(run_dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    gda::metrics::read(&run_dir.join("metrics.csv")).unwrap()
}

/// The value of `col` in every row where it is not empty, with its step.
pub fn column(run_dir: &Path, col: &str) -> Vec<(usize, f64)> {
    let (header, rows) = metrics(run_dir);
    let i = header.iter().position(|h| h == col).unwrap_or_else(|| panic!("no column {col}"));
    rows.iter().filter(|r| !r[i].is_empty()).map(|r| (r[0].parse().unwrap(), r[i].parse().unwrap())).collect()
}

/// Rows of metrics.csv without the timing columns (the only ones that may
/// differ between two runs of the same experiment).
pub fn deterministic_rows(run_dir: &Path) -> Vec<Vec<String>> {
    let (header, rows) = metrics(run_dir);
    let keep: Vec<usize> =
        (0..header.len()).filter(|&i| header[i] != "tokens_per_s" && header[i] != "elapsed_s").collect();
    rows.iter().map(|r| keep.iter().map(|&i| r[i].clone()).collect()).collect()
}

/// Path of a run's newest checkpoint.
pub fn latest_checkpoint(run_dir: &Path) -> PathBuf {
    gda::checkpoint::latest(run_dir).expect("run has a checkpoint")
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

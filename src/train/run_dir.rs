//! The run directory: what a run writes besides its checkpoints and metrics
//! (spec, manifest, summary), the lock that keeps a second trainer out, and
//! finding a trained run (or one of its checkpoints) to load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::TrainOptions;
use crate::config::Spec;
use crate::error::{input, GdaError};
use crate::util::host::hostname;
use crate::util::out::errln;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub gda_version: String,
    pub libtorch_version: String,
    pub device: String,
    pub threads: usize,
    pub seed: u64,
    pub spec_hash: String,
    pub git_revision: Option<String>,
    pub parameters: usize,
    /// Training FLOPs per token (src/flops.rs) and the measured matmul peak
    /// of the device (FLOP/s) that the CSV's `mfu` divides by.
    pub train_flops_per_token: f64,
    pub matmul_peak_flops: f64,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub train_sources: Vec<String>,
    pub val_sources: Vec<String>,
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent: Option<serde_json::Value>,
    /// Text runs: the data's format, the shards read and the tokenizer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<crate::data::DataInfo>,
}

/// What a finished run reports (also `summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub name: String,
    pub steps: usize,
    pub tokens_seen: u64,
    pub parameters: usize,
    pub val_loss: f64,
    /// Text runs only.
    #[serde(default)]
    pub val_bpb: Option<f64>,
    /// Retrieval-task runs only: exact-match accuracy on the fixed evaluation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    pub elapsed_s: f64,
    /// Training throughput over the whole run (evaluation time excluded).
    pub tokens_per_s: f64,
    pub run_dir: PathBuf,
    /// Device-to-host reads (`device::host_f64`) made on steps that wrote no
    /// metrics row, evaluation or checkpoint: 0 unless the loop stalls an
    /// asynchronous device every step (scripts/gpu/check.sh checks it).
    #[serde(default)]
    pub unlogged_host_reads: usize,
}

impl RunSummary {
    /// "val loss 1.9406 | val bpb 2.7996" for text, "val loss … | val acc …" for a task.
    pub fn quality(&self) -> String {
        let mut s = format!("val loss {:.4}", self.val_loss);
        if let Some(b) = self.val_bpb {
            s += &format!(" | val bpb {b:.4}");
        }
        if let Some(a) = self.val_acc {
            s += &format!(" | val acc {a:.4}");
        }
        s
    }

    /// The second headline metric: bits per byte for text, accuracy for a task.
    pub fn metric(&self) -> f64 {
        self.val_bpb.or(self.val_acc).unwrap_or(f64::NAN)
    }
}

pub const SUMMARY_FILE: &str = "summary.json";

/// The summary of a finished run, if the run directory holds one.
pub fn finished(run_dir: &Path) -> Option<RunSummary> {
    std::fs::read(run_dir.join(SUMMARY_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

pub fn run_dir_for(spec: &Spec, opts: &TrainOptions) -> PathBuf {
    opts.run_dir.clone().unwrap_or_else(|| spec.output.dir.join(&spec.name))
}

/// A run directory is locked while it trains: two processes on one run
/// (a sweep rerun beside a running one, a Slurm task beside a local sweep)
/// would interleave their steps and checkpoints. The lock is an exclusive
/// `flock` on this file, which names its holder (`<pid> <host>`) for `gda
/// status`; the kernel drops it when the process ends, kill -9 included.
pub const LOCK_FILE: &str = "lock";

/// The pid and host the run's lock file names: its holder while the lock is
/// held, the last trainer after.
pub fn lock_holder(dir: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [pid, host] => Some((pid.parse().ok()?, host.to_string())),
        _ => None,
    }
}

/// Creates (or re-opens, with `--resume`) a run directory and locks it;
/// refuses to mix two different experiments in one directory. A refusal
/// leaves the directory as it was, its lock file included: what it holds is
/// checked before anything is touched (spec.toml is replaced atomically, so
/// reading it needs no lock), and checked again once the lock is held, in
/// case another trainer started the run in between. Returns the lock, held
/// until it is dropped (`None` where the filesystem cannot lock, after a
/// warning).
pub(super) fn prepare_run_dir(spec: &Spec, dir: &Path, resume: bool) -> Result<Option<std::fs::File>, GdaError> {
    use std::io::{Seek, Write};
    use std::os::fd::AsRawFd;
    check_run_dir(spec, dir, resume)?;
    let path = dir.join(LOCK_FILE);
    let unwritable = |e: std::io::Error| input(format!("results directory {} is not writable: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(unwritable)?;
    // SAFETY: flock on a descriptor this File owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            let holder = lock_holder(dir)
                .map(|(pid, host)| format!("pid {pid} on {host}"))
                .unwrap_or_else(|| "a process".into());
            return Err(GdaError::Busy { run_dir: dir.to_path_buf(), holder });
        }
        // Some cluster filesystems have no flock (NFS without lockd, Lustre
        // without -o flock): train unguarded rather than not at all.
        errln!("warning: cannot lock {} ({err}); nothing stops a second trainer on this run directory", path.display());
    }
    check_run_dir(spec, dir, resume)?;
    if !locked {
        return Ok(None);
    }
    file.set_len(0).and_then(|_| file.rewind()).map_err(unwritable)?;
    writeln!(file, "{} {}", std::process::id(), hostname()).map_err(unwritable)?;
    Ok(Some(file))
}

/// Refuses a directory that holds a run unless resuming it, and a run of a
/// different experiment always, naming the keys that differ.
fn check_run_dir(spec: &Spec, dir: &Path, resume: bool) -> Result<(), GdaError> {
    let saved = dir.join("spec.toml");
    if !saved.exists() {
        return Ok(());
    }
    if !resume {
        return Err(input(format!(
            "run directory {} already holds a run; pass --resume to continue it, or choose another --out",
            dir.display()
        )));
    }
    let old = Spec::load(Some(&saved), &[])?;
    if old.hash() != spec.hash() {
        let changed = old.diff(spec);
        let changed = if changed.is_empty() {
            format!("spec hash {} vs {}", old.hash(), spec.hash())
        } else {
            format!("changed: {}", changed.join(", "))
        };
        return Err(input(format!(
            "run directory {} holds a different experiment ({changed}); resume it with its own spec (gda train --resume --out {}) or choose another --out",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// A trained run (or one of its checkpoints) to grow from.
pub struct Source {
    pub spec: Spec,
    pub run_dir: PathBuf,
    pub checkpoint: PathBuf,
    pub step: usize,
}

/// Accepts a run directory (its newest checkpoint) or a checkpoint directory
/// inside one.
pub fn find_source(from: &Path) -> Result<Source, GdaError> {
    let not_gda = || {
        input(format!(
            "{} is not a gda run or checkpoint; allowed: a run directory (spec.toml and checkpoints/) or a checkpoint directory (model.safetensors and state.json)",
            from.display()
        ))
    };
    let (run_dir, checkpoint) = if from.join("spec.toml").is_file() {
        let ck = checkpoint::latest(from).ok_or_else(|| {
            input(format!(
                "run directory {} has no checkpoint yet (train it first: gda train --resume --out {})",
                from.display(),
                from.display()
            ))
        })?;
        (from.to_path_buf(), ck)
    } else if from.join(checkpoint::MODEL_FILE).is_file() && from.join(checkpoint::STATE_FILE).is_file() {
        let run = from.parent().and_then(Path::parent).filter(|r| r.join("spec.toml").is_file()).ok_or_else(not_gda)?;
        (run.to_path_buf(), from.to_path_buf())
    } else {
        return Err(not_gda());
    };
    let spec = Spec::load(Some(&run_dir.join("spec.toml")), &[])?;
    let step = checkpoint::read_state(&checkpoint)?.step;
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let (run_dir, checkpoint) = (abs(run_dir), abs(checkpoint));
    Ok(Source { spec, run_dir, checkpoint, step })
}

/// The process training a point on this host: the one its run lock names,
/// if that process still holds the lock (a dead trainer's pid may have been
/// reused; /proc/locks tells).
pub fn local_trainer(run: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let (pid, host) = lock_holder(run)?;
    if host != hostname() {
        return None;
    }
    let path = run.join(LOCK_FILE);
    let inode = std::fs::metadata(&path).ok()?.ino();
    match std::fs::read_to_string("/proc/locks") {
        // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"
        Ok(locks) => locks
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() > 5 && f[4] == pid.to_string() && f[5].rsplit(':').next() == Some(&inode.to_string()))
            .then_some(pid),
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) => (unsafe { libc::kill(pid as i32, 0) } == 0).then_some(pid),
    }
}

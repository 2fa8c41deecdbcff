//! The run directory: what a run writes besides its checkpoints and metrics
//! (spec, manifest, summary), the lock that keeps a second trainer out, and
//! finding a trained run (or one of its checkpoints) to load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::metrics::column_pairs;
use super::TrainOptions;
use crate::config::Spec;
use crate::data::Dataset;
use crate::device::{self, Peak};
use crate::error::{input, io, GdaError};
use crate::model;
use crate::report::plot::{plot_lines, Line, Titles};
use crate::report::units::{human_count, si_flops};
use crate::util::fs::atomic_write;
use crate::util::host::hostname;
use crate::util::out::{errln, outln};

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
    /// Training FLOPs per token (src/flops.rs).
    pub train_flops_per_token: f64,
    /// The dense matmul throughput this run measured on its device at its
    /// start (FLOP/s); `mfu × peak_flops / matmul_peak_flops` is the MFU
    /// against it.
    pub matmul_peak_flops: f64,
    /// The peak (FLOP/s) the CSV's `mfu` divides by, and where it comes from
    /// (`device::peak`: a GPU's datasheet, this machine's cached CPU peak,
    /// or GDA_PEAK_FLOPS). Absent in runs started before gda recorded it,
    /// whose `mfu` divides by `matmul_peak_flops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_flops: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_source: Option<String>,
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
    /// The ranks the run started on (absent: one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<World>,
    /// Every resume that changed a resumable key (extending the run), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
}

/// A distributed run's ranks: how many, the c10d backend that joined them
/// ("gloo" or "nccl") and each rank's host, by rank.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct World {
    pub world_size: usize,
    pub backend: String,
    pub hosts: Vec<String>,
}

/// A resume that changed the run's `config::RESUMABLE_KEYS`: `spec_hash` and
/// spec.toml then describe the run as extended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extension {
    /// The step the run had reached.
    pub step: usize,
    /// `key: old → new` for each key changed.
    pub changed: Vec<String>,
    pub command: Vec<String>,
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What [`begin`] settled for the run.
pub(super) struct Start {
    pub parameters: usize,
    pub flops_per_token: f64,
    /// What MFU divides by.
    pub peak: Peak,
}

/// The start of every training process, fresh or resumed: writes spec.toml
/// and manifest.json (a resumed run keeps its start's manifest, and a
/// resume that extended the run records it there, with the new spec hash)
/// and prints the header: device and dtype, size and cost of the model,
/// the data and the peak MFU is measured against.
#[allow(clippy::too_many_arguments)]
pub(super) fn begin(
    spec: &Spec,
    opts: &TrainOptions,
    run_dir: &Path,
    device: tch::Device,
    threads: usize,
    data: &Dataset,
    step: usize,
    world: Option<&World>,
) -> Result<Start, GdaError> {
    let parameters = model::param_count(&spec.model);
    let flops_per_token = model::flops::train_flops_per_token(&spec.model, spec.train.context);
    let peak = device::peak(device, threads);
    let spec_path = run_dir.join("spec.toml");
    let changed = Spec::load(Some(&spec_path), &[]).map(|old| old.diff(spec)).unwrap_or_default();
    atomic_write(&spec_path, spec.to_toml().as_bytes()).map_err(io("cannot write", &spec_path))?;
    let manifest_path = run_dir.join("manifest.json");
    let saved: Option<Manifest> = std::fs::read(&manifest_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let command: Vec<String> = std::env::args().collect();
    let manifest = match saved {
        Some(mut m) if !changed.is_empty() => {
            m.spec_hash = spec.hash();
            m.extensions.push(Extension { step, changed, command });
            Some(m)
        }
        // A resumed run keeps the manifest of the run's start (one it
        // cannot read included: that is not this process's to replace).
        _ if manifest_path.exists() => None,
        _ => Some(Manifest {
            gda_version: env!("CARGO_PKG_VERSION").into(),
            libtorch_version: device::torch::LIBTORCH_VERSION.into(),
            device: device::describe(device),
            threads,
            seed: spec.seed,
            spec_hash: spec.hash(),
            git_revision: git_revision(),
            parameters,
            train_flops_per_token: flops_per_token,
            matmul_peak_flops: device::matmul_peak_flops(device),
            peak_flops: Some(peak.flops),
            peak_source: Some(peak.source.clone()),
            train_tokens: data.train_tokens(),
            val_tokens: data.val_tokens(spec),
            train_sources: data.sources(true),
            val_sources: data.sources(false),
            command,
            parent: opts.parent.clone(),
            data: data.info(),
            world: world.cloned(),
            extensions: Vec::new(),
        }),
    };
    if let Some(m) = manifest {
        atomic_write(&manifest_path, &serde_json::to_vec_pretty(&m).expect("manifest serialises"))
            .map_err(io("cannot write", &manifest_path))?;
    }
    let start = Start { parameters, flops_per_token, peak };
    for line in header(spec, device, threads, data, &start, step) {
        outln!("{line}");
    }
    if let Some(w) = world {
        let mut hosts: Vec<&str> = w.hosts.iter().map(String::as_str).collect();
        hosts.dedup();
        outln!(
            "ranks: {} ({}) on {} | each rank {} of the {} rows of a micro-batch",
            w.world_size,
            w.backend,
            hosts.join(", "),
            spec.train.batch_size / w.world_size,
            spec.train.batch_size
        );
    }
    Ok(start)
}

/// [`begin`] for ranks other than 0, which write and print nothing (and
/// measure no peak: they log no MFU).
pub(super) fn quiet_start(spec: &Spec) -> Start {
    Start {
        parameters: model::param_count(&spec.model),
        flops_per_token: model::flops::train_flops_per_token(&spec.model, spec.train.context),
        peak: Peak { flops: 1.0, source: String::new() },
    }
}

/// The lines `gda train` prints before its first step, e.g.
/// `train tiny: steps 0 → 60 on cpu (fp32, 1 thread; device "auto": no CUDA device)`.
fn header(spec: &Spec, device: tch::Device, threads: usize, data: &Dataset, s: &Start, step: usize) -> [String; 2] {
    let dtype = if device::compute_kind(device) == tch::Kind::BFloat16 { "bf16" } else { "fp32" };
    let cpu = if device.is_cuda() {
        String::new()
    } else {
        format!(", {threads} thread{}", if threads == 1 { "" } else { "s" })
    };
    let auto = match (spec.train.device.as_str(), device.is_cuda()) {
        ("auto", false) => "; device \"auto\" found no GPU",
        ("auto", true) => "; device \"auto\"",
        _ => "",
    };
    let source = match data.info() {
        Some(i) => format!("{} {}", i.format.name(), i.path),
        None => format!("{} task generated from seed {}", spec.data.task.name(), spec.seed),
    };
    [
        format!(
            "train {}: steps {step} → {} on {} ({dtype}{cpu}{auto}) | {} parameters | {}/token",
            spec.name,
            spec.train.steps,
            device::describe(device),
            human_count(s.parameters),
            si_flops(s.flops_per_token),
        ),
        format!(
            "data: {} train / {} val tokens, {source} | MFU peak {}/s ({})",
            human_count(data.train_tokens()),
            human_count(data.val_tokens(spec)),
            si_flops(s.peak.flops),
            s.peak.source
        ),
    ]
}

/// The file `gda train` (at its end) and `gda report` draw a run's losses into.
pub const LOSS_CURVE_FILE: &str = "loss_curve.svg";

/// Draws `loss_curve.svg`: training (solid) and validation (dashed) loss
/// against training tokens, from the run's metrics.csv. Returns its path.
pub fn draw_loss_curve(run: &Path) -> Result<PathBuf, GdaError> {
    let train = column_pairs(run, "tokens", "train_loss");
    let val = column_pairs(run, "tokens", "val_loss");
    let path = run.join(LOSS_CURVE_FILE);
    let held = Spec::load(Some(&run.join("spec.toml")), &[])
        .map(|s| {
            let t = &s.train;
            format!("{} steps, batch {} × {} tokens, lr {}", t.steps, t.batch_size * t.grad_accum, t.context, t.lr)
        })
        .unwrap_or_default();
    let titles = Titles {
        title: "training (solid) and validation (dashed) loss",
        held: &held,
        x: "training tokens",
        y: "loss (nats/token)",
    };
    plot_lines(
        &path,
        &titles,
        false,
        &[Line::plain("train loss", &train, 0, false), Line::plain("val loss", &val, 1, true)],
    )?;
    Ok(path)
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
/// different experiment always, naming the keys that differ. A resume may
/// change the `config::RESUMABLE_KEYS` (extending a run): `train.steps` to no
/// fewer than the steps the run has taken.
fn check_run_dir(spec: &Spec, dir: &Path, resume: bool) -> Result<(), GdaError> {
    let saved = dir.join("spec.toml");
    if !saved.exists() {
        return Ok(());
    }
    if !resume {
        // A live trainer is the first thing to know: --resume would only
        // meet its lock.
        // The code of a busy run directory (7), whatever the flags: the
        // caller's remedy is to wait, not to change its input.
        if let Some(pid) = local_trainer(dir) {
            return Err(GdaError::Busy { run_dir: dir.to_path_buf(), holder: format!("pid {pid}") });
        }
        return Err(input(format!(
            "run directory {} already holds a run; pass --resume to continue it, or choose another --out",
            dir.display()
        )));
    }
    let old = Spec::load(Some(&saved), &[])?;
    let fixed = old.fixed_diff(spec);
    if !fixed.is_empty() || (old.hash() != spec.hash() && old.diff(spec).is_empty()) {
        let changed = if fixed.is_empty() {
            format!("spec hash {} vs {}", old.hash(), spec.hash())
        } else {
            format!("changed: {}", fixed.join(", "))
        };
        return Err(input(format!(
            "run directory {} holds a different experiment ({changed}); a resume may only extend the run (more steps) or change its evaluation, logging and checkpoint cadence; resume it with its own spec (gda train --resume --out {}) or choose another --out",
            dir.display(),
            dir.display()
        )));
    }
    let (reached, least) = match (finished(dir), checkpoint::latest_step(dir)) {
        // A finished run may be resumed at its own length (nothing to do).
        (Some(done), _) => (done.steps, done.steps),
        // An unfinished one must take at least one more step, which ends
        // with the final evaluation.
        (None, Some(step)) => (step, step + 1),
        (None, None) => (0, 1),
    };
    if spec.train.steps < least && spec.train.steps != old.train.steps {
        return Err(spec.error(
            "train.steps",
            format!(
                "{} is fewer than the {reached} steps run directory {} has taken; allowed: at least {least}",
                spec.train.steps,
                dir.display()
            ),
        ));
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
    checkpoint::verify(&checkpoint)?;
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

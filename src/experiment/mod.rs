//! Multi-run experiments: the ratio sweep and the repetition ablation.
//!
//! An experiment is a grid of points, each a complete resolved spec trained
//! by `gda train` in a child process into `<dir>/points/<name>/`. The
//! summary is rebuilt from those run directories every time, so a rerun after
//! any interruption skips finished points, resumes the interrupted one from
//! its checkpoint, and can neither lose nor duplicate a row.

pub mod evaluate;
pub mod grid;
pub mod growth;
pub mod local;
pub mod plan;
mod points;
pub mod progress;
pub mod sample;
pub mod slurm;
pub mod summary;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::grid::{Grid, Summary};
pub use self::points::{allocate, grid};
use crate::config::{AttentionKind, BudgetPolicy, Spec};
use crate::error::{input, io, GdaError};
use crate::model::{flops, param_count};
use crate::train::{self, checkpoint, RunSummary};
use crate::util::fs::atomic_write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// GDA with shared noise heads.
    Gda,
    /// Plain multi-head attention matched on parameters.
    Baseline,
    /// Every signal head its own noise head (own Q2, K2).
    NoShare,
    /// Shared layout, noise subtracted from one signal head per group.
    EqualParams,
    /// Grown from a trained model by cloning signal heads.
    SignalOnly,
    /// Grown by cloning whole groups (signal and noise heads).
    Uniform,
    /// The grown architecture trained from a random init.
    Scratch,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Gda => "shared",
            Variant::Baseline => "baseline",
            Variant::NoShare => "no-share",
            Variant::EqualParams => "equal-params",
            Variant::SignalOnly => "signal-only",
            Variant::Uniform => "uniform",
            Variant::Scratch => "scratch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Sweep,
    Ablate {
        no_share: bool,
        equal_params: bool,
    },
    /// Growth comparison from the checkpoint at `step` of a run.
    Grow {
        step: usize,
    },
}

impl Kind {
    /// The command's name; experiment directories default to `<prefix>-<name>`.
    pub fn dir_prefix(self) -> &'static str {
        match self {
            Kind::Sweep => "sweep",
            Kind::Ablate { .. } => "ablate",
            Kind::Grow { .. } => "grow",
        }
    }

    /// What experiment.json records (a growth comparison also names its source step).
    fn name(self) -> String {
        match self {
            Kind::Grow { step } => format!("grow from step {step}"),
            other => other.dir_prefix().into(),
        }
    }
}

/// One grid point: a run of a resolved spec.
#[derive(Debug, Clone)]
pub struct Point {
    pub name: String,
    pub variant: Variant,
    /// The ratio asked for (None for the baseline).
    pub requested: Option<usize>,
    pub seed: u64,
    pub spec: Spec,
    /// The point's grid cell: (spec key, value) per grid axis, by key;
    /// empty outside a scaling grid.
    pub grid: Cell,
}

/// A grid cell: the value of each grid axis, (spec key, value as text).
pub type Cell = Vec<(String, String)>;

/// Short forms of common grid keys in point names (`g4-s1-d512`); any
/// other key goes by its last segment.
const SHORT_KEYS: &[(&str, &str)] = &[
    ("model.d_model", "d"),
    ("model.n_layers", "L"),
    ("model.head_dim", "hd"),
    ("model.mlp_hidden", "mlp"),
    ("model.init_std", "init"),
    ("model.rope_theta", "rope"),
    ("train.lr", "lr"),
    ("train.min_lr", "minlr"),
    ("train.steps", "steps"),
    ("train.batch_size", "bs"),
    ("train.context", "ctx"),
    ("train.weight_decay", "wd"),
    ("train.warmup_steps", "warmup"),
];

/// The name of each grid key in labels (`d_model`: its last segment) and in
/// point names (`d`: [`SHORT_KEYS`]); a key whose form another key of the
/// grid shares goes by its whole dotted name instead.
fn key_forms(keys: &[&str]) -> Vec<(String, String)> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let short = |k: &str| SHORT_KEYS.iter().find(|s| s.0 == k).map(|s| s.1.to_string()).unwrap_or_else(|| last(k));
    let unique = |f: &dyn Fn(&str) -> String, k: &str| {
        let mine = f(k);
        if keys.iter().filter(|o| f(o) == mine).count() > 1 {
            k.replace('.', "_")
        } else {
            mine
        }
    };
    keys.iter().map(|k| (unique(&last, k), unique(&short, k))).collect()
}

/// `d_model=512, lr=0.001`: a cell in tables, legends and verdicts (empty
/// outside a grid).
pub fn cell_label(cell: &Cell) -> String {
    let keys: Vec<&str> = cell.iter().map(|c| c.0.as_str()).collect();
    key_forms(&keys).iter().zip(cell).map(|((label, _), (_, v))| format!("{label}={v}")).collect::<Vec<_>>().join(", ")
}

/// `-d512-lr0.001`: a cell in point names (empty outside a grid). Only
/// letters, digits, `.` and `_` are kept; anything else becomes `_`.
fn cell_suffix(cell: &Cell) -> String {
    let keys: Vec<&str> = cell.iter().map(|c| c.0.as_str()).collect();
    let clean = |v: &str| {
        v.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '_' }).collect::<String>()
    };
    key_forms(&keys).iter().zip(cell).map(|((_, short), (_, v))| format!("-{short}{}", clean(v))).collect()
}

impl Point {
    /// The cell as tables and legends show it ([`cell_label`]).
    pub fn cell_label(&self) -> String {
        cell_label(&self.grid)
    }

    /// H_s / H_n actually trained (None for the baseline).
    pub fn ratio(&self) -> Option<f64> {
        spec_ratio(&self.spec)
    }

    /// Points that differ only in seed share a group (`4:1 shared`; in a
    /// grid with the cell: `4:1 shared, d_model=512`).
    pub fn group(&self) -> String {
        let arm = match (self.variant, self.requested) {
            (Variant::Baseline, _) => "baseline".into(),
            (v, Some(r)) => format!("{r}:1 {}", v.label()),
            (v, None) => v.label().into(),
        };
        if self.grid.is_empty() {
            arm
        } else {
            format!("{arm}, {}", self.cell_label())
        }
    }
}

/// H_s / H_n of a spec's model (None for standard attention).
pub fn spec_ratio(spec: &Spec) -> Option<f64> {
    let m = &spec.model;
    (m.attention == AttentionKind::Gda).then(|| m.signal_heads as f64 / m.noise_heads as f64)
}

pub fn policy_name(p: BudgetPolicy) -> &'static str {
    match p {
        BudgetPolicy::Signal => "signal",
        BudgetPolicy::Total => "total",
    }
}

/// What identifies an experiment directory: the kind and the base spec
/// (sweep section excluded, so adding ratios or seeds extends it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Identity {
    kind: String,
    base_spec_hash: String,
}

/// The state of one point, read from its run directory.
#[derive(Debug, Clone)]
pub enum Status {
    Pending,
    /// A checkpoint exists; the next run resumes it.
    Started(usize),
    Done(RunSummary),
    Failed(String),
}

impl Status {
    /// The state in a few words, for tables and lists of missing points.
    pub fn describe(&self) -> String {
        match self {
            Status::Pending => "not started".into(),
            Status::Started(step) => format!("checkpoint at step {step}"),
            Status::Done(_) => "done".into(),
            Status::Failed(r) => format!("failed: {r}"),
        }
    }
}

pub const FAILED_FILE: &str = "failed.txt";

/// Signals that mean the trainer itself crashed (a failure of the point),
/// not that something outside stopped it; the local launcher and the Slurm
/// batch script tell them apart the same way.
pub const CRASH_SIGNALS: [i32; 7] =
    [libc::SIGILL, libc::SIGTRAP, libc::SIGABRT, libc::SIGBUS, libc::SIGFPE, libc::SIGSEGV, libc::SIGSYS];

pub fn point_dir(dir: &Path, p: &Point) -> PathBuf {
    dir.join("points").join(&p.name)
}

pub fn status(dir: &Path, p: &Point) -> Status {
    let run = point_dir(dir, p);
    // A finished run is a result, whatever a later attempt recorded; one
    // with fewer steps than the grid asks for (an extended experiment) is
    // resumed to them.
    if let Some(s) = train::finished(&run).filter(|s| s.steps >= p.spec.train.steps) {
        return Status::Done(s);
    }
    if let Ok(reason) = std::fs::read_to_string(run.join(FAILED_FILE)) {
        return Status::Failed(reason.trim().to_string());
    }
    match checkpoint::latest_step(&run) {
        Some(step) => Status::Started(step),
        None => Status::Pending,
    }
}

#[derive(Clone)]
pub struct RunOptions {
    pub dir: PathBuf,
    pub jobs: usize,
    /// Total CPU threads to share among concurrent points (0 = all cores).
    pub threads: usize,
    pub retry_failed: bool,
    /// One concurrent point per entry (`--devices`), each child trained on
    /// that device; empty: `jobs` points at once on the default devices.
    pub devices: Vec<String>,
    pub launcher: Launcher,
    /// Read by `Launcher::Slurm` only.
    pub slurm: SlurmOptions,
    /// Ranks each point trains on (`--nproc-per-point`; 1: one process).
    pub nproc_per_point: usize,
}

/// Where the points of a grid train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Child processes on this machine (`local`).
    Local,
    /// One Slurm job array task per point (`slurm`).
    Slurm,
}

/// What `--launcher slurm` writes into the batch script.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Time limit of each point, HH:MM:SS.
    pub time: Option<String>,
    pub gpus_per_run: Option<usize>,
    /// CPUs (and training threads) per point; default the run's threads, or 1.
    pub cpus_per_run: Option<usize>,
    pub mem: Option<String>,
    /// Extra `#SBATCH` lines.
    pub sbatch_args: Vec<String>,
    /// Write the script and print the sbatch command instead of submitting.
    pub no_submit: bool,
}

/// Creates the experiment directory or checks that it holds this experiment.
pub fn open_dir(dir: &Path, base: &Spec, kind: Kind) -> Result<(), GdaError> {
    let id = Identity { kind: kind.name(), base_spec_hash: base.hash() };
    let file = dir.join("experiment.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut old: Identity = serde_json::from_str(&text)
            .map_err(|e| input(format!("{} is not a gda experiment file: {e}", file.display())))?;
        // The stored hash may come from an older way of hashing; the saved
        // base spec, hashed now, is what the current spec must match.
        let saved = Spec::load(Some(&dir.join("base-spec.toml")), &[]).ok();
        if let Some(saved) = &saved {
            old.base_spec_hash = saved.hash();
        }
        if old != id && old.kind == id.kind {
            if let Some(saved) = saved.as_ref().filter(|s| s.fixed_diff(base).is_empty()) {
                return extend_dir(dir, saved, base, &id);
            }
        }
        if old != id {
            let changed = match &saved {
                Some(saved) if old.base_spec_hash != id.base_spec_hash => {
                    format!("; changed: {}", saved.diff(base).join(", "))
                }
                _ => String::new(),
            };
            return Err(input(format!(
                "{} holds a different experiment ({} of spec {}; this is a {} of spec {}{changed}); nothing was changed: choose another --out",
                dir.display(),
                old.kind,
                old.base_spec_hash,
                id.kind,
                id.base_spec_hash
            )));
        }
        return Ok(());
    }
    if dir.join("points").exists() {
        return Err(input(format!("{} holds runs but no experiment.json; choose another --out", dir.display())));
    }
    std::fs::create_dir_all(dir.join("specs"))
        .map_err(|e| input(format!("results directory {} is not writable: {e}", dir.display())))?;
    let base_file = dir.join("base-spec.toml");
    atomic_write(&base_file, base.to_toml().as_bytes()).map_err(io("cannot write", &base_file))?;
    atomic_write(&file, &serde_json::to_vec_pretty(&id).expect("identity serialises"))
        .map_err(io("cannot write", &file))
}

/// A rerun whose base spec differs from the saved one only in the keys a
/// resume may change (`config::RESUMABLE_KEYS`) extends the experiment, as
/// `gda train --resume` extends a run: each finished point with fewer steps
/// than the new `train.steps` is resumed to it ([`status`]), the others go
/// on as before. `train.steps` may grow, never shrink (a point may already
/// have taken more steps than a shorter grid asks for).
fn extend_dir(dir: &Path, saved: &Spec, base: &Spec, id: &Identity) -> Result<(), GdaError> {
    if base.train.steps < saved.train.steps {
        return Err(base.error(
            "train.steps",
            format!(
                "{} is fewer than the {} steps of the experiment in {}; allowed: at least {} (an experiment can be extended, not shortened)",
                base.train.steps,
                saved.train.steps,
                dir.display(),
                saved.train.steps
            ),
        ));
    }
    let base_file = dir.join("base-spec.toml");
    atomic_write(&base_file, base.to_toml().as_bytes()).map_err(io("cannot write", &base_file))?;
    let file = dir.join("experiment.json");
    atomic_write(&file, &serde_json::to_vec_pretty(id).expect("identity serialises")).map_err(io("cannot write", &file))
}

pub fn spec_file(dir: &Path, p: &Point) -> PathBuf {
    dir.join("specs").join(format!("{}.toml", p.name))
}

/// Writes the point's resolved spec where its command line reads it.
pub fn write_spec(dir: &Path, p: &Point) -> std::io::Result<()> {
    let spec_file = spec_file(dir, p);
    atomic_write(&spec_file, p.spec.to_toml().as_bytes())
}

/// The command line that trains one point, program first: `gda train
/// --resume --spec <dir>/specs/<p>.toml --out <dir>/points/<p>`, with
/// the threads and device of its slot. The local launcher runs it as a child
/// process, the Slurm batch script as one array task; rerunning it resumes
/// the point from its last checkpoint.
pub fn point_command(
    exe: &Path,
    dir: &Path,
    p: &Point,
    threads: usize,
    device: Option<&str>,
    nproc: usize,
) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = vec![exe.into(), "train".into(), "--resume".into(), "--spec".into()];
    argv.extend([spec_file(dir, p).into(), "--out".into(), point_dir(dir, p).into()]);
    argv.extend(["--threads".into(), threads.to_string().into()]);
    if let Some(d) = device {
        argv.extend(["--device".into(), d.into()]);
    }
    if nproc > 1 {
        argv.extend(["--nproc".into(), nproc.to_string().into()]);
    }
    argv
}

/// Everything a summary row says about a point's architecture and cost.
pub fn cost(p: &Point) -> (usize, f64, f64) {
    let m = &p.spec.model;
    let t = &p.spec.train;
    let tokens = (t.steps * t.batch_size * t.context * t.grad_accum) as f64;
    (
        param_count(m),
        flops::attention_flops_per_token(m, t.context),
        flops::train_flops_per_token(m, t.context) * tokens,
    )
}

//! Where an experiment's points train, and what can be read back from its
//! directory alone.
//!
//! - `--launcher local` (the default) trains points as child processes here,
//!   `--jobs N` at a time or one per `--devices` entry; `--launcher slurm`
//!   writes a batch script and submits the grid as one job array
//!   (`src/slurm.rs`). Both run the same command line per point
//!   (`experiments::point_command`), so points finished anywhere mix freely.
//! - `grid.json` records the grid (kind, budget policy, points) beside the
//!   points' specs, so `gda status <dir>` and `gda sweep --collect <dir>` need
//!   nothing but the directory.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::config::{BudgetPolicy, Spec};
use crate::error::{input, GdaError};
use crate::experiments::{self, Kind, Point, RunOptions, Status, Variant};
use crate::report;
use crate::slurm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Launcher {
    /// Child processes on this machine.
    Local,
    /// One Slurm job array task per point.
    Slurm,
}

/// Where the points of a sweep, ablation or growth comparison train.
#[derive(Debug, Clone, Args)]
pub struct LauncherArgs {
    /// Where points train: local (child processes here) or slurm (a job array, one task per point).
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    pub launcher: Launcher,
    /// Local: train one point per device at once, e.g. cuda:0,cuda:1 (cpu,cpu: CPU thread groups, threads split).
    #[arg(long, value_delimiter = ',', value_name = "DEV,...", conflicts_with = "jobs")]
    pub devices: Vec<String>,
    /// Slurm: partition of the jobs (sbatch --partition).
    #[arg(long, help_heading = "Slurm (--launcher slurm)")]
    pub partition: Option<String>,
    /// Slurm: account charged (sbatch --account).
    #[arg(long, help_heading = "Slurm (--launcher slurm)")]
    pub account: Option<String>,
    /// Slurm: time limit of each point (sbatch --time); a point stopped by it resumes when resubmitted.
    #[arg(long, value_name = "HH:MM:SS", help_heading = "Slurm (--launcher slurm)")]
    pub time: Option<String>,
    /// Slurm: GPUs per point (sbatch --gres=gpu:N).
    #[arg(long, value_name = "N", help_heading = "Slurm (--launcher slurm)")]
    pub gpus_per_run: Option<usize>,
    /// Slurm: CPUs per point (sbatch --cpus-per-task; also its training threads). Default: train.threads, or 1.
    #[arg(long, value_name = "N", help_heading = "Slurm (--launcher slurm)")]
    pub cpus_per_run: Option<usize>,
    /// Slurm: memory per point (sbatch --mem), e.g. 8G.
    #[arg(long, value_name = "SIZE", help_heading = "Slurm (--launcher slurm)")]
    pub mem: Option<String>,
    /// Slurm: an extra line `#SBATCH ARG` in the batch script (repeatable), e.g. --sbatch-arg=--qos=long.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true, help_heading = "Slurm (--launcher slurm)")]
    pub sbatch_args: Vec<String>,
    /// Slurm: write the batch script and print the sbatch command; submit nothing.
    #[arg(long, help_heading = "Slurm (--launcher slurm)")]
    pub no_submit: bool,
}

impl LauncherArgs {
    /// Refuses inconsistent options before anything is written.
    pub fn check(&self) -> Result<(), GdaError> {
        match self.launcher {
            Launcher::Slurm => {
                if !self.devices.is_empty() {
                    return Err(input("--devices is for --launcher local; on Slurm, ask for GPUs with --gpus-per-run"));
                }
                if self.cpus_per_run == Some(0) {
                    return Err(input("--cpus-per-run 0 is not allowed; allowed: a positive count"));
                }
                if !self.no_submit && slurm::which("sbatch").is_none() {
                    return Err(input(
                        "--launcher slurm: sbatch is not on PATH (is this a Slurm login node?); nothing was written or submitted. Pass --no-submit to write the batch script without submitting it",
                    ));
                }
            }
            Launcher::Local => {
                let slurm_only = [
                    ("--partition", self.partition.is_some()),
                    ("--account", self.account.is_some()),
                    ("--time", self.time.is_some()),
                    ("--gpus-per-run", self.gpus_per_run.is_some()),
                    ("--cpus-per-run", self.cpus_per_run.is_some()),
                    ("--mem", self.mem.is_some()),
                    ("--sbatch-arg", !self.sbatch_args.is_empty()),
                    ("--no-submit", self.no_submit),
                ];
                if let Some((flag, _)) = slurm_only.iter().find(|(_, given)| *given) {
                    return Err(input(format!("{flag} is an option of --launcher slurm")));
                }
                for d in &self.devices {
                    crate::device::select(d).map_err(|m| input(format!("--devices: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// Points trained at once by the local launcher.
    pub fn concurrency(&self, jobs: usize) -> usize {
        if self.devices.is_empty() { jobs.max(1) } else { self.devices.len() }
    }
}

/// An experiment's grid with what its summary needs.
pub struct Grid {
    pub kind: Kind,
    pub policy: BudgetPolicy,
    /// Growth comparisons: the parameters of the source model.
    pub source_parameters: Option<usize>,
    pub points: Vec<Point>,
}

pub const GRID_FILE: &str = "grid.json";

#[derive(Serialize, Deserialize)]
struct GridFile {
    kind: Kind,
    policy: BudgetPolicy,
    source_parameters: Option<usize>,
    /// In training order; each point's spec is `specs/<name>.toml`.
    points: Vec<PointEntry>,
}

#[derive(Serialize, Deserialize)]
struct PointEntry {
    name: String,
    variant: Variant,
    requested: Option<usize>,
    seed: u64,
}

/// What a summary found.
pub struct Summary {
    pub markdown: String,
    pub total: usize,
    pub failed: usize,
    /// Points without a result, with their status.
    pub missing: Vec<(String, String)>,
}

impl Grid {
    /// Writes every point's spec and `grid.json` into the experiment directory.
    pub fn record(&self, dir: &Path) -> Result<(), GdaError> {
        let io = |e: std::io::Error| input(format!("results directory {} is not writable: {e}", dir.display()));
        std::fs::create_dir_all(dir.join("specs")).map_err(io)?;
        for p in &self.points {
            experiments::write_spec(dir, p).map_err(io)?;
        }
        let file = GridFile {
            kind: self.kind,
            policy: self.policy,
            source_parameters: self.source_parameters,
            points: self
                .points
                .iter()
                .map(|p| PointEntry { name: p.name.clone(), variant: p.variant, requested: p.requested, seed: p.seed })
                .collect(),
        };
        report::atomic_write(&dir.join(GRID_FILE), &serde_json::to_vec_pretty(&file).expect("grid serialises")).map_err(io)
    }

    /// The grid recorded in an experiment directory.
    pub fn load(dir: &Path) -> Result<Grid, GdaError> {
        let path = dir.join(GRID_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if dir.join("experiment.json").exists() {
                input(format!("{} has no {GRID_FILE} (written by gda since launchers were added): rerun the command that made it once", dir.display()))
            } else {
                input(format!("{} is not a gda experiment directory (no {GRID_FILE}): {e}", dir.display()))
            }
        })?;
        let file: GridFile = serde_json::from_str(&text).map_err(|e| input(format!("{} is not a gda grid file: {e}", path.display())))?;
        let points = file
            .points
            .into_iter()
            .map(|e| {
                let spec = Spec::load(Some(&dir.join("specs").join(format!("{}.toml", e.name))), &[])?;
                Ok(Point { name: e.name, variant: e.variant, requested: e.requested, seed: e.seed, spec })
            })
            .collect::<Result<_, GdaError>>()?;
        Ok(Grid { kind: file.kind, policy: file.policy, source_parameters: file.source_parameters, points })
    }

    /// Rebuilds summary.csv, summary.md and the plots from the run directories.
    pub fn summarize(&self, dir: &Path) -> Result<Summary, GdaError> {
        let rows = report::rows(dir, &self.points);
        let markdown = match self.kind {
            Kind::Sweep => report::sweep_markdown(&rows, experiments::policy_name(self.policy)),
            Kind::Ablate { no_share, equal_params } => {
                let mut v = Vec::new();
                if no_share {
                    v.push(Variant::NoShare);
                }
                if equal_params {
                    v.push(Variant::EqualParams);
                }
                report::ablation_markdown(&rows, &v)
            }
            Kind::Grow { .. } => report::growth_markdown(&rows, dir, self.source_parameters.unwrap_or(0)),
        };
        report::write(dir, &rows, self.policy, &markdown, !matches!(self.kind, Kind::Grow { .. }))?;
        let failed = rows.iter().filter(|r| matches!(r.status, Status::Failed(_))).count();
        let missing = rows
            .iter()
            .filter(|r| !matches!(r.status, Status::Done(_)))
            .map(|r| (r.point.name.clone(), r.status.describe()))
            .collect();
        Ok(Summary { markdown, total: rows.len(), failed, missing })
    }
}

impl Summary {
    /// Prints the table and where it is; Err(PointsFailed) if some points failed.
    pub fn report(&self, dir: &Path) -> Result<(), GdaError> {
        println!("\n{}", self.markdown);
        if !self.missing.is_empty() {
            let list: Vec<String> = self.missing.iter().map(|(n, s)| format!("{n} ({s})")).collect();
            println!("{} of {} points have no result yet: {}", self.missing.len(), self.total, list.join(", "));
        }
        println!("summary: {}", dir.join("summary.csv").display());
        if self.failed > 0 {
            return Err(GdaError::PointsFailed { failed: self.failed, total: self.total, dir: dir.to_path_buf() });
        }
        Ok(())
    }
}

/// Trains (local) or submits (slurm) the points of a grid, after recording
/// it; locally, then rebuilds and prints the summary.
pub fn run(grid: &Grid, opts: &RunOptions, launch: &LauncherArgs) -> anyhow::Result<()> {
    grid.record(&opts.dir)?;
    if launch.launcher == Launcher::Slurm {
        return slurm::launch(grid, opts, launch);
    }
    let outcome = experiments::run_points(&grid.points, opts);
    // The summary is rebuilt from the run directories whatever happened.
    let summary = grid.summarize(&opts.dir)?;
    outcome?;
    Ok(summary.report(&opts.dir)?)
}

/// `gda sweep --collect <dir>`: the summary of whatever points are done.
pub fn collect(dir: &Path) -> anyhow::Result<()> {
    let grid = Grid::load(dir)?;
    let summary = grid.summarize(dir)?;
    Ok(summary.report(dir)?)
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() }
}

/// The process training a point on this host: the one its run lock names,
/// if that process still holds the lock (a dead trainer's pid may have been
/// reused; /proc/locks tells).
fn local_trainer(run: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let (pid, host) = crate::train::lock_holder(run)?;
    if host != hostname() {
        return None;
    }
    let path = run.join(crate::train::LOCK_FILE);
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

/// The newest step a run logged (metrics.csv), else its newest checkpoint's.
fn progress(run: &Path) -> Option<usize> {
    let from_metrics = crate::metrics::read(&run.join("metrics.csv"))
        .ok()
        .and_then(|(_, rows)| rows.last().and_then(|r| r.first()).and_then(|s| s.parse().ok()));
    from_metrics.or_else(|| crate::checkpoint::latest_step(run))
}

/// `gda status <dir>`: one line per point (pending, running, done with its
/// validation loss, failed with the reason), from the run directories and,
/// where the grid was submitted to Slurm and Slurm answers, its queue.
pub fn status(dir: &Path) -> anyhow::Result<()> {
    let grid = Grid::load(dir)?;
    let queue = slurm::Queue::read(dir);
    let width = grid.points.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut resubmit = Vec::new();
    let mut marked_failed = false;
    println!("{} of {} points in {}{}", grid.kind.dir_prefix(), grid.points.len(), dir.display(), queue.describe());
    for p in &grid.points {
        let run = experiments::point_dir(dir, p);
        let step = || progress(&run).map(|s| format!("step {s}/{}", p.spec.train.steps)).unwrap_or_else(|| "starting".into());
        // A queued or live trainer outranks an earlier failure: the point
        // was resubmitted, and must not be offered for resubmission again.
        let (state, detail) = match (experiments::status(dir, p), queue.task(&p.name), local_trainer(&run)) {
            (Status::Done(s), _, _) => ("done", format!("{} | {} steps | {:.1}s", s.quality(), s.steps, s.elapsed_s)),
            (_, Some(t), _) if t.is_running() => ("running", format!("{} (Slurm {} on {})", step(), t.id(), t.node)),
            (_, Some(t), _) if t.is_waiting() => ("pending", format!("queued as Slurm {} ({})", t.id(), t.reason)),
            (_, _, Some(pid)) => ("running", format!("{} (pid {pid})", step())),
            (Status::Failed(reason), _, None) => {
                resubmit.push(p.name.as_str());
                marked_failed = true;
                ("failed", reason)
            }
            (other, Some(t), None) => {
                resubmit.push(p.name.as_str());
                let at = match other {
                    Status::Started(s) => format!("its checkpoint at step {s} is kept; a resubmit resumes from it"),
                    _ => "no checkpoint was written".into(),
                };
                ("failed", format!("Slurm task {} ended {} before the point finished; {at}", t.id(), t.state))
            }
            (Status::Started(s), None, None) => ("pending", format!("stopped at step {s}; the next run resumes from its checkpoint")),
            (_, None, None) => ("pending", String::new()),
        };
        *counts.entry(state).or_default() += 1;
        println!("{:width$}  {state:8} {detail}", p.name);
    }
    let counts: Vec<String> = ["done", "running", "pending", "failed"].iter().map(|s| format!("{} {s}", counts.get(s).copied().unwrap_or(0))).collect();
    println!("{}", counts.join(", "));
    if !resubmit.is_empty() {
        println!("{}", slurm::resubmit_hint(dir, grid.kind.dir_prefix(), &resubmit, marked_failed));
    }
    Ok(())
}

/// The absolute form of a path (the batch script must not depend on the
/// directory sbatch is run from).
pub fn absolute(p: &Path) -> Result<PathBuf, GdaError> {
    std::path::absolute(p).map_err(|e| input(format!("{}: {e}", p.display())))
}

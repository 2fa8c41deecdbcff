//! Arguments several subcommands share, and their conversion into the
//! plain option structs the rest of gda takes.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::{Spec, TaskKind};
use crate::data::detect::{self, Detected};
use crate::data::{corpus_path, Format};
use crate::device;
use crate::error::{input, GdaError};
use crate::experiment::{slurm, Launcher, RunOptions, SlurmOptions};
use crate::util::fs::absolute;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherArg {
    /// Child processes on this machine.
    Local,
    /// One Slurm job array task per point.
    Slurm,
}

/// Where the points of a sweep, ablation or growth comparison train.
#[derive(Debug, Clone, Args)]
pub struct LauncherArgs {
    /// Where points train: local (child processes here) or slurm (a job array, one task per point).
    #[arg(long, value_enum, default_value_t = LauncherArg::Local)]
    pub launcher: LauncherArg,
    /// Local: train one point per device at once, e.g. cuda:0,cuda:1 (cpu,cpu: CPU thread groups, threads split).
    #[arg(long, value_delimiter = ',', value_name = "DEV,...", conflicts_with = "jobs")]
    pub devices: Vec<String>,
    /// Train each point data-parallel on N ranks: `gda train --nproc N` locally, `srun` with N tasks in each Slurm array task.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nproc_per_point: usize,
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
    #[arg(
        long = "sbatch-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        help_heading = "Slurm (--launcher slurm)"
    )]
    pub sbatch_args: Vec<String>,
    /// Slurm: write the batch script and print the sbatch command; submit nothing.
    #[arg(long, help_heading = "Slurm (--launcher slurm)")]
    pub no_submit: bool,
}

impl LauncherArgs {
    /// Refuses inconsistent options before anything is written.
    pub fn check(&self) -> Result<(), GdaError> {
        if self.nproc_per_point == 0 {
            return Err(input("--nproc-per-point 0 is not allowed; allowed: a positive count of ranks"));
        }
        match self.launcher {
            LauncherArg::Slurm => {
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
            LauncherArg::Local => {
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
                    device::select(d).map_err(|m| input(format!("--devices: {m}")))?;
                }
            }
        }
        Ok(())
    }

    /// Points trained at once by the local launcher.
    pub fn concurrency(&self, jobs: usize) -> usize {
        if self.devices.is_empty() {
            jobs.max(1)
        } else {
            self.devices.len()
        }
    }

    /// How to train the points of an experiment in `dir`.
    pub fn run_options(&self, dir: PathBuf, jobs: usize, threads: usize, retry_failed: bool) -> RunOptions {
        let launcher = match self.launcher {
            LauncherArg::Local => Launcher::Local,
            LauncherArg::Slurm => Launcher::Slurm,
        };
        let slurm = SlurmOptions {
            partition: self.partition.clone(),
            account: self.account.clone(),
            time: self.time.clone(),
            gpus_per_run: self.gpus_per_run,
            cpus_per_run: self.cpus_per_run,
            mem: self.mem.clone(),
            sbatch_args: self.sbatch_args.clone(),
            no_submit: self.no_submit,
        };
        RunOptions {
            dir,
            jobs,
            threads,
            retry_failed,
            devices: self.devices.clone(),
            launcher,
            slurm,
            nproc_per_point: self.nproc_per_point,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Experiment spec (TOML); default: the built-in default spec.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Override a spec key, e.g. --set train.steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Data to train on instead of data.corpus: text (file or directory), a prepared directory, or nanoGPT/llm.c shards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N (overrides train.device).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads, 0 = all cores (overrides train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl SpecArgs {
    /// The spec with `--set`, `--device`, `--threads` and `--data` applied.
    pub fn load(&self, fallback: Option<PathBuf>) -> anyhow::Result<Spec> {
        let mut overrides = self.set.clone();
        if let Some(d) = &self.device {
            overrides.push(format!("train.device=\"{d}\""));
        }
        if let Some(t) = self.threads {
            overrides.push(format!("train.threads={t}"));
        }
        // --data is recorded in the spec as an absolute data.corpus, so that
        // children, resumes and `gda eval` read the same text.
        let data = match &self.data {
            Some(d) => Some(absolute(d).map_err(|e| input(format!("--data {}: {e}", d.display())))?),
            None => None,
        };
        if let Some(abs) = &data {
            overrides.push(format!("data.corpus={}", toml::Value::String(abs.to_string_lossy().into_owned())));
        }
        let path = self.spec.clone().or(fallback);
        let mut spec = Spec::load(path.as_deref(), &overrides)?;
        if let (Some(d), Some(abs)) = (&self.data, &data) {
            if spec.data.task != TaskKind::Text {
                return Err(input(format!(
                    "--data {} does not apply: data.task = \"{}\" generates its examples; allowed: --data with data.task = \"text\"",
                    d.display(),
                    spec.data.task.name()
                ))
                .into());
            }
            corpus_path(&abs.to_string_lossy())?;
        }
        // llm.c shards hold GPT-2 tokens and say nothing else about their
        // tokenizer: unless the spec names one, they are read as GPT-2 (the
        // manifest says it was assumed), so a user can point at them as they are.
        if spec.data.task == TaskKind::Text && !Spec::sets(path.as_deref(), &overrides, "data.tokenizer") {
            let shards = corpus_path(&spec.data.corpus).and_then(|p| detect::detect(&p));
            if let Ok(Detected::Shards(Format::Llmc, ..)) = shards {
                overrides.push("data.tokenizer=\"gpt2\"".into());
                spec = Spec::load(path.as_deref(), &overrides)?;
            }
        }
        Ok(spec)
    }
}

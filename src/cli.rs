//! Command-line interface (clap derive) and the dispatch of each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Spec;
use crate::error::input;
use crate::train::{self, TrainOptions};

#[derive(Debug, Parser)]
#[command(name = "gda", version, about = "Grouped Differential Attention experiments on libtorch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model from a spec and write a run directory.
    Train(TrainArgs),
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Experiment spec (TOML); default: the built-in default spec.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Override a spec key, e.g. --set train.steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Text file or directory to train on instead of data.corpus.
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
    /// The spec with `--set`, `--device` and `--threads` applied.
    pub fn load(&self, fallback: Option<PathBuf>) -> anyhow::Result<Spec> {
        let mut overrides = self.set.clone();
        if let Some(d) = &self.device {
            overrides.push(format!("train.device=\"{d}\""));
        }
        if let Some(t) = self.threads {
            overrides.push(format!("train.threads={t}"));
        }
        let path = self.spec.clone().or(fallback);
        Ok(Spec::load(path.as_deref(), &overrides)?)
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Run directory (default: <output.dir>/<name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in the run directory from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            // `--resume --run-dir D` without --spec continues D with D's own spec.
            let saved = args.run_dir.as_ref().map(|d| d.join("spec.toml")).filter(|p| args.resume && p.is_file());
            if args.resume && args.spec.spec.is_none() && saved.is_none() {
                if let Some(d) = &args.run_dir {
                    return Err(input(format!("{} holds no run to resume (no spec.toml); pass --spec to start it", d.display())).into());
                }
            }
            let spec = args.spec.load(saved)?;
            let opts = TrainOptions { run_dir: args.run_dir, resume: args.resume, data: args.spec.data.clone() };
            let s = train::train(&spec, &opts)?;
            println!(
                "done: {} | {} steps | {} params | val loss {:.4} | val bpb {:.4} | {:.0} tok/s | {:.1}s | {}",
                s.name,
                s.steps,
                s.parameters,
                s.val_loss,
                s.val_bpb,
                s.tokens_per_s,
                s.elapsed_s,
                s.run_dir.display()
            );
            Ok(())
        }
    }
}

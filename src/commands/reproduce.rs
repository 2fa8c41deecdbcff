//! `gda reproduce`: the paper's whole study in one resumable command (study).

use std::path::PathBuf;

use clap::Args;

use super::args::LauncherArgs;
use crate::experiment::slurm::sh_quote;
use crate::study::{self, StudyOptions};

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// A shipped preset (smoke, cpu, gpu, cluster) or the path of a preset file.
    #[arg(long, default_value = "cpu")]
    pub preset: String,
    /// A spec replacing the preset's model, data and training (its [study] table stays).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Override a spec key, or a study key as study.KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A scaling-grid axis of the scan, e.g. --grid model.d_model=64,128 (repeatable);
    /// claims 1, 2 and 5 are then judged per grid cell.
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Benchmark tasks, NAME=PATH or a directory of NAME.jsonl (default: two
    /// tasks built from the corpus's held-out split).
    #[arg(long, value_delimiter = ',', value_name = "NAME=PATH|DIR,...")]
    pub tasks: Vec<String>,
    /// The study directory (default: <output.dir>/reproduce-<preset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print every stage's points, FLOPs and estimated time; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Points trained at once (CPU threads are split between them; one per GPU).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
    /// Train points recorded as failed again.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub launch: LauncherArgs,
}

pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    args.launch.check()?;
    let rerun = std::env::args_os().map(|a| sh_quote(&a)).collect::<Vec<_>>().join(" ");
    // Each stage's directory is set by the study; the threads by each point's spec.
    let run = args.launch.run_options(PathBuf::new(), args.jobs, 0, args.retry_failed);
    let opts = StudyOptions {
        preset: args.preset,
        spec: args.spec,
        set: args.set,
        grid: args.grid,
        tasks: args.tasks,
        out: args.out,
        dry_run: args.dry_run,
        concurrency: args.launch.concurrency(args.jobs),
        run,
        rerun,
    };
    Ok(study::run(&opts)?)
}

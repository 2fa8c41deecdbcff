//! `gda train`: one model from a spec into a run directory.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::args::SpecArgs;
use crate::dist::{self, launch, Launch};
use crate::error::input;
use crate::report::units::human_count;
use crate::train::{self, RunSummary, TrainOptions, LOSS_CURVE_FILE};
use crate::util::out::outln;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Run directory to write, or with --resume to continue (default: <output.dir>/<name>).
    #[arg(long, alias = "run-dir", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in the run directory from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Continue from this checkpoint of the run (step-N, N, or its path)
    /// instead of the newest, e.g. when the newest is damaged; implies
    /// --resume. The checkpoints after it move into checkpoints/set-aside/.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume_from: Option<String>,
    /// Train data-parallel on N processes of this machine (like `torchrun
    /// --standalone --nproc-per-node N`); the trajectory does not depend on N.
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,
    /// Seconds a rank waits for its peers (rendezvous, each all-reduce)
    /// before it exits with code 10; it must cover rank 0's evaluation and
    /// checkpoint, which the other ranks wait for. A peer that dies or stops
    /// answering (a frozen node) is found sooner, by the heartbeat: within 30 s.
    #[arg(long, value_name = "SECS", default_value_t = dist::DEFAULT_TIMEOUT.as_secs())]
    pub dist_timeout: u64,
}

pub fn run(mut args: TrainArgs) -> anyhow::Result<()> {
    args.resume |= args.resume_from.is_some();
    // `--resume --out D` without --spec continues D with D's own spec.
    let saved = args.out.as_ref().map(|d| d.join("spec.toml")).filter(|p| args.resume && p.is_file());
    if args.resume && args.spec.spec.is_none() && saved.is_none() {
        if let Some(d) = &args.out {
            return Err(input(format!(
                "{} holds no run to resume (no spec.toml); pass --spec to start it",
                d.display()
            ))
            .into());
        }
    }
    let spec = args.spec.load(saved)?;
    let timeout = Duration::from_secs(args.dist_timeout.max(1));
    let launch = Launch::from_env()?;
    if let Some(n) = args.nproc.filter(|&n| n != 1) {
        if launch.is_some() {
            return Err(input(format!(
                "--nproc {n} in a process that is already a rank (WORLD_SIZE or SLURM_PROCID is set): let torchrun or srun start the ranks, or use --nproc alone"
            ))
            .into());
        }
        if n == 0 {
            return Err(input("--nproc must be at least 1").into());
        }
        if !spec.train.batch_size.is_multiple_of(n) {
            return Err(spec
                .error(
                    "train.batch_size",
                    format!(
                        "{} is not a multiple of --nproc {n}: each rank takes an equal slice of every micro-batch",
                        spec.train.batch_size
                    ),
                )
                .into());
        }
        let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
        dist::launch::local(n, &launch::without_nproc(&argv), timeout, train::interrupted)?;
        return Ok(());
    }
    let rank = launch.as_ref().map_or(0, |l| l.rank);
    let opts = TrainOptions {
        run_dir: args.out,
        resume: args.resume,
        resume_from: args.resume_from,
        parent: None,
        dist: launch,
        dist_timeout: Some(timeout),
    };
    let s = train::train(&spec, &opts)?;
    if rank == 0 {
        print_done(&s);
    }
    Ok(())
}

/// The closing lines of a finished run: its result, then where it is and
/// what to run next.
pub fn print_done(s: &RunSummary) {
    let dir = s.run_dir.display();
    outln!(
        "done: {} | {} steps | {} params | {} | {:.0} tok/s | {:.1}s",
        s.name,
        s.steps,
        human_count(s.parameters),
        s.quality(),
        s.tokens_per_s,
        s.elapsed_s,
    );
    let curve = s.run_dir.join(LOSS_CURVE_FILE);
    let curve = if curve.is_file() { format!(" | loss curve {}", curve.display()) } else { String::new() };
    outln!("run dir {dir} | metrics {}{curve} | next: gda eval {dir}", s.run_dir.join("metrics.csv").display());
}

//! `gda train`: one model from a spec into a run directory.

use std::path::PathBuf;

use clap::Args;

use super::args::SpecArgs;
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
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
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
    let opts = TrainOptions { run_dir: args.out, resume: args.resume, parent: None };
    let s = train::train(&spec, &opts)?;
    print_done(&s);
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

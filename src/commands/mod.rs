//! The command line: clap types live here and nowhere below. Each
//! subcommand has one file that parses its arguments into the plain option
//! structs of the layers below and runs it.

mod args;
mod bench;
mod data;
mod device_check;
mod eval;
mod export;
mod grow;
pub mod help;
mod report;
mod reproduce;
mod sample;
mod status;
mod sweep;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use self::bench::BenchArgs;
use self::data::DataArgs;
use self::device_check::DeviceCheckArgs;
use self::eval::EvalArgs;
use self::export::ExportArgs;
use self::grow::GrowArgs;
use self::report::ReportArgs;
use self::reproduce::ReproduceArgs;
use self::sample::SampleArgs;
use self::status::StatusArgs;
use self::sweep::{AblateArgs, SweepArgs};
use self::train::TrainArgs;

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
    /// Train one model per signal:noise ratio (and seed) and summarise them.
    Sweep(SweepArgs),
    /// The repetition ablation: shared noise heads against their no-share twin
    /// (and the equal-parameter control), per ratio and seed.
    Ablate(AblateArgs),
    /// The paper's whole study in one resumable command: scan, ablation,
    /// growth, retrieval and benchmarks, then one report with a verdict per claim.
    Reproduce(ReproduceArgs),
    /// Grow a trained model into a larger one computing the same function,
    /// then keep training it (or compare growth strategies with --compare).
    Grow(GrowArgs),
    /// Score trained runs: held-out language modelling at several context
    /// lengths, retrieval accuracy (MQAR, NIAH) and attention analysis.
    Eval(EvalArgs),
    /// Continue a prompt with a trained text run: incremental decoding with a
    /// KV cache; greedy at --temperature 0, the same text for the same --seed.
    Sample(SampleArgs),
    /// Export a trained run for other tools: a Hugging Face transformers
    /// folder (model, modeling code, tokenizer, model card).
    Export(ExportArgs),
    /// Redraw the tables and plots of a run, an experiment or an eval directory.
    Report(ReportArgs),
    /// Time training steps of a spec and print tokens/s as JSON (used by
    /// scripts/bench.sh, which compares against PyTorch).
    Bench(BenchArgs),
    /// Show each point of a sweep, ablation or growth comparison: pending,
    /// running, done (with its validation loss) or failed (with the reason),
    /// from the run directories and, for Slurm jobs, squeue/sacct.
    Status(StatusArgs),
    /// Numerical checks on one device for scripts/gpu/check.sh (JSON out).
    #[command(hide = true)]
    DeviceCheck(DeviceCheckArgs),
    /// Prepare text into token shards once, train a BPE tokenizer, inspect a
    /// data directory (gda's own, nanoGPT or llm.c shards).
    Data(DataArgs),
}

impl Command {
    /// Whether the command trains (and so checkpoints on an interrupt or a
    /// closed stdout) rather than only reading and reporting.
    pub fn trains(&self) -> bool {
        match self {
            Command::Train(_) | Command::Grow(_) => true,
            Command::Sweep(a) => a.collect.is_none() && !a.grid.dry_run,
            Command::Ablate(a) => !a.grid.dry_run,
            Command::Reproduce(a) => !a.dry_run,
            Command::Data(_)
            | Command::Eval(_)
            | Command::Sample(_)
            | Command::Export(_)
            | Command::Report(_)
            | Command::Bench(_)
            | Command::Status(_)
            | Command::DeviceCheck(_) => false,
        }
    }
}

/// The command line's definition, with each subcommand's examples and exit
/// codes after its `--help`.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in names {
        if let Some(text) = help::after_help(&name) {
            cmd = cmd.mut_subcommand(&name, |c| c.after_help(text));
        }
    }
    cmd
}

/// Parses the process's arguments (exits 2 with clap's message when they are wrong).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command; errors carry their exit code (`GdaError::exit_code`).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Sweep(args) => sweep::run_sweep(args),
        Command::Ablate(args) => sweep::run_ablate(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Grow(args) => grow::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Status(args) => status::run(args),
        Command::DeviceCheck(args) => device_check::run(args),
        Command::Data(args) => data::run(args),
    }
}

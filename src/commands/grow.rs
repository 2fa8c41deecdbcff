//! `gda grow`: grow a trained model and keep training it, or compare
//! growth strategies (`--compare`).

use std::path::PathBuf;

use clap::Args;

use super::args::{LauncherArg, LauncherArgs};
use super::train::print_done;
use crate::config::Spec;
use crate::error::input;
use crate::experiment::growth::{self, GrowthOptions, Op, Setup};
use crate::train::run_dir::find_source;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("op").required(true).args(["signal_only", "uniform", "width", "depth", "compare"])))]
pub struct GrowArgs {
    /// Run directory (its newest checkpoint) or checkpoint directory to grow from.
    #[arg(value_name = "DIR", required_unless_present = "from_flag")]
    pub from: Option<PathBuf>,
    /// The older spelling of the DIR argument.
    #[arg(long = "from", value_name = "DIR", hide = true, conflicts_with = "from")]
    pub from_flag: Option<PathBuf>,
    /// Clone signal heads only (the paper's proposal): --per-group new heads in every group.
    #[arg(long)]
    pub signal_only: bool,
    /// Clone whole groups (signal heads with their noise head and K/V), keeping G: --groups new groups.
    #[arg(long)]
    pub uniform: bool,
    /// HyperCloning width growth by this factor (d_model, MLP and every head count).
    #[arg(long, value_name = "N")]
    pub width: Option<usize>,
    /// Depth growth: after every block a copy whose output projections are zero.
    #[arg(long)]
    pub depth: bool,
    /// Train signal-only growth, uniform growth matched on added parameters
    /// and (with --scratch) the grown architecture from scratch; summarise them.
    #[arg(long)]
    pub compare: bool,
    /// With --compare: also train the large model from a random init.
    #[arg(long)]
    pub scratch: bool,
    /// Signal heads added per group (default: G, doubling every group).
    #[arg(long)]
    pub per_group: Option<usize>,
    /// Groups cloned by uniform growth (default: all, doubling; with
    /// --compare: the count closest to signal-only growth's added parameters).
    #[arg(long)]
    pub groups: Option<usize>,
    /// Symmetric ±noise on cloned blocks with this signal-to-noise ratio
    /// (std of the noise = std of the block / SNR); keeps the function exact.
    #[arg(long, value_name = "SNR")]
    pub clone_noise: Option<f64>,
    /// Largest allowed |logit difference| between source and grown model.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
    /// Spec for the continued training (default: the source run's); its
    /// model section is replaced by the grown model.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Override a key of the training spec, e.g. --set train.steps=200 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory of the grown model (default: <output.dir>/<source name>-<op>);
    /// with --compare, the experiment directory (default: <output.dir>/grow-<source name>).
    #[arg(long, alias = "run-dir", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// CPU threads (overrides train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// With --compare: points trained at once.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
    /// With --compare: train points recorded as failed again.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub launch: LauncherArgs,
}

pub fn run(args: GrowArgs) -> anyhow::Result<()> {
    if !args.compare
        && (args.launch.launcher != LauncherArg::Local || !args.launch.devices.is_empty() || args.retry_failed)
    {
        return Err(input(
            "--launcher, --devices and --retry-failed apply to gda grow --compare, which trains several runs",
        )
        .into());
    }
    args.launch.check()?;
    let from = args.from.as_ref().or(args.from_flag.as_ref()).expect("clap requires DIR or --from");
    let src = find_source(from)?;
    let base = match &args.spec {
        Some(p) => Some(Spec::load(Some(p), &[])?),
        None => None,
    };
    let opts = GrowthOptions {
        per_group: args.per_group,
        groups: args.groups,
        clone_noise: args.clone_noise,
        tolerance: args.tolerance,
        set: args.set.clone(),
        threads: args.threads,
        scratch: args.scratch,
    };
    let setup = Setup::new(src, base, &opts)?;
    if args.compare {
        let dir = args.out.clone().unwrap_or_else(|| setup.default_compare_dir());
        let run = args.launch.run_options(dir, args.jobs, setup.base.train.threads, args.retry_failed);
        return Ok(growth::compare(&setup, &opts, &run)?);
    }
    let op = if args.signal_only {
        Op::SignalOnly
    } else if args.uniform {
        Op::Uniform
    } else if let Some(n) = args.width {
        Op::Width(n)
    } else {
        Op::Depth
    };
    let s = growth::grow_one(&setup, &opts, op, args.out.clone())?;
    print_done(&s);
    Ok(())
}

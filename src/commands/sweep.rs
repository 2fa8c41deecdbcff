//! `gda sweep` and `gda ablate`: a grid of points trained locally or on
//! Slurm, and `gda sweep --collect`.

use std::path::PathBuf;

use clap::Args;

use super::args::{LauncherArg, LauncherArgs, SpecArgs};
use crate::data::Dataset;
use crate::error::{input, GdaError};
use crate::experiment::{self, grid, plan, Grid, Kind};
use crate::util::out::outln;

#[derive(Debug, Args)]
pub struct GridArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Signal:noise ratios G, e.g. 1,2,3,4,8 (overrides sweep.ratios).
    #[arg(long, value_delimiter = ',', value_name = "G,...")]
    pub ratios: Option<Vec<usize>>,
    /// Budget policy: signal (H_s fixed) or total (H_s + H_n fixed); overrides sweep.match.
    #[arg(long = "match", value_name = "POLICY", value_parser = ["signal", "total"])]
    pub policy: Option<String>,
    /// The seeds every point trains with, e.g. 1,5,9 (--seeds 42 is the one seed 42).
    #[arg(long, value_delimiter = ',', value_name = "S,...", conflicts_with = "num_seeds")]
    pub seeds: Option<Vec<u64>>,
    /// Train every point with N seeds: seed, seed+1, ..., seed+N-1 (`seed` from the spec).
    #[arg(long, value_name = "N")]
    pub num_seeds: Option<u64>,
    /// Train the nearest valid allocation when a ratio cannot be met exactly.
    #[arg(long)]
    pub nearest: bool,
    /// A scaling-grid axis: every point at each value of a spec key, e.g.
    /// --grid model.d_model=128,256 (repeatable: the product of the axes;
    /// sets that key's values in [sweep.grid]).
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Print the grid with parameters, FLOPs and estimated time; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Points trained at once (CPU threads are split between them; one per GPU).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
    /// Experiment directory (default: <output.dir>/<sweep|ablate>-<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train points recorded as failed again.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub launch: LauncherArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Add a plain-Transformer point matched on parameters (overrides sweep.baseline).
    #[arg(long)]
    pub baseline: bool,
    /// Build the summary of the experiment directory (--out, or the default)
    /// from the points done so far (wherever they ran) and list the missing
    /// ones; train nothing. (`--collect DIR` is the older spelling of `--collect --out DIR`.)
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with_all = ["ratios", "seeds", "num_seeds", "dry_run", "baseline", "grid"])]
    pub collect: Option<Option<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct AblateArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Train each ratio's no-share twin: every signal head its own noise head.
    #[arg(long)]
    pub no_share: bool,
    /// Train each ratio's equal-parameter control: noise subtracted from one signal head per group.
    #[arg(long)]
    pub equal_params: bool,
}

pub fn run_sweep(args: SweepArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.collect {
        let dir = match dir.as_ref().or(args.grid.out.as_ref()) {
            Some(d) => d.clone(),
            None => {
                let spec = args.grid.spec.load(None)?;
                spec.output.dir.join(format!("{}-{}", Kind::Sweep.dir_prefix(), spec.name))
            }
        };
        return Ok(grid::collect(&dir)?);
    }
    let mut overrides = Vec::new();
    if args.baseline {
        overrides.push("sweep.baseline=true".to_string());
    }
    run_grid(&args.grid, Kind::Sweep, overrides)
}

pub fn run_ablate(args: AblateArgs) -> anyhow::Result<()> {
    if !args.no_share && !args.equal_params {
        return Err(input(
            "gda ablate needs --no-share, --equal-params or both: the twins to train next to each shared model",
        )
        .into());
    }
    run_grid(&args.grid, Kind::Ablate { no_share: args.no_share, equal_params: args.equal_params }, Vec::new())
}

/// The seeds of `--seeds` (a list) or `--num-seeds` (a count from `base`).
/// More seeds than any study trains: a typo such as a negative count read
/// as unsigned must be refused, not planned as billions of points.
const MAX_SEEDS: u64 = 10_000;

fn seeds_arg(args: &GridArgs, base: u64) -> Result<Option<Vec<u64>>, GdaError> {
    if let Some(n) = args.num_seeds {
        if n == 0 || n > MAX_SEEDS {
            return Err(input(format!("--num-seeds {n} is not allowed; allowed: a count from 1 to {MAX_SEEDS}")));
        }
        let Some(end) = base.checked_add(n) else {
            return Err(input(format!(
                "--num-seeds {n} from seed {base} passes the largest seed {}; allowed: a smaller count or seed",
                u64::MAX
            )));
        };
        return Ok(Some((base..end).collect()));
    }
    Ok(args.seeds.clone())
}

fn run_grid(args: &GridArgs, kind: Kind, mut overrides: Vec<String>) -> anyhow::Result<()> {
    if let Some(r) = &args.ratios {
        overrides.push(format!("sweep.ratios=[{}]", r.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",")));
    }
    if let Some(p) = &args.policy {
        overrides.push(format!("sweep.match=\"{p}\""));
    }
    if args.nearest {
        overrides.push("sweep.nearest=true".into());
    }
    let mut spec_args = args.spec.clone();
    spec_args.set.extend(overrides);
    let mut spec = spec_args.load(None)?;
    if let Some(seeds) = seeds_arg(args, spec.seed)? {
        spec.sweep.seeds = seeds;
    }
    let cli_keys = spec.set_grid_args(&args.grid)?;
    spec.resolve().map_err(|e| spec.error(&e.key, e.msg)).map_err(|e| from_cli(e, &cli_keys))?;
    let points = experiment::grid(&spec, kind).map_err(|e| from_cli(e, &cli_keys))?;
    let dir = args.out.clone().unwrap_or_else(|| spec.output.dir.join(format!("{}-{}", kind.dir_prefix(), spec.name)));
    let corpus = Dataset::load(&spec)?;
    args.launch.check()?;
    plan::preflight(&spec, &points, args.dry_run, args.launch.launcher == LauncherArg::Local)?;
    if args.dry_run {
        plan::dry_run(&spec, &points, &corpus, args.launch.concurrency(args.jobs), None)?;
        return Ok(());
    }
    drop(corpus);
    experiment::open_dir(&dir, &spec, kind)?;
    // The seeds are spelled out so that a count mistaken for a seed (or the
    // reverse) shows before anything trains.
    // The points' own seeds: the spec's `seed` when the sweep names none.
    let mut seeds: Vec<u64> = points.iter().map(|p| p.spec.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let seeds = seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let grid =
        if spec.sweep.grid.is_empty() { String::new() } else { format!("; grid {}", plan::describe_grid(&spec)) };
    outln!("{} of {} points into {} (seeds {seeds}{grid})", kind.dir_prefix(), points.len(), dir.display());
    let opts = args.launch.run_options(dir, args.jobs, spec.train.threads, args.retry_failed);
    let grid = Grid { kind, policy: spec.sweep.policy, source_parameters: None, points };
    Ok(grid::run(&grid, &opts)?)
}

/// An error about `sweep.grid.KEY` where KEY came from `--grid`: said of `--grid`.
fn from_cli(e: GdaError, cli_keys: &[String]) -> GdaError {
    match e {
        GdaError::Spec { key: Some(k), msg, .. }
            if k.strip_prefix("sweep.grid.").is_some_and(|k| cli_keys.iter().any(|c| c == k)) =>
        {
            let key = k.trim_start_matches("sweep.grid.").to_string();
            GdaError::Spec { file: "--grid".into(), key: Some(key), msg }
        }
        other => other,
    }
}

//! `gda sweep` and `gda ablate`: a grid of points trained locally or on
//! Slurm, and `gda sweep --collect`.

use std::path::PathBuf;

use clap::Args;

use super::args::{LauncherArg, LauncherArgs, SpecArgs};
use crate::config::{grid_value_text, parse_grid_arg, AttentionKind, Spec};
use crate::data::Dataset;
use crate::error::{input, GdaError};
use crate::experiment::{self, grid, Grid, Kind, Point};
use crate::report::units::{fmt_duration, human_count, si_flops};
use crate::util::out::outln;
use crate::{device, train};

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
    #[arg(long, default_value_t = 1)]
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
fn seeds_arg(args: &GridArgs, base: u64) -> Result<Option<Vec<u64>>, GdaError> {
    if let Some(n) = args.num_seeds {
        if n == 0 {
            return Err(input("--num-seeds 0 is not allowed; allowed: a count of at least 1"));
        }
        return Ok(Some((base..base + n).collect()));
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
    let cli_keys = grid_args(&args.grid, &mut spec)?;
    spec.resolve().map_err(|e| spec.error(&e.key, e.msg)).map_err(|e| from_cli(e, &cli_keys))?;
    let points = experiment::grid(&spec, kind).map_err(|e| from_cli(e, &cli_keys))?;
    let dir = args.out.clone().unwrap_or_else(|| spec.output.dir.join(format!("{}-{}", kind.dir_prefix(), spec.name)));
    let corpus = Dataset::load(&spec)?;
    args.launch.check()?;
    if args.dry_run || args.launch.launcher == LauncherArg::Local {
        // Refused here, before the experiment directory exists, rather than
        // by each point's trainer. A GPU is checked by each trainer itself
        // (device::check_memory allocates on it).
        device::check_threads(spec.train.threads).map_err(|m| spec.error("train.threads", m))?;
        let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
        if !device.is_cuda() {
            for p in &points {
                // A dry run times steps on smaller batches than training.
                let rows = if args.dry_run { train::estimate_rows(&p.spec) } else { p.spec.train.batch_size };
                train::check_memory(&p.spec, device, rows)?;
            }
        }
    }
    if args.dry_run {
        dry_run(&spec, &points, &corpus, args.launch.concurrency(args.jobs))?;
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
    let grid = if spec.sweep.grid.is_empty() { String::new() } else { format!("; grid {}", describe_grid(&spec)) };
    outln!("{} of {} points into {} (seeds {seeds}{grid})", kind.dir_prefix(), points.len(), dir.display());
    let opts = args.launch.run_options(dir, args.jobs, spec.train.threads, args.retry_failed);
    let grid = Grid { kind, policy: spec.sweep.policy, source_parameters: None, points };
    Ok(grid::run(&grid, &opts)?)
}

fn seeds_of(spec: &Spec) -> usize {
    spec.sweep.seeds.len().max(1)
}

/// Sets each `--grid KEY=V1,V2` axis in the spec's `[sweep.grid]`; returns
/// the keys given that way. A key given twice is refused.
fn grid_args(args: &[String], spec: &mut Spec) -> Result<Vec<String>, GdaError> {
    let mut keys: Vec<String> = Vec::new();
    for a in args {
        let (key, values) =
            parse_grid_arg(a).map_err(|e| GdaError::Spec { file: "--grid".into(), key: Some(e.key), msg: e.msg })?;
        if keys.contains(&key) {
            return Err(GdaError::Spec {
                file: "--grid".into(),
                key: Some(key),
                msg: "is given twice; allowed: each key once, with all its values (--grid KEY=V1,V2,...)".into(),
            });
        }
        spec.sweep.grid.insert(key.clone(), values);
        keys.push(key);
    }
    Ok(keys)
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

/// `model.d_model = 32, 64 × train.lr = 0.001, 0.003`.
fn describe_grid(spec: &Spec) -> String {
    spec.sweep
        .grid
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.iter().map(grid_value_text).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(" × ")
}

/// Prints the grid with each point's allocation and cost, and a time
/// estimate from a few timed steps per architecture; trains nothing.
fn dry_run(spec: &Spec, points: &[Point], corpus: &Dataset, jobs: usize) -> Result<(), GdaError> {
    let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    let threads = |n| device::set_threads(n).map_err(|m| spec.error("train.threads", m));
    let cores = threads(spec.train.threads)?;
    if !device.is_cuda() {
        threads((cores / jobs.max(1)).max(1))?;
    }
    println!("| point | variant | ratio | H_s | H_n | K/V | K2 | heads | head_dim | params | attn MFLOP/tok | train FLOP | est. time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut cache: Vec<(String, f64)> = Vec::new();
    let mut total = 0.0;
    for p in points {
        let m = &p.spec.model;
        let arch = serde_json::to_string(m).expect("config serialises");
        let secs = match cache.iter().find(|c| c.0 == arch) {
            Some(c) => c.1,
            None => {
                let s = train::estimate_seconds(&p.spec, corpus, device);
                cache.push((arch, s));
                s
            }
        };
        total += secs;
        let (params, attn, flops) = experiment::cost(p);
        let gda = m.attention == AttentionKind::Gda;
        let o = |b: bool, v: usize| if b { v.to_string() } else { "–".into() };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
            p.name,
            p.variant.label(),
            p.ratio().map(|r| format!("{r}:1")).unwrap_or_else(|| "–".into()),
            o(gda, m.signal_heads),
            o(gda, m.noise_heads),
            m.kv_heads,
            o(gda, m.noise_kv_heads),
            o(!gda, m.heads),
            m.head_dim,
            human_count(params),
            attn / 1e6,
            si_flops(flops),
            fmt_duration(secs)
        );
    }
    let sw = &spec.sweep;
    let cells = spec.grid_cells().len();
    let variants =
        points.iter().filter(|p| p.requested.is_some()).count() / (cells * sw.ratios.len() * seeds_of(spec)).max(1);
    let baseline = if sw.baseline { format!(" + {} baseline", cells * seeds_of(spec)) } else { String::new() };
    let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    let (ratios, seeds) = (n(sw.ratios.len(), "ratio"), n(seeds_of(spec), "seed"));
    let product = if sw.grid.is_empty() {
        format!("{ratios} × {seeds}")
    } else {
        format!("{} ({}) × {ratios} × {seeds}", n(cells, "grid cell"), describe_grid(spec))
    };
    let variants = if variants > 1 { format!(" × {variants} variants") } else { String::new() };
    let flops: f64 = points.iter().map(|p| experiment::cost(p).2).sum();
    println!("\n{product}{variants}{baseline} = {} points | {} training compute in all", points.len(), si_flops(flops));
    println!(
        "{} points on {} | estimated {} with --jobs {} (from timed steps, evaluation included)",
        points.len(),
        device::describe(device),
        fmt_duration(total / jobs.max(1) as f64),
        jobs.max(1)
    );
    Ok(())
}

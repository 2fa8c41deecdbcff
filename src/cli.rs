//! Command-line interface (clap derive) and the dispatch of each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Spec;
use crate::data::Corpus;
use crate::error::{input, GdaError};
use crate::experiments::{self, Kind, Point, RunOptions, Variant};
use crate::report;
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
    /// Train one model per signal:noise ratio (and seed) and summarise them.
    Sweep(SweepArgs),
    /// The repetition ablation: shared noise heads against their no-share twin
    /// (and the equal-parameter control), per ratio and seed.
    Ablate(AblateArgs),
}

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
    /// Seeds: a count N (seeds seed..seed+N-1) or a list such as 1,5,9.
    #[arg(long, value_name = "N|S,...")]
    pub seeds: Option<String>,
    /// Train the nearest valid allocation when a ratio cannot be met exactly.
    #[arg(long)]
    pub nearest: bool,
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
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Add a plain-Transformer point matched on parameters (overrides sweep.baseline).
    #[arg(long)]
    pub baseline: bool,
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
    /// A copy with the same paths and flags but no overrides.
    pub fn clone_paths(&self) -> SpecArgs {
        SpecArgs { spec: self.spec.clone(), set: Vec::new(), data: self.data.clone(), device: self.device.clone(), threads: self.threads }
    }

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
        Command::Sweep(args) => {
            let mut overrides = Vec::new();
            if args.baseline {
                overrides.push("sweep.baseline=true".to_string());
            }
            run_grid(&args.grid, Kind::Sweep, overrides)
        }
        Command::Ablate(args) => {
            if !args.no_share && !args.equal_params {
                return Err(input("gda ablate needs --no-share, --equal-params or both: the twins to train next to each shared model").into());
            }
            run_grid(&args.grid, Kind::Ablate { no_share: args.no_share, equal_params: args.equal_params }, Vec::new())
        }
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

/// `--seeds`: a count N (seeds `base`..`base`+N−1) or a comma-separated list.
fn parse_seeds(arg: &str, base: u64) -> Result<Vec<u64>, GdaError> {
    let bad = || input(format!("--seeds {arg:?} is not allowed; allowed: a count such as 3, or a list of distinct seeds such as 1,5,9"));
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(bad());
    }
    if !arg.contains(',') {
        let n: u64 = arg.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        return Ok((base..base + n).collect());
    }
    let seeds: Vec<u64> = arg.split(',').map(|s| s.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    Ok(seeds)
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
    let mut spec_args = SpecArgs { set: args.spec.set.clone(), ..args.spec.clone_paths() };
    spec_args.set.extend(overrides);
    let mut spec = spec_args.load(None)?;
    if let Some(s) = &args.seeds {
        spec.sweep.seeds = parse_seeds(s, spec.seed)?;
        spec.resolve().map_err(|e| spec.error(&e.key, e.msg))?;
    }
    if let Some(d) = &args.spec.data {
        // Children read the corpus from their spec, so it must name the path.
        let abs = std::path::absolute(d).map_err(|e| input(format!("{}: {e}", d.display())))?;
        crate::data::corpus_path(&abs.to_string_lossy())?;
        spec.data.corpus = abs.to_string_lossy().into_owned();
    }
    let points = experiments::grid(&spec, kind)?;
    let dir = args.out.clone().unwrap_or_else(|| spec.output.dir.join(format!("{}-{}", kind_name(kind), spec.name)));
    let corpus = Corpus::load(&spec.data, None)?;
    corpus.check_context(&spec)?;
    if args.dry_run {
        dry_run(&spec, &points, &corpus, args.jobs)?;
        return Ok(());
    }
    drop(corpus);
    experiments::open_dir(&dir, &spec, kind)?;
    println!("{} of {} points into {}", kind_name(kind), points.len(), dir.display());
    let opts = RunOptions { dir: dir.clone(), jobs: args.jobs, threads: spec.train.threads, retry_failed: args.retry_failed };
    let outcome = experiments::run_points(&points, &opts);
    // The summary is rebuilt from the run directories whatever happened.
    let rows = report::rows(&dir, &points);
    let markdown = match kind {
        Kind::Sweep => report::sweep_markdown(&rows, experiments::policy_name(spec.sweep.policy)),
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
    };
    report::write(&dir, &rows, spec.sweep.policy, &markdown)?;
    outcome?;
    println!("\n{markdown}");
    println!("summary: {}", dir.join("summary.csv").display());
    let failed = rows.iter().filter(|r| matches!(r.status, experiments::Status::Failed(_))).count();
    if failed > 0 {
        return Err(GdaError::PointsFailed { failed, total: rows.len(), dir }.into());
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sweep => "sweep",
        Kind::Ablate { .. } => "ablate",
    }
}

/// Prints the grid with each point's allocation and cost, and a time
/// estimate from a few timed steps per architecture; trains nothing.
fn dry_run(spec: &Spec, points: &[Point], corpus: &Corpus, jobs: usize) -> Result<(), GdaError> {
    let device = crate::device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    let cores = crate::device::set_threads(spec.train.threads);
    if !device.is_cuda() {
        crate::device::set_threads((cores / jobs.max(1)).max(1));
    }
    println!("| point | variant | ratio | H_s | H_n | K/V | K2 | heads | head_dim | params | attn MFLOP/tok | train PFLOP | est. time |");
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
        let (params, attn, flops) = experiments::cost(p);
        let gda = m.attention == crate::config::AttentionKind::Gda;
        let o = |b: bool, v: usize| if b { v.to_string() } else { "–".into() };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {params} | {:.2} | {:.3} | {} |",
            p.name,
            p.variant.label(),
            p.ratio().map(|r| format!("{r}:1")).unwrap_or_else(|| "–".into()),
            o(gda, m.signal_heads),
            o(gda, m.noise_heads),
            m.kv_heads,
            o(gda, m.noise_kv_heads),
            o(!gda, m.heads),
            m.head_dim,
            attn / 1e6,
            flops / 1e15,
            fmt_secs(secs)
        );
    }
    println!(
        "\n{} points on {} | estimated {} with --jobs {} (from timed steps, evaluation included)",
        points.len(),
        crate::device::describe(device),
        fmt_secs(total / jobs.max(1) as f64),
        jobs.max(1)
    );
    Ok(())
}

fn fmt_secs(s: f64) -> String {
    if s < 120.0 { format!("{s:.0}s") } else if s < 7200.0 { format!("{:.1}min", s / 60.0) } else { format!("{:.1}h", s / 3600.0) }
}

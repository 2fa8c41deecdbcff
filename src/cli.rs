//! Command-line interface (clap derive) and the dispatch of each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Spec;
use crate::data::Dataset;
use crate::error::{input, GdaError};
use crate::experiments::{self, Kind, Point, RunOptions, Variant};
use crate::launcher::{self, Grid, LauncherArgs};
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
    /// Grow a trained model into a larger one computing the same function,
    /// then keep training it (or compare growth strategies with --compare).
    Grow(GrowArgs),
    /// Score trained runs: held-out language modelling at several context
    /// lengths, retrieval accuracy (MQAR, NIAH) and attention analysis.
    Eval(EvalArgs),
    /// Redraw the tables and plots of a run, an experiment or an eval directory.
    Report(ReportArgs),
    /// Time training steps of a spec and print tokens/s as JSON (used by
    /// scripts/bench.sh, which compares against PyTorch).
    Bench(BenchArgs),
    /// Show each point of a sweep, ablation or growth comparison: pending,
    /// running, done (with its validation loss) or failed (with the reason),
    /// from the run directories and, for Slurm jobs, squeue/sacct.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Experiment directory (a sweep's, an ablation's or a growth comparison's).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory, or a sweep/ablation/growth directory (all its points
    /// with a checkpoint); repeatable.
    #[arg(long = "run", value_name = "DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Suites: lm, mqar, niah, attention (default: lm for text runs; the
    /// run's task and attention for task runs).
    #[arg(long = "suite", value_enum, value_delimiter = ',', value_name = "SUITE,...")]
    pub suites: Vec<crate::eval::Suite>,
    /// Context lengths to evaluate at (default: the training context).
    #[arg(long, value_delimiter = ',', value_name = "T,...")]
    pub contexts: Vec<usize>,
    /// Text file or directory the lm suite scores, all of it (default: the run's validation split).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// lm suite: target tokens scored per context (default: train.eval_tokens).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Retrieval examples per context and depth (default: task.eval_examples).
    #[arg(long)]
    pub examples: Option<usize>,
    /// NIAH needle depths, fractions of the haystack (default: 0,0.25,0.5,0.75,1).
    #[arg(long, value_delimiter = ',', value_name = "D,...")]
    pub depths: Vec<f64>,
    /// Override a task.* key of the retrieval generators, e.g. --set task.pairs=16 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where the tables and plots go (default: <DIR>/eval for a single --run).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N (default: the run's train.device).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads, 0 = all cores (default: the run's train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run directory, a sweep/ablation/growth directory, or an eval directory.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Optimizer steps per timed repetition.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also write the resolved spec here (the PyTorch side reads it).
    #[arg(long)]
    pub write_spec: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("op").required(true).args(["signal_only", "uniform", "width", "depth", "compare"])))]
pub struct GrowArgs {
    /// Run directory (its newest checkpoint) or checkpoint directory to grow from.
    #[arg(long)]
    pub from: PathBuf,
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
    /// Run directory of the grown model (default: <output.dir>/<source name>-<op>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// With --compare: experiment directory (default: <output.dir>/grow-<source name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CPU threads (overrides train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// With --compare: points trained at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// With --compare: train points recorded as failed again.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub launch: LauncherArgs,
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
    /// Build the summary of an existing experiment directory from the points
    /// done so far (wherever they ran) and list the missing ones; train nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["ratios", "seeds", "dry_run", "out", "baseline"])]
    pub collect: Option<PathBuf>,
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

#[derive(Debug, Clone, Args)]
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
        let mut spec = Spec::load(path.as_deref(), &overrides)?;
        if let Some(d) = &self.data {
            // Recorded in the spec, so that children, resumes and `gda eval`
            // read the same text.
            if spec.data.task != crate::config::TaskKind::Text {
                return Err(input(format!(
                    "--data {} does not apply: data.task = \"{}\" generates its examples; allowed: --data with data.task = \"text\"",
                    d.display(),
                    spec.data.task.name()
                ))
                .into());
            }
            let abs = launcher::absolute(d)?;
            crate::data::corpus_path(&abs.to_string_lossy())?;
            spec.data.corpus = abs.to_string_lossy().into_owned();
        }
        Ok(spec)
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
        Command::Status(args) => launcher::status(&args.dir),
        Command::Sweep(args) if args.collect.is_some() => launcher::collect(args.collect.as_deref().expect("checked")),
        Command::Sweep(args) => {
            let mut overrides = Vec::new();
            if args.baseline {
                overrides.push("sweep.baseline=true".to_string());
            }
            run_grid(&args.grid, Kind::Sweep, overrides)
        }
        Command::Grow(args) => run_grow(&args),
        Command::Bench(args) => run_bench(&args),
        Command::Eval(args) => {
            let opts = crate::eval::EvalOptions {
                runs: args.runs,
                suites: args.suites,
                contexts: args.contexts,
                data: args.data,
                tokens: args.tokens,
                examples: args.examples,
                depths: args.depths,
                task_set: args.set,
                out: args.out,
                device: args.device,
                threads: args.threads,
            };
            let out = crate::eval::run_eval(&opts)?;
            println!("\n{}", report::eval_report(&out)?);
            println!("tables and plots: {}", out.display());
            Ok(())
        }
        Command::Report(args) => run_report(&args.dir),
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
            let opts = TrainOptions { run_dir: args.run_dir, resume: args.resume, parent: None };
            let s = train::train(&spec, &opts)?;
            print_done(&s);
            Ok(())
        }
    }
}

/// `gda report`: redraws whatever `dir` holds.
fn run_report(dir: &std::path::Path) -> anyhow::Result<()> {
    let eval_dir = |d: &std::path::Path| [crate::eval::LM_CSV, crate::eval::RETRIEVAL_CSV, crate::eval::ATTENTION_CSV].iter().any(|f| d.join(f).is_file());
    let mut drew = false;
    if dir.join("spec.toml").is_file() {
        println!("{}", report::run_report(dir)?);
        drew = true;
    } else if dir.join("experiment.json").is_file() {
        let summary = Grid::load(dir)?.summarize(dir)?;
        println!("{}", summary.markdown);
        drew = true;
    }
    for d in [dir.to_path_buf(), dir.join("eval")] {
        if eval_dir(&d) {
            println!("{}", report::eval_report(&d)?);
            drew = true;
        }
    }
    if !drew {
        return Err(input(format!(
            "{} is not a gda run, experiment or eval directory; allowed: a directory holding spec.toml, experiment.json or eval CSV files",
            dir.display()
        ))
        .into());
    }
    println!("written into {}", dir.display());
    Ok(())
}

fn print_done(s: &train::RunSummary) {
    println!(
        "done: {} | {} steps | {} params | {} | {:.0} tok/s | {:.1}s | {}",
        s.name,
        s.steps,
        s.parameters,
        s.quality(),
        s.tokens_per_s,
        s.elapsed_s,
        s.run_dir.display()
    );
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
    let mut spec_args = args.spec.clone();
    spec_args.set.extend(overrides);
    let mut spec = spec_args.load(None)?;
    if let Some(s) = &args.seeds {
        spec.sweep.seeds = parse_seeds(s, spec.seed)?;
        spec.resolve().map_err(|e| spec.error(&e.key, e.msg))?;
    }
    let points = experiments::grid(&spec, kind)?;
    let dir = args.out.clone().unwrap_or_else(|| spec.output.dir.join(format!("{}-{}", kind.dir_prefix(), spec.name)));
    let corpus = Dataset::load(&spec)?;
    args.launch.check()?;
    if args.dry_run {
        dry_run(&spec, &points, &corpus, args.launch.concurrency(args.jobs))?;
        return Ok(());
    }
    drop(corpus);
    experiments::open_dir(&dir, &spec, kind)?;
    println!("{} of {} points into {}", kind.dir_prefix(), points.len(), dir.display());
    let opts = RunOptions { dir, jobs: args.jobs, threads: spec.train.threads, retry_failed: args.retry_failed, devices: args.launch.devices.clone() };
    let grid = Grid { kind, policy: spec.sweep.policy, source_parameters: None, points };
    launcher::run(&grid, &opts, &args.launch)
}

fn run_grow(args: &GrowArgs) -> anyhow::Result<()> {
    use crate::grow::{self, CloneNoise, GrowOp};
    if !args.compare && (args.launch.launcher != launcher::Launcher::Local || !args.launch.devices.is_empty() || args.retry_failed) {
        return Err(input("--launcher, --devices and --retry-failed apply to gda grow --compare, which trains several runs").into());
    }
    args.launch.check()?;
    let src = grow::find_source(&args.from)?;
    let m = &src.spec.model;
    let g = m.ratio();
    let noise = args.clone_noise.map(|snr| CloneNoise { snr, seed: src.spec.seed });
    // The training spec: the source's, or --spec's with the grown model.
    let mut base = match &args.spec {
        Some(p) => Spec::load(Some(p), &[])?,
        None => src.spec.clone(),
    };
    base.model = src.spec.model.clone();
    if let Some(t) = args.threads {
        base.train.threads = t;
    }
    let corpus = Dataset::load(&base)?;
    let signal_op = GrowOp::SignalOnly { per_group: args.per_group.unwrap_or(g) };
    if !args.compare {
        let (op, tag) = if args.signal_only {
            (signal_op, "signal-only")
        } else if args.uniform {
            (GrowOp::Uniform { groups: args.groups.unwrap_or(m.noise_heads) }, "uniform")
        } else if let Some(n) = args.width {
            (GrowOp::Width { factor: n }, "width")
        } else {
            (GrowOp::Depth, "depth")
        };
        let name = format!("{}-{tag}", src.spec.name);
        let run_dir = args.run_dir.clone().unwrap_or_else(|| base.output.dir.join(&name));
        if run_dir.join("spec.toml").exists() {
            return Err(input(format!(
                "run directory {} already holds a run; continue it with gda train --resume --run-dir {}, or choose another --run-dir",
                run_dir.display(),
                run_dir.display()
            ))
            .into());
        }
        let grown = grow::grow_checked(&src, &base, &op, noise.as_ref(), &name, &args.set, &corpus, args.tolerance)?;
        report_growth(&src, tag, &grown, args.tolerance);
        let mut spec = grown.spec.clone();
        std::fs::create_dir_all(&run_dir).map_err(|e| input(format!("results directory {} is not writable: {e}", run_dir.display())))?;
        let init = launcher::absolute(&run_dir.join("init.safetensors"))?;
        grow::write_init(&grown, &init)?;
        spec.train.init = init.to_string_lossy().into_owned();
        let parent = growth_record(&src, tag, &grown, noise.as_ref());
        let opts = TrainOptions { run_dir: Some(run_dir), resume: false, parent: Some(parent) };
        let s = train::train(&spec, &opts)?;
        print_done(&s);
        return Ok(());
    }

    // Comparison: signal-only, uniform at the closest added parameters, scratch.
    let signal = grow::grow_checked(&src, &base, &signal_op, noise.as_ref(), "signal-only", &args.set, &corpus, args.tolerance)?;
    let groups = match args.groups {
        Some(k) => k,
        None => grow::matching_groups(&src.spec.model, signal.added_parameters),
    };
    let uniform = grow::grow_checked(&src, &base, &GrowOp::Uniform { groups }, noise.as_ref(), "uniform", &args.set, &corpus, args.tolerance)?;
    report_growth(&src, "signal-only", &signal, args.tolerance);
    report_growth(&src, "uniform", &uniform, args.tolerance);
    let dir = args.out.clone().unwrap_or_else(|| base.output.dir.join(format!("grow-{}", src.spec.name)));
    let kind = Kind::Grow { step: src.step };
    experiments::open_dir(&dir, &src.spec, kind)?;
    let inits = dir.join("inits");
    std::fs::create_dir_all(&inits).map_err(|e| input(format!("{}: {e}", inits.display())))?;
    let mut points = Vec::new();
    for (variant, grown) in [(Variant::SignalOnly, &signal), (Variant::Uniform, &uniform)] {
        let init = launcher::absolute(&inits.join(format!("{}.safetensors", variant.label())))?;
        if !init.exists() {
            grow::write_init(grown, &init)?;
        }
        let mut spec = grown.spec.clone();
        spec.train.init = init.to_string_lossy().into_owned();
        points.push(Point { name: variant.label().into(), variant, requested: None, seed: spec.seed, spec });
    }
    if args.scratch {
        let mut spec = signal.spec.clone();
        spec.name = "scratch".into();
        points.push(Point { name: "scratch".into(), variant: Variant::Scratch, requested: None, seed: spec.seed, spec });
    }
    println!("growth comparison of {} points into {}", points.len(), dir.display());
    let opts = RunOptions { dir, jobs: args.jobs, threads: base.train.threads, retry_failed: args.retry_failed, devices: args.launch.devices.clone() };
    let grid = Grid { kind, policy: base.sweep.policy, source_parameters: Some(crate::model::param_count(&src.spec.model)), points };
    launcher::run(&grid, &opts, &args.launch)
}

fn report_growth(src: &crate::grow::Source, tag: &str, g: &crate::grow::Grown, tolerance: f64) {
    let m = &g.spec.model;
    println!(
        "{tag}: {} -> {} parameters (+{}); H_s {} H_n {} d_model {} layers {}; max |logit difference| {:.2e} <= {tolerance:e}; val loss source {:.6}, grown {:.6} (step {} of {})",
        crate::model::param_count(&src.spec.model),
        crate::model::param_count(m),
        g.added_parameters,
        m.signal_heads,
        m.noise_heads,
        m.d_model,
        m.n_layers,
        g.max_logit_diff,
        g.source_loss,
        g.grown_loss,
        src.step,
        src.run_dir.display()
    );
}

/// What the grown run's manifest records about where it came from.
fn growth_record(src: &crate::grow::Source, op: &str, g: &crate::grow::Grown, noise: Option<&crate::grow::CloneNoise>) -> serde_json::Value {
    serde_json::json!({
        "run": src.run_dir,
        "checkpoint": src.checkpoint,
        "step": src.step,
        "operation": op,
        "clone_noise_snr": noise.map(|n| n.snr),
        "added_parameters": g.added_parameters,
        "max_logit_difference": g.max_logit_diff,
        "source_val_loss": g.source_loss,
        "grown_val_loss": g.grown_loss,
        "optimizer": "fresh (AdamW moments start at zero)",
    })
}

/// Prints the grid with each point's allocation and cost, and a time
/// estimate from a few timed steps per architecture; trains nothing.
fn dry_run(spec: &Spec, points: &[Point], corpus: &Dataset, jobs: usize) -> Result<(), GdaError> {
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

fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let spec = args.spec.load(None)?;
    if let Some(p) = &args.write_spec {
        std::fs::write(p, spec.to_toml()).map_err(|e| input(format!("cannot write {}: {e}", p.display())))?;
    }
    let device = crate::device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    let threads = crate::device::set_threads(spec.train.threads);
    let corpus = Dataset::load(&spec)?;
    let tc = &spec.train;
    let mut timer = train::StepTimer::new(&spec, &corpus, device);
    for _ in 0..args.warmup {
        timer.step(tc.batch_size);
    }
    let tokens = (args.steps * tc.batch_size * tc.context * tc.grad_accum) as f64;
    let mut rates: Vec<f64> = (0..args.repeats.max(1))
        .map(|_| tokens / (0..args.steps.max(1)).map(|_| timer.step(tc.batch_size)).sum::<f64>())
        .collect();
    let all = rates.clone();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    // SAFETY: getrusage only fills the struct we pass.
    let peak_rss_mb = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss as f64 / 1024.0
    };
    let out = serde_json::json!({
        "impl": "gda",
        "device": crate::device::describe(device),
        "threads": threads,
        "parameters": crate::model::param_count(&spec.model),
        "train_flops_per_token": crate::flops::train_flops_per_token(&spec.model, tc.context),
        "tokens_per_s": all,
        "median_tokens_per_s": median,
        "peak_rss_mb": peak_rss_mb,
    });
    println!("{out}");
    Ok(())
}

//! `gda grow`: grow a trained model and keep training it, or compare
//! growth strategies (`--compare`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::args::{LauncherArg, LauncherArgs};
use super::train::print_done;
use crate::config::Spec;
use crate::data::Dataset;
use crate::error::{input, io, GdaError};
use crate::experiment::{self, grid, Grid, Kind, Point, Variant};
use crate::grow::{self, CloneNoise, GrowOp, Grown};
use crate::model;
use crate::train::run_dir::{find_source, Source};
use crate::train::{self, TrainOptions};
use crate::util::fs::absolute;
use crate::util::out::outln;

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
    #[arg(long, default_value_t = 1)]
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
    let noise = args.clone_noise.map(|snr| CloneNoise { snr, seed: src.spec.seed });
    let setup = Setup { src, base, corpus, noise };
    if args.compare {
        compare(&args, &setup)
    } else {
        grow_one(&args, &setup)
    }
}

/// What every growth starts from.
struct Setup {
    src: Source,
    /// The spec the grown runs train under (model replaced by the grown one).
    base: Spec,
    corpus: Dataset,
    noise: Option<CloneNoise>,
}

impl Setup {
    fn signal_op(&self, args: &GrowArgs) -> GrowOp {
        GrowOp::SignalOnly { per_group: args.per_group.unwrap_or(self.src.spec.model.ratio()) }
    }

    fn grow(&self, args: &GrowArgs, op: &GrowOp, name: &str) -> Result<Grown, GdaError> {
        let Setup { src, base, corpus, noise } = self;
        grow::grow_checked(src, base, op, noise.as_ref(), name, &args.set, corpus, args.tolerance)
    }
}

/// One growth operation, then training the grown model as a new run.
fn grow_one(args: &GrowArgs, setup: &Setup) -> anyhow::Result<()> {
    let (src, base) = (&setup.src, &setup.base);
    let (op, tag) = if args.signal_only {
        (setup.signal_op(args), "signal-only")
    } else if args.uniform {
        (GrowOp::Uniform { groups: args.groups.unwrap_or(src.spec.model.noise_heads) }, "uniform")
    } else if let Some(n) = args.width {
        (GrowOp::Width { factor: n }, "width")
    } else {
        (GrowOp::Depth, "depth")
    };
    let name = format!("{}-{tag}", src.spec.name);
    let run_dir = args.out.clone().unwrap_or_else(|| base.output.dir.join(&name));
    if run_dir.join("spec.toml").exists() {
        return Err(input(format!(
            "run directory {} already holds a run; continue it with gda train --resume --out {}, or choose another --out",
            run_dir.display(),
            run_dir.display()
        ))
        .into());
    }
    let grown = setup.grow(args, &op, &name)?;
    report_growth(src, tag, &grown, args.tolerance);
    let mut spec = grown.spec.clone();
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| input(format!("results directory {} is not writable: {e}", run_dir.display())))?;
    let init = init_path(&run_dir.join("init.safetensors"))?;
    grow::write_init(&grown, &init)?;
    spec.train.init = init.to_string_lossy().into_owned();
    let parent = growth_record(src, tag, &grown, setup.noise.as_ref());
    let opts = TrainOptions { run_dir: Some(run_dir), resume: false, parent: Some(parent), ..TrainOptions::default() };
    let s = train::train(&spec, &opts)?;
    print_done(&s);
    Ok(())
}

/// `--compare`: signal-only growth, uniform growth at the closest added
/// parameters and (with --scratch) the signal-only architecture from a random
/// init, trained as one experiment.
fn compare(args: &GrowArgs, setup: &Setup) -> anyhow::Result<()> {
    let (src, base) = (&setup.src, &setup.base);
    let signal = setup.grow(args, &setup.signal_op(args), "signal-only")?;
    let groups = match args.groups {
        Some(k) => k,
        None => grow::matching_groups(&src.spec.model, signal.added_parameters),
    };
    let uniform = setup.grow(args, &GrowOp::Uniform { groups }, "uniform")?;
    report_growth(src, "signal-only", &signal, args.tolerance);
    report_growth(src, "uniform", &uniform, args.tolerance);
    let dir = args.out.clone().unwrap_or_else(|| base.output.dir.join(format!("grow-{}", src.spec.name)));
    let kind = Kind::Grow { step: src.step };
    experiment::open_dir(&dir, &src.spec, kind)?;
    let inits = dir.join("inits");
    std::fs::create_dir_all(&inits).map_err(io("cannot create", &inits))?;
    let mut points = Vec::new();
    for (variant, grown) in [(Variant::SignalOnly, &signal), (Variant::Uniform, &uniform)] {
        let init = init_path(&inits.join(format!("{}.safetensors", variant.label())))?;
        if !init.exists() {
            grow::write_init(grown, &init)?;
        }
        let mut spec = grown.spec.clone();
        spec.train.init = init.to_string_lossy().into_owned();
        points.push(Point {
            name: variant.label().into(),
            variant,
            requested: None,
            seed: spec.seed,
            spec,
            grid: Vec::new(),
        });
    }
    if args.scratch {
        let mut spec = signal.spec.clone();
        spec.name = "scratch".into();
        points.push(Point {
            name: "scratch".into(),
            variant: Variant::Scratch,
            requested: None,
            seed: spec.seed,
            spec,
            grid: Vec::new(),
        });
    }
    outln!("growth comparison of {} points into {}", points.len(), dir.display());
    let opts = args.launch.run_options(dir, args.jobs, base.train.threads, args.retry_failed);
    let grid =
        Grid { kind, policy: base.sweep.policy, source_parameters: Some(model::param_count(&src.spec.model)), points };
    Ok(grid::run(&grid, &opts)?)
}

/// The absolute path a grown run's initial weights are written to (its spec
/// records it as `train.init`, read from wherever the run is resumed).
fn init_path(p: &Path) -> Result<PathBuf, GdaError> {
    absolute(p).map_err(io("cannot resolve", p))
}

fn report_growth(src: &Source, tag: &str, g: &Grown, tolerance: f64) {
    let m = &g.spec.model;
    outln!(
        "{tag}: {} -> {} parameters (+{}); H_s {} H_n {} d_model {} layers {}; max |logit difference| {:.2e} <= {tolerance:e}; val loss source {:.6}, grown {:.6} (step {} of {})",
        model::param_count(&src.spec.model),
        model::param_count(m),
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
fn growth_record(src: &Source, op: &str, g: &Grown, noise: Option<&CloneNoise>) -> serde_json::Value {
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

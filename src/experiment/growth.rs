//! Growth as an experiment: one grown run trained on (`gda grow`), or the
//! comparison of signal-only growth, uniform growth matched on added
//! parameters and the grown architecture from scratch (`gda grow --compare`).

use std::path::{Path, PathBuf};

use super::{grid, Grid, Kind, Point, RunOptions, Variant};
use crate::config::Spec;
use crate::data::Dataset;
use crate::error::{input, io, GdaError};
use crate::grow::{self, CloneNoise, GrowOp, Grown};
use crate::model;
use crate::train::run_dir::Source;
use crate::train::{self, RunSummary, TrainOptions};
use crate::util::fs::absolute;
use crate::util::out::outln;

/// What a growth asks for besides its source (`gda grow`'s options).
#[derive(Debug, Clone, Default)]
pub struct GrowthOptions {
    /// Signal heads added per group (default: G, doubling every group).
    pub per_group: Option<usize>,
    /// Groups cloned by uniform growth (default: all; in a comparison, the
    /// count closest to signal-only growth's added parameters).
    pub groups: Option<usize>,
    /// Symmetric ±noise on cloned blocks with this signal-to-noise ratio.
    pub clone_noise: Option<f64>,
    /// Largest allowed |logit difference| between source and grown model.
    pub tolerance: f64,
    /// Overrides of the training spec (`--set`).
    pub set: Vec<String>,
    /// CPU threads of the continued training.
    pub threads: Option<usize>,
    /// In a comparison: also train the grown architecture from scratch.
    pub scratch: bool,
}

/// One growth operation of `gda grow` without `--compare`.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    SignalOnly,
    Uniform,
    Width(usize),
    Depth,
}

/// What every growth starts from.
pub struct Setup {
    pub src: Source,
    /// The spec the grown runs train under (model replaced by the grown one).
    pub base: Spec,
    corpus: Dataset,
    noise: Option<CloneNoise>,
}

impl Setup {
    /// The source run, and the spec its grown runs train under: `base`
    /// (`--spec`), or the source's own, with the source's model.
    pub fn new(src: Source, base: Option<Spec>, opts: &GrowthOptions) -> Result<Setup, GdaError> {
        let mut base = base.unwrap_or_else(|| src.spec.clone());
        base.model = src.spec.model.clone();
        if let Some(t) = opts.threads {
            base.train.threads = t;
        }
        let corpus = Dataset::load(&base)?;
        let noise = opts.clone_noise.map(|snr| CloneNoise { snr, seed: src.spec.seed });
        Ok(Setup { src, base, corpus, noise })
    }

    /// `<output.dir>/grow-<source name>`: where a comparison goes by default.
    pub fn default_compare_dir(&self) -> PathBuf {
        self.base.output.dir.join(format!("grow-{}", self.src.spec.name))
    }

    fn signal_op(&self, opts: &GrowthOptions) -> GrowOp {
        GrowOp::SignalOnly { per_group: opts.per_group.unwrap_or(self.src.spec.model.ratio()) }
    }

    fn grow(&self, opts: &GrowthOptions, op: &GrowOp, name: &str) -> Result<Grown, GdaError> {
        let Setup { src, base, corpus, noise } = self;
        grow::grow_checked(src, base, op, noise.as_ref(), name, &opts.set, corpus, opts.tolerance)
    }
}

/// One growth operation, then training the grown model as a new run in
/// `out` (default `<output.dir>/<source name>-<op>`).
pub fn grow_one(setup: &Setup, opts: &GrowthOptions, op: Op, out: Option<PathBuf>) -> Result<RunSummary, GdaError> {
    let (src, base) = (&setup.src, &setup.base);
    let (op, tag) = match op {
        Op::SignalOnly => (setup.signal_op(opts), "signal-only"),
        Op::Uniform => (GrowOp::Uniform { groups: opts.groups.unwrap_or(src.spec.model.noise_heads) }, "uniform"),
        Op::Width(n) => (GrowOp::Width { factor: n }, "width"),
        Op::Depth => (GrowOp::Depth, "depth"),
    };
    let name = format!("{}-{tag}", src.spec.name);
    let run_dir = out.unwrap_or_else(|| base.output.dir.join(&name));
    if run_dir.join("spec.toml").exists() {
        return Err(input(format!(
            "run directory {} already holds a run; continue it with gda train --resume --out {}, or choose another --out",
            run_dir.display(),
            run_dir.display()
        )));
    }
    let grown = setup.grow(opts, &op, &name)?;
    report_growth(src, tag, &grown, opts.tolerance);
    let mut spec = grown.spec.clone();
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| input(format!("results directory {} is not writable: {e}", run_dir.display())))?;
    let init = init_path(&run_dir.join("init.safetensors"))?;
    grow::write_init(&grown, &init)?;
    spec.train.init = init.to_string_lossy().into_owned();
    let parent = growth_record(src, tag, &grown, setup.noise.as_ref());
    let opts = TrainOptions { run_dir: Some(run_dir), resume: false, parent: Some(parent), ..TrainOptions::default() };
    train::train(&spec, &opts)
}

/// `--compare`: signal-only growth, uniform growth at the closest added
/// parameters and (with `scratch`) the signal-only architecture from a
/// random init, trained as one experiment in `run.dir`.
pub fn compare(setup: &Setup, opts: &GrowthOptions, run: &RunOptions) -> Result<(), GdaError> {
    let (src, base) = (&setup.src, &setup.base);
    let signal = setup.grow(opts, &setup.signal_op(opts), "signal-only")?;
    let groups = match opts.groups {
        Some(k) => k,
        None => grow::matching_groups(&src.spec.model, signal.added_parameters),
    };
    let uniform = setup.grow(opts, &GrowOp::Uniform { groups }, "uniform")?;
    report_growth(src, "signal-only", &signal, opts.tolerance);
    report_growth(src, "uniform", &uniform, opts.tolerance);
    let dir = &run.dir;
    let kind = Kind::Grow { step: src.step };
    super::open_dir(dir, &src.spec, kind)?;
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
    if opts.scratch {
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
    let grid =
        Grid { kind, policy: base.sweep.policy, source_parameters: Some(model::param_count(&src.spec.model)), points };
    grid::run(&grid, run)
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

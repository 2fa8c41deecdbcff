//! `gda reproduce`: the paper's whole study as one resumable command. Its
//! stages are ordinary experiment directories inside one study directory,
//! so `gda status`, `gda report` and `gda eval` work on each part:
//!
//! - `scan/`: the ratio scan (every ratio × seed; `--grid` cells too);
//! - `ablation/`: the repetition ablation at `study.ablation_ratios`, whose
//!   shared arms are the scan's runs (linked, never trained twice);
//! - `growth/s<seed>/`: signal-only vs uniform growth vs scratch, grown from
//!   the scan's `study.growth_ratio` run of each seed;
//! - `retrieval/`: the ratios trained on a retrieval task, with their
//!   accuracy and attention analysis in `retrieval/eval/`;
//! - `bench/`: the scan's runs scored on benchmark tasks (`--tasks`, or two
//!   built from the corpus's held-out split in `bench/tasks/`).
//!
//! Then `claims` turns those directories' CSV files into one verdict per
//! claim and `report` writes REPORT.md and report.html. Rerunning the same
//! command resumes whatever stage it stopped in.

pub mod claims;
pub mod preset;
pub mod report;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use self::preset::{Preset, StudyConfig};
use crate::config::{Spec, TaskKind};
use crate::data::{bench as bench_tasks, made, Dataset};
use crate::error::{input, io, GdaError};
use crate::experiment::evaluate::{run_eval, EvalOptions, Suite};
use crate::experiment::growth::{self, GrowthOptions, Setup};
use crate::experiment::{self, grid, plan, point_dir, Grid, Kind, Launcher, Point, RunOptions, Status, Variant};
use crate::report::units::{fmt_duration, si_flops};
use crate::train::run_dir::find_source;
use crate::util::fs::atomic_write;
use crate::util::out::outln;

pub const SCAN: &str = "scan";
pub const ABLATION: &str = "ablation";
pub const GROWTH: &str = "growth";
pub const RETRIEVAL: &str = "retrieval";
pub const BENCH: &str = "bench";
/// What identifies a study directory (preset, study table, base spec).
const STUDY_FILE: &str = "study.json";
/// An evaluation stage's record of what it scored, so a rerun skips it.
const EVAL_DONE: &str = "study-eval.json";

/// What `gda reproduce` was asked for (its options, without clap).
pub struct StudyOptions {
    /// A shipped preset's name, or the path of a preset file.
    pub preset: String,
    /// A spec replacing the preset's own.
    pub spec: Option<PathBuf>,
    /// `--set KEY=VALUE` (spec keys, or `study.KEY`).
    pub set: Vec<String>,
    /// `--grid KEY=V1,V2,...` for the scan.
    pub grid: Vec<String>,
    /// `--tasks` of the benchmark stage (none: built from the corpus).
    pub tasks: Vec<String>,
    pub out: Option<PathBuf>,
    pub dry_run: bool,
    /// How every stage's points train; its `dir` is set per stage.
    pub run: RunOptions,
    /// Points trained at once (for the dry run's estimate).
    pub concurrency: usize,
    /// The command line, for "rerun it when the jobs are done".
    pub rerun: String,
}

/// Everything the stages are made of, built before anything trains.
pub struct Plan {
    pub preset: Preset,
    pub dir: PathBuf,
    pub scan: Spec,
    pub ablation: Spec,
    pub retrieval: Option<Spec>,
    pub scan_points: Vec<Point>,
    pub ablation_points: Vec<Point>,
    pub retrieval_points: Vec<Point>,
}

impl Plan {
    pub fn study(&self) -> &StudyConfig {
        &self.preset.study
    }
}

/// `spec` as a sweep over `ratios` and the study's seeds.
fn sweep_spec(spec: &Spec, ratios: &[usize], seeds: &[u64]) -> Spec {
    let mut s = spec.clone();
    s.sweep.ratios = ratios.to_vec();
    s.sweep.seeds = seeds.to_vec();
    s.sweep.baseline = false;
    s
}

/// Reads the preset and builds every stage's grid, refusing anything the
/// stages cannot share before a directory is written.
pub fn plan(opts: &StudyOptions) -> Result<Plan, GdaError> {
    let preset = preset::load(&opts.preset, opts.spec.as_deref(), &opts.set)?;
    let study = &preset.study;
    study.check(&preset.origin)?;
    if preset.spec.data.task != TaskKind::Text {
        return Err(preset.spec.error(
            "data.task",
            "the study's spec trains the text stages; allowed: \"text\" (the retrieval stage sets its task in [study.retrieval])",
        ));
    }
    let mut scan = sweep_spec(&preset.spec, &study.ratios, &study.seeds);
    scan.set_grid_args(&opts.grid)?;
    scan.resolve().map_err(|e| scan.error(&e.key, e.msg))?;
    let scan_points = experiment::grid(&scan, Kind::Sweep)?;
    // The ablation and the growth sources live in the scan's first grid
    // cell, so the ablation's shared arms are scan points by name and spec.
    let mut ablation = sweep_spec(&preset.spec, &study.ablation_ratios, &study.seeds);
    for (k, v) in &scan.sweep.grid {
        ablation.sweep.grid.insert(k.clone(), v[..1].to_vec());
    }
    let ablation_points = experiment::grid(&ablation, ablation_kind())?;
    let (retrieval, retrieval_points) = match &study.retrieval {
        Some(r) => {
            // From the spec as written (not resolved), so the keys derived
            // from the ones `set` changes (lambda_init, mlp_hidden) follow them.
            let table = preset.spec.source.clone().unwrap_or_default();
            let origin = format!("{} [study.retrieval]", preset.origin);
            let spec = Spec::from_toml(table, &r.set, &origin)?;
            if spec.data.task == TaskKind::Text {
                return Err(GdaError::Spec {
                    file: preset.origin.clone(),
                    key: Some("study.retrieval.set".into()),
                    msg: "trains on text; allowed: overrides that set data.task to \"mqar\" or \"niah\"".into(),
                });
            }
            let spec = sweep_spec(&spec, r.ratios.as_deref().unwrap_or(&study.ratios), &study.seeds);
            let points = experiment::grid(&spec, Kind::Sweep)?;
            (Some(spec), points)
        }
        None => (None, Vec::new()),
    };
    let dir = opts.out.clone().unwrap_or_else(|| preset.spec.output.dir.join(format!("reproduce-{}", preset.name)));
    Ok(Plan { preset, dir, scan, ablation, retrieval, scan_points, ablation_points, retrieval_points })
}

fn ablation_kind() -> Kind {
    Kind::Ablate { no_share: true, equal_params: true }
}

/// A training stage: Some(failed points) when it finished here, None when
/// Slurm has points of it still to run.
type Stage = fn(&Plan, &StudyOptions) -> Result<Option<usize>, GdaError>;

/// Runs the study (or, with `dry_run`, prints its plan), then writes the report.
pub fn run(opts: &StudyOptions) -> Result<(), GdaError> {
    let plan = plan(opts)?;
    let tasks = bench_items(&opts.tasks)?;
    let local = opts.run.launcher == Launcher::Local;
    for (spec, points) in [(&plan.scan, &plan.scan_points), (&plan.ablation, &plan.ablation_points)] {
        plan::preflight(spec, points, opts.dry_run, local)?;
    }
    if let Some(spec) = &plan.retrieval {
        plan::preflight(spec, &plan.retrieval_points, opts.dry_run, local)?;
    }
    if opts.dry_run {
        return dry_run(&plan, opts, tasks.len());
    }
    open_study(&plan)?;
    outln!(
        "study {} ({}) into {}: seeds {}; ratios {}",
        plan.preset.name,
        plan.preset.origin,
        plan.dir.display(),
        join(&plan.study().seeds),
        join(&plan.study().ratios)
    );
    let mut failed = 0;
    // Each stage: Ok(failed points) when it finished here, None when its
    // points are queued on Slurm (the rest waits for a rerun).
    let stages: [Stage; 3] = [scan, ablation, growth];
    for stage in stages {
        match stage(&plan, opts)? {
            Some(n) => failed += n,
            None => return waiting(opts),
        }
    }
    if let Some(spec) = &plan.retrieval {
        let dir = plan.dir.join(RETRIEVAL);
        match train_stage("retrieval", spec, Kind::Sweep, &plan.retrieval_points, &dir, opts)? {
            Some(n) => failed += n,
            None => return waiting(opts),
        }
        let suite = if spec.data.task == TaskKind::Mqar { Suite::Mqar } else { Suite::Niah };
        let eval = EvalOptions { runs: vec![dir.clone()], suites: vec![suite, Suite::Attention], ..Default::default() };
        eval_stage("retrieval eval", &dir.join("eval"), eval, &[])?;
    }
    bench(&plan, &opts.tasks, &tasks)?;
    let written = report::write(&plan)?;
    outln!("\nreport: {}", written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    if failed > 0 {
        let total = plan.scan_points.len() + plan.ablation_points.len() + plan.retrieval_points.len();
        return Err(GdaError::PointsFailed { failed, total, dir: plan.dir.clone() });
    }
    Ok(())
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Slurm has the stage's points: the study goes on when the command is rerun.
fn waiting(opts: &StudyOptions) -> Result<(), GdaError> {
    outln!("\nthe study waits for those jobs; when they are done, rerun: {}", opts.rerun);
    Ok(())
}

/// The tasks of `--tasks`, read now so a bad file is refused before training.
fn bench_items(tasks: &[String]) -> Result<Vec<bench_tasks::Task>, GdaError> {
    let tasks = bench_tasks::parse_tasks(tasks)?;
    for t in &tasks {
        bench_tasks::read_task(t, None)?;
    }
    Ok(tasks)
}

/// What identifies a study directory: a rerun into it must ask for the same study.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct Identity {
    preset: String,
    study: StudyConfig,
    spec_hash: String,
    grid: String,
}

fn open_study(plan: &Plan) -> Result<(), GdaError> {
    // The preset's prose (about, expected) may change without changing the study.
    let study = StudyConfig { about: String::new(), expected: String::new(), ..plan.preset.study.clone() };
    let id = Identity {
        preset: plan.preset.name.clone(),
        study,
        spec_hash: plan.preset.spec.hash(),
        grid: format!("{:?}", plan.scan.sweep.grid),
    };
    let file = plan.dir.join(STUDY_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let old: Identity = serde_json::from_str(&text)
            .map_err(|e| input(format!("{} is not a gda study file: {e}", file.display())))?;
        if old != id {
            return Err(input(format!(
                "{} holds a different study (preset {}, spec {}); nothing was changed: choose another --out, or rerun with the options it was started with",
                plan.dir.display(),
                old.preset,
                old.spec_hash
            )));
        }
        return Ok(());
    }
    if plan.dir.join(SCAN).exists() {
        return Err(input(format!("{} holds stages but no {STUDY_FILE}; choose another --out", plan.dir.display())));
    }
    std::fs::create_dir_all(&plan.dir)
        .map_err(|e| input(format!("results directory {} is not writable: {e}", plan.dir.display())))?;
    atomic_write(&file, &serde_json::to_vec_pretty(&id).expect("identity serialises"))
        .map_err(io("cannot write", &file))
}

/// Trains one stage's grid in `dir`: Some(failed points) when it ran here,
/// None when Slurm has points of it still to run.
fn train_stage(
    label: &str,
    spec: &Spec,
    kind: Kind,
    points: &[Point],
    dir: &Path,
    opts: &StudyOptions,
) -> Result<Option<usize>, GdaError> {
    experiment::open_dir(dir, spec, kind)?;
    outln!("\n== {label}: {} points into {}", points.len(), dir.display());
    let grid = Grid { kind, policy: spec.sweep.policy, source_parameters: None, points: points.to_vec() };
    let run = RunOptions { dir: dir.to_path_buf(), threads: spec.train.threads, ..opts.run.clone() };
    finish_stage(grid::run(&grid, &run), dir, points)
}

/// A stage's outcome: failed points are counted (the study goes on without
/// them); a kill, an interrupt or a refusal stops the study.
fn finish_stage(result: Result<(), GdaError>, dir: &Path, points: &[Point]) -> Result<Option<usize>, GdaError> {
    let failed = match result {
        Ok(()) => 0,
        Err(GdaError::PointsFailed { failed, .. }) => failed,
        Err(e) => return Err(e),
    };
    let pending = points.iter().filter(|p| !matches!(experiment::status(dir, p), Status::Done(_) | Status::Failed(_)));
    Ok(if pending.count() > 0 { None } else { Some(failed) })
}

fn scan(plan: &Plan, opts: &StudyOptions) -> Result<Option<usize>, GdaError> {
    train_stage("scan", &plan.scan, Kind::Sweep, &plan.scan_points, &plan.dir.join(SCAN), opts)
}

/// The ablation, its shared arms linked to the scan's finished runs of the
/// same name and spec (relative links, so the study directory can move).
fn ablation(plan: &Plan, opts: &StudyOptions) -> Result<Option<usize>, GdaError> {
    let dir = plan.dir.join(ABLATION);
    let scan_dir = plan.dir.join(SCAN);
    experiment::open_dir(&dir, &plan.ablation, ablation_kind())?;
    for p in plan.ablation_points.iter().filter(|p| p.variant == Variant::Gda) {
        let Some(twin) = plan.scan_points.iter().find(|s| s.name == p.name && s.spec.hash() == p.spec.hash()) else {
            continue;
        };
        let link = point_dir(&dir, p);
        if matches!(experiment::status(&scan_dir, twin), Status::Done(_)) && !link.exists() {
            let parent = link.parent().expect("points/<name>");
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
            let target = Path::new("..").join("..").join(SCAN).join("points").join(&twin.name);
            std::os::unix::fs::symlink(&target, &link).map_err(io("cannot link", &link))?;
        }
    }
    train_stage("ablation", &plan.ablation, ablation_kind(), &plan.ablation_points, &dir, opts)
}

/// The scan's run of the growth ratio for `seed` (first grid cell).
pub fn growth_source(plan: &Plan, seed: u64) -> Option<&Point> {
    let first = plan.scan_points.first().map(|p| p.grid.clone()).unwrap_or_default();
    plan.scan_points.iter().find(|p| {
        p.variant == Variant::Gda && p.requested == Some(plan.study().growth_ratio) && p.seed == seed && p.grid == first
    })
}

pub fn growth_dir(plan: &Plan, seed: u64) -> PathBuf {
    plan.dir.join(GROWTH).join(format!("s{seed}"))
}

fn growth_options(study: &StudyConfig) -> GrowthOptions {
    GrowthOptions {
        tolerance: 1e-4,
        set: study.growth_steps.map(|n| vec![format!("train.steps={n}")]).unwrap_or_default(),
        scratch: true,
        ..Default::default()
    }
}

/// One growth comparison per seed whose source run finished.
fn growth(plan: &Plan, opts: &StudyOptions) -> Result<Option<usize>, GdaError> {
    let scan_dir = plan.dir.join(SCAN);
    let gopts = growth_options(plan.study());
    let mut failed = 0;
    let mut waiting = false;
    for &seed in &plan.study().seeds {
        let Some(src) = growth_source(plan, seed) else { continue };
        if !matches!(experiment::status(&scan_dir, src), Status::Done(_)) {
            outln!("\n== growth s{seed}: skipped (its source {} did not finish)", src.name);
            continue;
        }
        let dir = growth_dir(plan, seed);
        outln!("\n== growth s{seed}: from {}", point_dir(&scan_dir, src).display());
        let setup = Setup::new(find_source(&point_dir(&scan_dir, src))?, None, &gopts)?;
        let run = RunOptions { dir: dir.clone(), threads: setup.base.train.threads, ..opts.run.clone() };
        let result = growth::compare(&setup, &gopts, &run);
        let points = Grid::load(&dir)?.points;
        match finish_stage(result, &dir, &points)? {
            Some(n) => failed += n,
            None => waiting = true,
        }
    }
    Ok((!waiting).then_some(failed))
}

/// A fingerprint of what an evaluation stage scores: every finished point's
/// name, steps and val loss, and the task files.
fn eval_fingerprint(runs: &[PathBuf], tasks: &[PathBuf]) -> Result<String, GdaError> {
    let mut h = Sha256::new();
    for r in runs {
        let grid = Grid::load(r)?;
        for p in &grid.points {
            if let Status::Done(s) = experiment::status(r, p) {
                h.update(format!("{} {} {}\n", p.name, s.steps, s.val_loss).as_bytes());
            }
        }
    }
    for t in tasks {
        h.update(std::fs::read(t).map_err(io("cannot read", t))?);
    }
    Ok(h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect())
}

/// Runs an evaluation into `out` unless it already scored exactly these
/// points and tasks (a rerun after the report was interrupted).
fn eval_stage(label: &str, out: &Path, opts: EvalOptions, task_files: &[PathBuf]) -> Result<(), GdaError> {
    let print = fingerprint_file(out);
    let want = eval_fingerprint(&opts.runs, task_files)?;
    if std::fs::read_to_string(&print).is_ok_and(|t| t.trim() == want) {
        outln!("\n== {label}: up to date in {}", out.display());
        return Ok(());
    }
    outln!("\n== {label} into {}", out.display());
    let opts = EvalOptions { out: Some(out.to_path_buf()), ..opts };
    run_eval(&opts)?;
    atomic_write(&print, want.as_bytes()).map_err(io("cannot write", &print))
}

fn fingerprint_file(out: &Path) -> PathBuf {
    out.join(EVAL_DONE)
}

/// The benchmark stage: the scan's runs on `--tasks` (`parsed`: as read
/// before training), or on the two tasks built from the held-out split
/// (written once into `bench/tasks/`).
fn bench(plan: &Plan, tasks: &[String], parsed: &[bench_tasks::Task]) -> Result<(), GdaError> {
    let out = plan.dir.join(BENCH);
    let (specs, files) = if tasks.is_empty() {
        let dir = out.join("tasks");
        let files: Vec<PathBuf> = [made::CLOZE, made::CHOICE].iter().map(|n| dir.join(format!("{n}.jsonl"))).collect();
        if !files.iter().all(|f| f.is_file()) {
            let text = made::held_out_text(&plan.scan.data, plan.scan.train.threads)?;
            made::write_tasks(
                &dir,
                &text,
                plan.study().bench_items,
                plan.scan.seed,
                made::Sizes::for_context(plan.scan.train.context),
            )?;
        }
        (vec![dir.display().to_string()], files)
    } else {
        let files = parsed.iter().map(|t| t.path.clone()).collect();
        (tasks.to_vec(), files)
    };
    let eval =
        EvalOptions { runs: vec![plan.dir.join(SCAN)], suites: vec![Suite::Bench], tasks: specs, ..Default::default() };
    eval_stage("bench", &out, eval, &files)
}

/// The dry run: every stage's points with FLOPs and an estimate.
fn dry_run(plan: &Plan, opts: &StudyOptions, user_tasks: usize) -> Result<(), GdaError> {
    let study = plan.study();
    println!("study {} ({}): {}", plan.preset.name, plan.preset.origin, study.about);
    println!("expected: {}", if study.expected.is_empty() { "not measured" } else { &study.expected });
    // A data-parallel point trains on as many devices as it has ranks.
    let rate = study.assumed_tflops.map(|t| t * 1e12 * opts.run.nproc_per_point.max(1) as f64);
    let mut total = plan::Estimate::default();
    let mut add = |e: plan::Estimate| {
        total.points += e.points;
        total.flops += e.flops;
        total.seconds += e.seconds;
    };
    let corpus = Dataset::load(&plan.scan)?;
    println!("\n## stage scan -> {}/{SCAN}\n", plan.dir.display());
    add(plan::dry_run(&plan.scan, &plan.scan_points, &corpus, opts.concurrency, rate)?);
    // Shared arms are the scan's runs: only the twins train.
    let twins: Vec<Point> = plan.ablation_points.iter().filter(|p| p.variant != Variant::Gda).cloned().collect();
    println!("\n## stage ablation -> {}/{ABLATION} (shared arms: the scan's runs)\n", plan.dir.display());
    add(plan::dry_run(&plan.ablation, &twins, &corpus, opts.concurrency, rate)?);
    let grown = growth_estimate(plan);
    println!(
        "\n## stage growth -> {}/{GROWTH}/s<seed> (grown models estimated as signal-only growth: twice the signal heads)\n",
        plan.dir.display()
    );
    add(plan::dry_run(&plan.scan, &grown, &corpus, opts.concurrency, rate)?);
    if let Some(spec) = &plan.retrieval {
        let data = Dataset::load(spec)?;
        println!("\n## stage retrieval -> {}/{RETRIEVAL}\n", plan.dir.display());
        add(plan::dry_run(spec, &plan.retrieval_points, &data, opts.concurrency, rate)?);
    }
    let tasks = if user_tasks > 0 {
        format!("{user_tasks} task(s) from --tasks")
    } else {
        format!("2 tasks of up to {} items built from the held-out split", study.bench_items)
    };
    println!(
        "\n## stage bench -> {}/{BENCH}: {} scan runs × {tasks} (scoring, not timed)",
        plan.dir.display(),
        plan.scan_points.len()
    );
    println!(
        "\nstudy total: {} points to train | {} training compute | estimated {} (concurrency {})",
        total.points,
        si_flops(total.flops),
        fmt_duration(total.seconds),
        opts.concurrency
    );
    Ok(())
}

/// The growth stage's points for the dry run: per seed, the grown model
/// (signal heads doubled, as signal-only growth by G per group makes them)
/// three times: signal-only, uniform (matched on parameters) and scratch.
fn growth_estimate(plan: &Plan) -> Vec<Point> {
    let mut out = Vec::new();
    for &seed in &plan.study().seeds {
        let Some(src) = growth_source(plan, seed) else { continue };
        let mut spec = src.spec.clone();
        spec.model.signal_heads *= 2;
        spec.model.kv_heads = 0;
        if let Some(n) = plan.study().growth_steps {
            spec.train.steps = n;
        }
        if spec.resolve().is_err() {
            continue;
        }
        for v in [Variant::SignalOnly, Variant::Uniform, Variant::Scratch] {
            let name = format!("s{seed}/{}", v.label());
            out.push(Point { name, variant: v, requested: None, seed, spec: spec.clone(), grid: Vec::new() });
        }
    }
    out
}

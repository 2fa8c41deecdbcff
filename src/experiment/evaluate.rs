//! Scoring trained runs and experiments (`gda eval`): several suites on
//! every point with a checkpoint, written as lm.csv, retrieval.csv,
//! attention.csv and bench.csv (then `report::eval` renders the tables and
//! plots from those files).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::nn::VarStore;

use self::suites::Loaded;
use super::grid::GRID_FILE;
use super::{point_dir, policy_name, spec_ratio, summary, Grid};
use crate::config::{check_eval_memory, check_task, Spec, TaskKind};
use crate::data::bench::{self as bench_tasks, Item, Task};
use crate::data::Split;
use crate::device;
use crate::error::{input, io, GdaError};
use crate::eval::analysis;
use crate::model::Model;
use crate::report::eval::{
    write_run_table, AttentionRow, BenchRow, Identified, LmRow, RetrievalRow, RunId, ATTENTION_CSV, BENCH_CSV,
    BENCH_ITEMS, LM_CSV, RETRIEVAL_CSV,
};
use crate::train::checkpoint;
use crate::train::run_dir::{find_source, Source};

mod suites;

/// What `gda eval` scores and where it writes (its options, without clap).
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Run directories, or sweep/ablation/growth directories (all their
    /// points with a checkpoint).
    pub runs: Vec<PathBuf>,
    /// Suites: lm, mqar, niah, attention, bench (default: lm for text runs;
    /// the run's task and attention for task runs).
    pub suites: Vec<Suite>,
    /// Context lengths to evaluate at (default: the training context).
    pub contexts: Vec<usize>,
    /// Data the lm suite scores: all of a text file or directory, or the validation shards of a prepared, nanoGPT or llm.c directory (default: the run's validation split).
    pub data: Option<PathBuf>,
    /// lm suite: target tokens scored per context (default: train.eval_tokens).
    pub tokens: Option<usize>,
    /// Retrieval examples per context and depth (default: task.eval_examples).
    pub examples: Option<usize>,
    /// NIAH needle depths, fractions of the haystack (default: 0,0.25,0.5,0.75,1).
    pub depths: Vec<f64>,
    /// Override a task.* key of the retrieval generators, e.g. --set task.pairs=16 (repeatable).
    pub set: Vec<String>,
    /// bench suite: the tasks, NAME=PATH (hellaswag, piqa, arc_easy, arc_challenge, winogrande, lambada; any other name: generic JSONL) or a directory of NAME.jsonl files.
    pub tasks: Vec<String>,
    /// bench suite: score only the first N items of each task.
    pub limit: Option<usize>,
    /// Where the tables and plots go (default: <DIR>/eval for a single --run).
    pub out: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N (default: the run's train.device).
    pub device: Option<String>,
    /// CPU threads, 0 = all cores (default: the run's train.threads).
    pub threads: Option<usize>,
}

/// What `gda eval` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Held-out language modelling: loss, perplexity, bits per byte.
    Lm,
    /// Multi-query associative recall accuracy.
    Mqar,
    /// Needle-in-a-haystack accuracy with distractor needles, per depth.
    Niah,
    /// Attention mass on the answer vs. elsewhere, per layer and head group,
    /// on each retrieval suite evaluated.
    Attention,
    /// Zero-shot benchmarks from local task files (--tasks): acc, acc_norm
    /// and lambada perplexity as lm-evaluation-harness scores them.
    Bench,
}

/// One run to evaluate: its label in the tables, its directory, and which
/// point of an experiment it is.
struct Target {
    label: String,
    dir: PathBuf,
    id: RunId,
}

/// Expands experiment directories into their points (from the grid record,
/// in grid order) that have a checkpoint.
/// Runs are labelled by directory name; points of an experiment by point
/// name, prefixed by the experiment's name when several directories are
/// evaluated together (and so are their groups, so two sweeps' 4:1 points
/// stay apart). Repeated labels get `#2`, `#3`…; a name is never rewritten
/// to suit the CSV files (they quote it), so a label always names its
/// directory.
fn targets(runs: &[PathBuf]) -> Result<Vec<Target>, GdaError> {
    let name =
        |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| d.display().to_string());
    let mut out: Vec<Target> = Vec::new();
    let mut experiments: Vec<String> = Vec::new();
    for r in runs {
        if r.join("spec.toml").is_file() {
            out.push(Target { label: name(r), dir: r.clone(), id: run_id(r, &name(r))? });
        } else if r.join("experiment.json").is_file() {
            let grid = Grid::load(r)?;
            let mut exp = name(r);
            let base = exp.clone();
            let mut k = 1;
            while experiments.contains(&exp) {
                k += 1;
                exp = format!("{base}#{k}");
            }
            experiments.push(exp.clone());
            let before = out.len();
            for p in &grid.points {
                let dir = point_dir(r, p);
                if checkpoint::latest(&dir).is_some() {
                    let prefix = |s: String| if runs.len() > 1 { format!("{exp}/{s}") } else { s };
                    let mut id = summary::run_id(p, policy_name(grid.policy));
                    id.group = prefix(id.group);
                    out.push(Target { label: prefix(p.name.clone()), dir, id });
                } else {
                    eprintln!("note: point {} has no checkpoint yet; skipped", p.name);
                }
            }
            if out.len() == before {
                return Err(input(format!("experiment {} has no point with a checkpoint to evaluate", r.display())));
            }
        } else {
            return Err(input(format!(
                "{} is not a gda run or experiment directory; allowed: a run directory (spec.toml, checkpoints/) or a sweep/ablation/growth directory (experiment.json)",
                r.display()
            )));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for t in &mut out {
        let base = t.label.clone();
        let mut k = 1;
        while seen.contains(&t.label) {
            k += 1;
            t.label = format!("{base}#{k}");
        }
        if t.id.group == base {
            t.id.group = t.label.clone();
        }
        seen.push(t.label.clone());
    }
    Ok(out)
}

/// Which point a run directory given alone is: its experiment's point when
/// it is one (`<experiment>/points/<name>`), else a point of its own named
/// `label`, with the seed and ratio of its spec.
fn run_id(dir: &Path, label: &str) -> Result<RunId, GdaError> {
    let parent = dir.parent().filter(|p| p.file_name().is_some_and(|n| n == "points"));
    if let Some(exp) = parent.and_then(Path::parent).filter(|e| e.join(GRID_FILE).is_file()) {
        let grid = Grid::load(exp)?;
        if let Some(p) = grid.points.iter().find(|p| dir.file_name().is_some_and(|n| *n == *p.name)) {
            return Ok(summary::run_id(p, policy_name(grid.policy)));
        }
    }
    let spec = Spec::load(Some(&dir.join("spec.toml")), &[])?;
    Ok(RunId { group: label.to_string(), seed: Some(spec.seed), ratio: spec_ratio(&spec), ..RunId::default() })
}

/// Where the CSV files go: `--out`, or `eval/` inside the one directory given.
pub fn out_dir(opts: &EvalOptions) -> Result<PathBuf, GdaError> {
    match (&opts.out, opts.runs.as_slice()) {
        (Some(o), _) => Ok(o.clone()),
        (None, [one]) => Ok(one.join("eval")),
        (None, _) => Err(input("several directories to evaluate need --out DIR for the combined tables")),
    }
}

/// Rows of the three result tables.
#[derive(Default)]
struct Tables {
    lm: Vec<LmRow>,
    retrieval: Vec<RetrievalRow>,
    attention: Vec<AttentionRow>,
    bench: Vec<BenchRow>,
    /// bench_items.jsonl: one JSON line per run, context, task and item.
    bench_items: Vec<u8>,
}

/// Runs the suites on every run, then writes the CSV files into the output
/// directory (all at the end, each by rename: an error leaves nothing half-written).
pub fn run_eval(opts: &EvalOptions) -> Result<PathBuf, GdaError> {
    let out = out_dir(opts)?;
    if let Some(bad) = opts.set.iter().find(|o| !o.trim_start().starts_with("task.")) {
        return Err(input(format!(
            "--set {bad}: gda eval only changes task.* keys (the generators); the model and data come from the run"
        )));
    }
    // Checks of the options alone, once for all runs.
    if opts.contexts.contains(&0) {
        return Err(input("--contexts: 0 is not a context length; allowed: positive integers"));
    }
    if let Some(d) = opts.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
        return Err(input(format!("--depths {d} is out of range; allowed: fractions in [0, 1]")));
    }
    if opts.tokens == Some(0) || opts.examples == Some(0) || opts.limit == Some(0) {
        let flag = match (opts.tokens, opts.examples) {
            (Some(0), _) => "--tokens",
            (_, Some(0)) => "--examples",
            _ => "--limit",
        };
        return Err(input(format!("{flag} 0 would score nothing; allowed: a positive count")));
    }
    let bench = bench_items(opts)?;
    let mut tables = Tables::default();
    // Points of a sweep share their text: load and tokenize it once.
    let mut corpora: Vec<(String, Split)> = Vec::new();
    let targets = targets(&opts.runs)?;
    let checked = targets.iter().map(|t| check_run(t, opts)).collect::<Result<Vec<_>, _>>()?;
    warn_extrapolation(&targets, &checked);
    for (t, run) in targets.iter().zip(checked) {
        eval_run(t, run, opts, &mut corpora, &bench, &mut tables)?;
    }
    std::fs::create_dir_all(&out).map_err(io("cannot create", &out))?;
    write_table(&out.join(LM_CSV), &tables.lm)?;
    write_table(&out.join(RETRIEVAL_CSV), &tables.retrieval)?;
    write_table(&out.join(ATTENTION_CSV), &tables.attention)?;
    write_table(&out.join(BENCH_CSV), &tables.bench)?;
    let items = out.join(BENCH_ITEMS);
    if tables.bench_items.is_empty() {
        match std::fs::remove_file(&items) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot remove", &items)(e)),
            _ => {}
        }
    } else {
        crate::util::fs::atomic_write(&items, &tables.bench_items).map_err(io("cannot write", &items))?;
    }
    Ok(out)
}

/// The bench suite's tasks and their items (read once for all runs), or
/// none; `--tasks` and `--limit` without the suite would be ignored, so
/// they are refused.
fn bench_items(opts: &EvalOptions) -> Result<Vec<(Task, Vec<Item>)>, GdaError> {
    let asked = opts.suites.contains(&Suite::Bench);
    if !asked {
        if !opts.tasks.is_empty() || opts.limit.is_some() {
            let flag = if opts.tasks.is_empty() { "--limit" } else { "--tasks" };
            return Err(input(format!("{flag} applies to the bench suite; allowed: add --suite bench")));
        }
        return Ok(Vec::new());
    }
    if opts.tasks.is_empty() {
        return Err(input(format!(
            "the bench suite needs --tasks NAME=PATH,... (NAME one of {}, or any name for generic JSONL) or a directory of NAME.jsonl files",
            bench_tasks::KNOWN
        )));
    }
    bench_tasks::parse_tasks(&opts.tasks)?
        .into_iter()
        .map(|t| {
            let items = bench_tasks::read_task(&t, opts.limit)?;
            Ok((t, items))
        })
        .collect()
}

/// Writes one result table; without rows, removes the table an earlier
/// evaluation with other suites left, so it cannot mix in.
fn write_table<T: Serialize + Identified>(path: &Path, rows: &[T]) -> Result<(), GdaError> {
    if !rows.is_empty() {
        return write_run_table(path, rows);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("cannot remove", path)(e)),
        _ => Ok(()),
    }
}

/// The run's spec with `--set task.*`, `--device` and `--threads` applied.
fn eval_spec(src: &Spec, opts: &EvalOptions) -> Result<Spec, GdaError> {
    let mut overrides = opts.set.clone();
    if let Some(d) = &opts.device {
        overrides.push(format!("train.device=\"{d}\""));
    }
    if let Some(n) = opts.threads {
        overrides.push(format!("train.threads={n}"));
    }
    // Task keys are checked per evaluated context (in eval_run), not at the
    // training context that resolving the spec would check them against.
    let mut spec = src.clone();
    spec.data.task = TaskKind::Text;
    let mut spec = spec.with_overrides(&overrides)?;
    spec.data.task = src.data.task;
    Ok(spec)
}

/// The suites asked for, or the run's defaults; and the retrieval tasks to
/// generate (the attention suite analyses those, or the run's own task).
fn plan(suites: &[Suite], own: TaskKind, label: &str) -> Result<(Vec<Suite>, Vec<TaskKind>), GdaError> {
    let suites: Vec<Suite> = if !suites.is_empty() {
        suites.to_vec()
    } else if own == TaskKind::Text {
        vec![Suite::Lm]
    } else {
        vec![if own == TaskKind::Mqar { Suite::Mqar } else { Suite::Niah }, Suite::Attention]
    };
    let mut tasks: Vec<TaskKind> = suites
        .iter()
        .filter_map(|s| match s {
            Suite::Mqar => Some(TaskKind::Mqar),
            Suite::Niah => Some(TaskKind::Niah),
            _ => None,
        })
        .collect();
    if suites.contains(&Suite::Attention) && tasks.is_empty() {
        if own == TaskKind::Text {
            return Err(input(format!(
                "the attention suite analyses retrieval examples, and run {label} was trained on text: add --suite mqar or --suite niah"
            )));
        }
        tasks.push(own);
    }
    Ok((suites, tasks))
}

/// One run, checked against the options before any run is scored.
struct Checked {
    src: Source,
    spec: Spec,
    suites: Vec<Suite>,
    tasks: Vec<TaskKind>,
    contexts: Vec<usize>,
}

/// Everything about one run that can be refused without scoring it: its
/// checkpoint and spec, the suites, options it would ignore, contexts and
/// tasks that cannot fit.
fn check_run(t: &Target, opts: &EvalOptions) -> Result<Checked, GdaError> {
    let src = find_source(&t.dir)?;
    let spec = eval_spec(&src.spec, opts)?;
    let (suites, tasks) = plan(&opts.suites, spec.data.task, &t.label)?;
    let analyse = suites.contains(&Suite::Attention);
    if suites.contains(&Suite::Bench) && spec.data.task != TaskKind::Text {
        return Err(input(format!(
            "the bench suite scores text, and run {} was trained on the {} task; allowed: runs trained on text",
            t.label,
            spec.data.task.name()
        )));
    }
    // Options no suite of this run reads would be silently ignored.
    if opts.data.is_some() && !suites.contains(&Suite::Lm) {
        return Err(input(format!(
            "--data applies to the lm suite, which run {} does not run here; allowed: add --suite lm",
            t.label
        )));
    }
    if !opts.depths.is_empty() && !tasks.contains(&TaskKind::Niah) {
        return Err(input(format!(
            "--depths applies to the niah suite, which run {} does not run here; allowed: add --suite niah",
            t.label
        )));
    }
    let train_ctx = spec.train.context;
    let contexts = if opts.contexts.is_empty() { vec![train_ctx] } else { opts.contexts.clone() };
    for &c in &contexts {
        let bytes = analysis::map_bytes(&spec.model, c);
        if analyse && bytes > analysis::MAX_MAP_BYTES {
            return Err(input(format!(
                "the attention suite at context {c} materialises {:.1} GiB of maps per example for {} (limit {} GiB); allowed: shorter --contexts for the attention suite",
                bytes as f64 / (1u64 << 30) as f64,
                t.label,
                analysis::MAX_MAP_BYTES >> 30
            )));
        }
    }
    for &kind in &tasks {
        for &c in &contexts {
            check_task(&spec.task, kind, c, spec.model.vocab_size).map_err(|e| {
                input(format!("{} at context {c} (run {}): key `{}`: {}", kind.name(), t.label, e.key, e.msg))
            })?;
        }
    }
    let examples = opts.examples.unwrap_or(spec.task.eval_examples);
    if examples == 0 && !tasks.is_empty() {
        return Err(input("task.eval_examples = 0 would score nothing; allowed: a positive count"));
    }
    if !tasks.is_empty() {
        for &c in &contexts {
            check_eval_memory("--examples", examples, c)
                .map_err(|e| input(format!("{} at context {c}: {}", e.key, e.msg)))?;
        }
    }
    Ok(Checked { src, spec, suites, tasks, contexts })
}

/// One warning per context and training context past it, naming the runs
/// (a sweep's sixteen points share one line).
fn warn_extrapolation(targets: &[Target], checked: &[Checked]) {
    let mut past: Vec<((usize, usize), Vec<&str>)> = Vec::new();
    for (t, run) in targets.iter().zip(checked) {
        let train_ctx = run.spec.train.context;
        for &c in run.contexts.iter().filter(|&&c| c > train_ctx) {
            match past.iter_mut().find(|p| p.0 == (c, train_ctx)) {
                Some(p) => p.1.push(&t.label),
                None => past.push(((c, train_ctx), vec![&t.label])),
            }
        }
    }
    for ((c, train_ctx), labels) in past {
        let who = match labels.as_slice() {
            [one] => one.to_string(),
            [first, .., last] => format!("{} runs ({first} … {last})", labels.len()),
            [] => continue,
        };
        eprintln!("warning: {who}: context {c} is longer than the training context {train_ctx}; RoPE has no hard limit, but quality past the training length is extrapolation");
    }
}

/// Evaluates one checked run and appends its rows to `tables`.
fn eval_run(
    t: &Target,
    run: Checked,
    opts: &EvalOptions,
    corpora: &mut Vec<(String, Split)>,
    bench: &[(Task, Vec<Item>)],
    tables: &mut Tables,
) -> Result<(), GdaError> {
    let Checked { src, spec, suites, tasks, contexts } = run;
    let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    device::set_threads(spec.train.threads).map_err(|m| spec.error("train.threads", m))?;
    let (vs, model) = Model::build(&spec.model, device);
    let src = load_weights(&vs, t, src)?;
    println!("evaluating {} ({}, step {})", t.label, t.dir.display(), src.step);
    if src.step < spec.train.steps {
        eprintln!("warning: {} has not finished training (checkpoint at step {} of {}); the tables give that checkpoint's scores", t.label, src.step, spec.train.steps);
    }
    let loaded = Loaded { target: t, spec: &spec, model: &model, device, step: src.step, contexts: &contexts };
    if suites.contains(&Suite::Lm) {
        suites::lm(&loaded, opts, corpora, tables)?;
    }
    if suites.contains(&Suite::Bench) {
        suites::bench(&loaded, bench, tables)?;
    }
    suites::retrieval(&loaded, &tasks, suites.contains(&Suite::Attention), opts, tables);
    Ok(())
}

/// Loads the weights of the checkpoint `src` names into `vs`; returns the
/// checkpoint loaded.
fn load_weights(vs: &VarStore, t: &Target, src: Source) -> Result<Source, GdaError> {
    let load = |src: &Source| checkpoint::load_weights(vs, &src.checkpoint.join(checkpoint::MODEL_FILE));
    match load(&src) {
        Ok(()) => Ok(src),
        // A run still training keeps only its newest checkpoint: the one
        // found when the run was checked may be gone. Take the new one.
        Err(e) if src.checkpoint.exists() => Err(e),
        Err(_) => {
            let src = find_source(&t.dir)?;
            load(&src)?;
            Ok(src)
        }
    }
}

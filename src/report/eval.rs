//! The tables and plots of `gda eval`, rendered from the CSV files it
//! writes, so `gda report` can redraw them at any time.
//!
//! The run tables (lm.csv, retrieval.csv, attention.csv) have one row per
//! run and measurement, each naming its run's point (`group`, `variant`,
//! `seed`, `policy`, `requested_ratio`, `ratio`, as in an experiment's
//! summary.csv); the `*_groups.csv` tables aggregate the seeds of each point
//! (mean, sample std, n), and so do the summary and the plots.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::Path;

pub mod bench;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::mean_std;
use super::plot::{plot_lines, Line, Titles};
use super::table::{line, md, number, opt_number, read, read_rows, write_rows_with};
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

pub use self::bench::{average_row, BenchRow, BENCH_CSV, BENCH_ITEMS};

pub const LM_CSV: &str = "lm.csv";
pub const RETRIEVAL_CSV: &str = "retrieval.csv";
pub const ATTENTION_CSV: &str = "attention.csv";
pub const LM_GROUPS_CSV: &str = "lm_groups.csv";
pub const RETRIEVAL_GROUPS_CSV: &str = "retrieval_groups.csv";
pub const ATTENTION_GROUPS_CSV: &str = "attention_groups.csv";

/// Which point of an experiment a run is: the columns every run row of
/// summary.csv and of the eval tables carries. Outside an experiment,
/// `group` is the run's own label and `variant`, `policy` and
/// `requested_ratio` are empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunId {
    /// Runs that differ only in seed share a group (`4:1 shared`, `baseline`).
    pub group: String,
    pub variant: String,
    pub seed: Option<u64>,
    /// The budget policy that turned the requested ratio into heads.
    pub policy: String,
    pub requested_ratio: Option<usize>,
    /// H_s / H_n as trained; None for standard attention.
    pub ratio: Option<f64>,
    /// A scaling grid's cell: (spec key, value) per axis. In the tables,
    /// one column per key, named by it, after `group` (a spec key always
    /// has a dot, no other column does).
    pub grid: Vec<(String, String)>,
}

/// Rows that carry a [`RunId`] in their own columns.
pub trait Identified {
    fn id(&self) -> RunId;
    fn set_id(&mut self, id: &RunId);
}

macro_rules! identified {
    ($($t:ty),*) => {$(
        impl Identified for $t {
            fn id(&self) -> RunId {
                RunId {
                    group: self.group.clone(),
                    variant: self.variant.clone(),
                    seed: self.seed,
                    policy: self.policy.clone(),
                    requested_ratio: self.requested_ratio,
                    ratio: self.ratio,
                    grid: self.grid.clone(),
                }
            }
            fn set_id(&mut self, id: &RunId) {
                self.group = id.group.clone();
                self.variant = id.variant.clone();
                self.seed = id.seed;
                self.policy = id.policy.clone();
                self.requested_ratio = id.requested_ratio;
                self.ratio = id.ratio;
                self.grid = id.grid.clone();
            }
        }
    )*};
}
identified!(LmRow, RetrievalRow, AttentionRow, BenchRow);

/// A row of lm.csv: one run at one context (columns in docs/run-directory.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LmRow {
    pub run: String,
    pub group: String,
    /// Written and read as the grid columns ([`write_run_table`]).
    #[serde(skip)]
    pub grid: Vec<(String, String)>,
    pub variant: String,
    pub seed: Option<u64>,
    pub policy: String,
    pub requested_ratio: Option<usize>,
    #[serde(serialize_with = "opt_number")]
    pub ratio: Option<f64>,
    pub step: usize,
    pub context: usize,
    pub train_context: usize,
    pub tokens: usize,
    #[serde(serialize_with = "number")]
    pub loss: f64,
    #[serde(serialize_with = "number")]
    pub ppl: f64,
    #[serde(serialize_with = "number")]
    pub bpb: f64,
}

/// A row of retrieval.csv: one run, task, context and (NIAH) needle depth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetrievalRow {
    pub run: String,
    pub group: String,
    /// Written and read as the grid columns ([`write_run_table`]).
    #[serde(skip)]
    pub grid: Vec<(String, String)>,
    pub variant: String,
    pub seed: Option<u64>,
    pub policy: String,
    pub requested_ratio: Option<usize>,
    #[serde(serialize_with = "opt_number")]
    pub ratio: Option<f64>,
    pub step: usize,
    pub task: String,
    pub context: usize,
    pub train_context: usize,
    #[serde(serialize_with = "opt_number")]
    pub depth: Option<f64>,
    pub examples: usize,
    pub queries: usize,
    #[serde(serialize_with = "number")]
    pub loss: f64,
    #[serde(serialize_with = "number")]
    pub acc: f64,
    #[serde(serialize_with = "number")]
    pub token_acc: f64,
}

/// A row of attention.csv: one head group of a layer (`head_group` = `all`:
/// the whole layer); the gda-only columns are empty for standard attention.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttentionRow {
    pub run: String,
    pub group: String,
    /// Written and read as the grid columns ([`write_run_table`]).
    #[serde(skip)]
    pub grid: Vec<(String, String)>,
    pub variant: String,
    pub seed: Option<u64>,
    pub policy: String,
    pub requested_ratio: Option<usize>,
    #[serde(serialize_with = "opt_number")]
    pub ratio: Option<f64>,
    pub step: usize,
    pub task: String,
    pub context: usize,
    pub layer: usize,
    pub head_group: String,
    pub heads: usize,
    #[serde(serialize_with = "opt_number")]
    pub lambda: Option<f64>,
    #[serde(serialize_with = "number")]
    pub answer_mass: f64,
    #[serde(serialize_with = "number")]
    pub noise_mass: f64,
    #[serde(serialize_with = "number")]
    pub entropy: f64,
    #[serde(serialize_with = "number")]
    pub sparsity: f64,
    #[serde(serialize_with = "opt_number")]
    pub signal_answer: Option<f64>,
    #[serde(serialize_with = "opt_number")]
    pub noise_answer: Option<f64>,
    pub rows: usize,
}

/// The rows of an eval table, each with its grid cell; none when the file
/// is absent.
fn rows<T: DeserializeOwned + Identified>(path: &Path) -> Result<Vec<T>, GdaError> {
    let mut rows: Vec<T> = match read_rows(path) {
        Err(GdaError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        other => other?,
    };
    let (header, cells) = read(path)?;
    let dotted: Vec<usize> = (0..header.len()).filter(|&i| header[i].contains('.')).collect();
    for (row, cells) in rows.iter_mut().zip(&cells) {
        let mut id = row.id();
        id.grid = dotted
            .iter()
            .filter_map(|&i| cells.get(i).filter(|v| !v.is_empty()).map(|v| (header[i].clone(), v.clone())))
            .collect();
        row.set_id(&id);
    }
    Ok(rows)
}

/// The grid keys of the rows, sorted.
fn grid_keys<R: Identified>(rows: &[R]) -> Vec<String> {
    let mut keys: Vec<String> = rows.iter().flat_map(|r| r.id().grid.into_iter().map(|c| c.0)).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `id`'s value of each of `keys` (empty where it has none).
fn grid_values(id: &RunId, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| id.grid.iter().find(|c| &c.0 == k).map(|c| c.1.clone()).unwrap_or_default()).collect()
}

/// Writes a run table (lm.csv, retrieval.csv, attention.csv): the row
/// structs' columns with the grid keys inserted after `group`.
pub fn write_run_table<T: Serialize + Identified>(path: &Path, rows: &[T]) -> Result<(), GdaError> {
    let keys = grid_keys(rows);
    write_rows_with(path, rows, "group", &keys, |r| grid_values(&r.id(), &keys))
}

/// A number with `digits` decimals; "–" for a missing or undefined one.
fn fixed(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if !v.is_nan() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

/// A ratio as `4:1` (three decimals when not whole); "–" for none.
fn ratio_label(r: Option<f64>) -> String {
    match r {
        Some(r) if r.fract() == 0.0 => format!("{r}:1"),
        Some(r) => format!("{r:.3}:1"),
        None => "–".into(),
    }
}

/// Mean and sample std over the seeds of a point (std only for n ≥ 2).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

/// The statistics of the defined values; None if there are none (a column
/// standard attention leaves empty).
fn stat(vals: impl IntoIterator<Item = Option<f64>>) -> Option<Stat> {
    let v: Vec<f64> = vals.into_iter().flatten().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    let (mean, std) = mean_std(&v);
    Some(Stat { mean, std: (v.len() > 1).then_some(std), n: v.len() })
}

/// `mean ± std` (just the mean for one seed), "–" for none.
fn pm(s: Option<Stat>, digits: usize) -> String {
    match s {
        None => "–".into(),
        Some(Stat { mean, std: Some(sd), .. }) => format!("{mean:.digits$} ± {sd:.digits$}"),
        Some(Stat { mean, .. }) => format!("{mean:.digits$}"),
    }
}

/// CSV cells `_mean`, `_std` of a statistic (empty where undefined).
fn stat_cells(s: Option<Stat>) -> [String; 2] {
    match s {
        None => Default::default(),
        Some(s) => [format!("{}", s.mean), s.std.map(|v| format!("{v}")).unwrap_or_default()],
    }
}

/// Rows with equal `key`, in first-seen order.
fn group_by<R, K: PartialEq>(rows: &[R], key: impl Fn(&R) -> K) -> Vec<Vec<&R>> {
    let mut out: Vec<(K, Vec<&R>)> = Vec::new();
    for r in rows {
        let k = key(r);
        match out.iter_mut().find(|o| o.0 == k) {
            Some(o) => o.1.push(r),
            None => out.push((k, vec![r])),
        }
    }
    out.into_iter().map(|o| o.1).collect()
}

/// The rows of each point (runs of one group) with equal `key`, in
/// first-seen order: the seeds a point's aggregate row is computed over.
fn by_point<R: Identified, K: PartialEq>(rows: &[R], key: impl Fn(&R) -> K) -> Vec<Vec<&R>> {
    group_by(rows, |r| (r.id().group, key(r)))
}

/// The point columns of an aggregate row (the seed is what it aggregates);
/// the grid columns follow `group`.
const POINT_COLUMNS: [&str; 5] = ["group", "variant", "policy", "requested_ratio", "ratio"];

fn point_cells(id: &RunId, grid: &[String]) -> Vec<String> {
    let mut cells = vec![id.group.clone()];
    cells.extend(grid_values(id, grid));
    cells.extend([
        id.variant.clone(),
        id.policy.clone(),
        id.requested_ratio.map(|r| r.to_string()).unwrap_or_default(),
        id.ratio.map(|r| format!("{r}")).unwrap_or_default(),
    ]);
    cells
}

/// Writes an aggregate table (header: the point columns, `keys`, `n`, then
/// `<value>_mean`, `<value>_std` per value); without rows, removes the one
/// an earlier evaluation left.
fn write_groups(
    path: &Path,
    grid: &[String],
    keys: &[&str],
    values: &[&str],
    rows: &[Vec<String>],
) -> Result<(), GdaError> {
    if rows.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("cannot remove", path)(e)),
            _ => Ok(()),
        };
    }
    let mut header: Vec<String> = vec![POINT_COLUMNS[0].to_string()];
    header.extend(grid.iter().cloned());
    header.extend(POINT_COLUMNS[1..].iter().chain(keys).map(|c| c.to_string()));
    header.push("n".into());
    for v in values {
        header.extend([format!("{v}_mean"), format!("{v}_std")]);
    }
    let mut bytes = line(&header);
    for r in rows {
        bytes.extend(line(r));
    }
    atomic_write(path, &bytes).map_err(io("cannot write", path))
}

/// What every row of a table shares, for a plot's subtitle: the budget
/// policy, the checkpoint step, and `extra` (the scored budget).
fn held<'a>(policies: impl Iterator<Item = &'a str>, steps: impl Iterator<Item = usize>, extra: &str) -> String {
    let mut parts = Vec::new();
    // The baseline has no policy; the others share theirs.
    let policies: Vec<&str> = policies.filter(|p| !p.is_empty()).collect();
    if let Some(p) = policies.first().filter(|p| !p.is_empty() && policies.iter().all(|q| q == *p)) {
        parts.push(format!("budget policy {p}"));
    }
    let steps: Vec<usize> = steps.collect();
    let (lo, hi) = (steps.iter().min(), steps.iter().max());
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo == hi => parts.push(format!("checkpoint step {lo}")),
        (Some(lo), Some(hi)) => parts.push(format!("checkpoint steps {lo}–{hi}")),
        _ => {}
    }
    if !extra.is_empty() {
        parts.push(extra.to_string());
    }
    parts.join(", ")
}

/// The one value every row has, if they all have the same.
fn common<T: PartialEq + Copy>(mut vals: impl Iterator<Item = T>) -> Option<T> {
    let first = vals.next()?;
    vals.all(|v| v == first).then_some(first)
}

/// One section of the summary: its heading and explanation, the table per
/// point (seeds aggregated) and the table per run.
struct Section {
    intro: String,
    per_point: String,
    per_run: String,
}

/// What `eval_report` renders: `summary.md` (per-point and per-run tables)
/// and the shorter text for a terminal (per-point tables only when runs
/// share points, one line per point rather than one per seed).
pub struct EvalReport {
    pub markdown: String,
    pub brief: String,
}

/// Renders `summary.md`, the `*_groups.csv` aggregates and the plots of an
/// eval directory from its run tables.
pub fn eval_report(dir: &Path) -> Result<EvalReport, GdaError> {
    let lm: Vec<LmRow> = rows(&dir.join(LM_CSV))?;
    let ret: Vec<RetrievalRow> = rows(&dir.join(RETRIEVAL_CSV))?;
    let att: Vec<AttentionRow> = rows(&dir.join(ATTENTION_CSV))?;
    let bench: Vec<BenchRow> = rows(&dir.join(BENCH_CSV))?;
    // A plot whose table is gone belongs to an earlier evaluation.
    for (empty, plot) in [
        (lm.is_empty(), "bpb_vs_context.svg"),
        (ret.is_empty(), "accuracy_vs_context.svg"),
        (att.is_empty(), "attention_noise.svg"),
        (bench.is_empty(), bench::BENCH_PLOT),
        (bench.is_empty(), bench::BENCH_COMPARISONS_CSV),
    ] {
        if empty {
            // Absent already is the state wanted; any other failure shows up
            // as a stale plot beside a summary that does not mention it.
            let _ = std::fs::remove_file(dir.join(plot));
        }
    }
    if lm.is_empty() && ret.is_empty() && att.is_empty() && bench.is_empty() {
        return Err(input(format!(
            "{} holds no evaluation results ({LM_CSV}, {RETRIEVAL_CSV}, {ATTENTION_CSV}, {BENCH_CSV}); run gda eval first",
            dir.display()
        )));
    }
    // Runs share points (seeds of an experiment): show the points first.
    let grouped = lm.iter().any(|r| r.run != r.group)
        || ret.iter().any(|r| r.run != r.group)
        || att.iter().any(|r| r.run != r.group)
        || bench.iter().any(|r| r.run != r.group);
    // One colour and marker per point, the same in every plot.
    let mut points: Vec<String> = Vec::new();
    for g in lm
        .iter()
        .map(|r| &r.group)
        .chain(ret.iter().map(|r| &r.group))
        .chain(att.iter().map(|r| &r.group))
        .chain(bench.iter().map(|r| &r.group))
    {
        if !points.contains(g) {
            points.push(g.clone());
        }
    }
    let style_of = |g: &str| points.iter().position(|p| p == g).unwrap_or(0);
    let mut sections = Vec::new();
    if !lm.is_empty() {
        sections.push(lm_section(dir, &lm, &style_of)?);
    }
    write_lm_groups(dir, &lm)?;
    if !ret.is_empty() {
        sections.push(retrieval_section(dir, &ret, &style_of)?);
    }
    write_retrieval_groups(dir, &ret)?;
    if !att.is_empty() {
        sections.push(attention_section(dir, &att)?);
    }
    write_attention_groups(dir, &att)?;
    if !bench.is_empty() {
        sections.push(bench::bench_section(dir, &bench, &style_of)?);
    }
    bench::write_bench_groups(dir, &bench)?;
    let (mut markdown, mut brief) = (String::new(), String::new());
    for s in &sections {
        markdown += &s.intro;
        brief += &s.intro;
        if grouped {
            markdown += &format!("Per point: mean ± sample std over its seeds (n runs).\n\n{}\n", s.per_point);
            markdown += &format!("Per run:\n\n{}\n", s.per_run);
            brief += &format!("Per point: mean ± sample std over its seeds (n runs).\n\n{}\n", s.per_point);
        } else {
            markdown += &format!("{}\n", s.per_run);
            brief += &format!("{}\n", s.per_run);
        }
    }
    if grouped {
        brief += "Per-run rows: summary.md and the run tables (lm.csv, retrieval.csv, attention.csv, bench.csv); per-point aggregates: *_groups.csv.\n";
    }
    let path = dir.join("summary.md");
    atomic_write(&path, markdown.as_bytes()).map_err(io("cannot write", &path))?;
    Ok(EvalReport { markdown, brief })
}

fn lm_section(dir: &Path, lm: &[LmRow], style_of: &dyn Fn(&str) -> usize) -> Result<Section, GdaError> {
    let intro = "## Held-out language modelling\n\nLoss in nats/token over a fixed token budget of the validation text; contexts past `train ctx` are extrapolation.\n\n".to_string();
    let mut per_run =
        "| run | context | train ctx | tokens | loss | ppl | bpb |\n|---|---|---|---|---|---|---|\n".to_string();
    for r in lm {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            r.context,
            r.train_context,
            r.tokens,
            fixed(Some(r.loss), 4),
            fixed(Some(r.ppl), 3),
            fixed(Some(r.bpb), 4)
        );
    }
    let mut per_point =
        "| point | ratio | context | train ctx | n | loss | ppl | bpb |\n|---|---|---|---|---|---|---|---|\n"
            .to_string();
    let mut lines: Vec<Line> = Vec::new();
    for m in by_point(lm, |r| r.context) {
        let r = m[0];
        let s = |f: fn(&LmRow) -> f64| stat(m.iter().map(|r| Some(f(r))));
        let (loss, ppl, bpb) = (s(|r| r.loss), s(|r| r.ppl), s(|r| r.bpb));
        let _ = writeln!(
            per_point,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            ratio_label(r.ratio),
            r.context,
            r.train_context,
            m.len(),
            pm(loss, 4),
            pm(ppl, 3),
            pm(bpb, 4)
        );
        if let Some(b) = bpb {
            push_point(&mut lines, &r.group, style_of(&r.group), false, (r.context as f64, b));
        }
    }
    let tokens =
        common(lm.iter().map(|r| r.tokens)).map(|t| format!("{t} tokens scored per context")).unwrap_or_default();
    let held = held(lm.iter().map(|r| r.policy.as_str()), lm.iter().map(|r| r.step), &tokens);
    let titles = Titles {
        title: "held-out bits per byte vs context length",
        held: &held,
        x: "context (tokens)",
        y: "bits per byte (mean ± std over seeds)",
    };
    plot_lines(&dir.join("bpb_vs_context.svg"), &titles, true, &lines)?;
    Ok(Section { intro, per_point, per_run })
}

/// Adds (x, mean ± std) to the line `label`, making it if new; points stay
/// sorted by x.
fn push_point(lines: &mut Vec<Line>, label: &str, style: usize, dashed: bool, (x, s): (f64, Stat)) {
    if !x.is_finite() || !s.mean.is_finite() {
        return;
    }
    let i = match lines.iter().position(|l| l.label == label) {
        Some(i) => i,
        None => {
            lines.push(Line { label: label.to_string(), points: Vec::new(), dashed, style });
            lines.len() - 1
        }
    };
    let pts = &mut lines[i].points;
    pts.push((x, s.mean, s.std.unwrap_or(0.0)));
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
}

fn write_lm_groups(dir: &Path, lm: &[LmRow]) -> Result<(), GdaError> {
    let grid = grid_keys(lm);
    let rows: Vec<Vec<String>> = by_point(lm, |r| (r.context, r.train_context, r.tokens))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.context.to_string(),
                r.train_context.to_string(),
                r.tokens.to_string(),
                m.len().to_string(),
            ]);
            for f in [|r: &LmRow| r.loss, |r: &LmRow| r.ppl, |r: &LmRow| r.bpb] {
                cells.extend(stat_cells(stat(m.iter().map(|r| Some(f(r))))));
            }
            cells
        })
        .collect();
    write_groups(
        &dir.join(LM_GROUPS_CSV),
        &grid,
        &["context", "train_context", "tokens"],
        &["loss", "ppl", "bpb"],
        &rows,
    )
}

fn retrieval_section(dir: &Path, ret: &[RetrievalRow], style_of: &dyn Fn(&str) -> usize) -> Result<Section, GdaError> {
    let intro = "## Retrieval\n\nExact match: a question counts only if every answer token is the model's top choice. NIAH rows are per needle depth (0 = start of the haystack).\n\n".to_string();
    let depth = |d: Option<f64>| d.map(|d| d.to_string()).unwrap_or_else(|| "–".into());
    let mut per_run = "| run | task | context | train ctx | depth | questions | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n".to_string();
    for r in ret {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            md(&r.task),
            r.context,
            r.train_context,
            depth(r.depth),
            r.queries,
            fixed(Some(r.acc), 3),
            fixed(Some(r.token_acc), 3),
            fixed(Some(r.loss), 4)
        );
    }
    let mut per_point = "| point | ratio | task | context | depth | n | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n".to_string();
    for m in by_point(ret, |r| (r.task.clone(), r.context, r.depth.map(f64::to_bits))) {
        let r = m[0];
        let s = |f: fn(&RetrievalRow) -> f64| stat(m.iter().map(|r| Some(f(r))));
        let _ = writeln!(
            per_point,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            ratio_label(r.ratio),
            md(&r.task),
            r.context,
            depth(r.depth),
            m.len(),
            pm(s(|r| r.acc), 3),
            pm(s(|r| r.token_acc), 3),
            pm(s(|r| r.loss), 4)
        );
    }
    // Accuracy per context: each run's mean over depths (NIAH), then mean ±
    // std of those over the point's seeds.
    let run_means: Vec<RetrievalRow> = group_by(ret, |r| (r.run.clone(), r.task.clone(), r.context))
        .into_iter()
        .map(|m| RetrievalRow { acc: mean_std(&m.iter().map(|r| r.acc).collect::<Vec<_>>()).0, ..m[0].clone() })
        .collect();
    let mut lines: Vec<Line> = Vec::new();
    for m in by_point(&run_means, |r| r.task.clone()) {
        for c in group_by(&m, |r| r.context) {
            if let Some(a) = stat(c.iter().map(|r| Some(r.acc))) {
                let r = c[0];
                push_point(
                    &mut lines,
                    &format!("{} {}", r.group, r.task),
                    style_of(&r.group),
                    false,
                    (r.context as f64, a),
                );
            }
        }
    }
    let examples = common(ret.iter().map(|r| r.examples))
        .map(|n| format!("{n} examples per context and depth"))
        .unwrap_or_default();
    let held = held(ret.iter().map(|r| r.policy.as_str()), ret.iter().map(|r| r.step), &examples);
    let titles = Titles {
        title: "retrieval accuracy vs context length",
        held: &held,
        x: "context (tokens)",
        y: "exact-match accuracy (mean ± std over seeds)",
    };
    plot_lines(&dir.join("accuracy_vs_context.svg"), &titles, true, &lines)?;
    Ok(Section { intro, per_point, per_run })
}

fn write_retrieval_groups(dir: &Path, ret: &[RetrievalRow]) -> Result<(), GdaError> {
    let grid = grid_keys(ret);
    let rows: Vec<Vec<String>> = by_point(ret, |r| (r.task.clone(), r.context, r.depth.map(f64::to_bits), r.examples))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.task.clone(),
                r.context.to_string(),
                r.train_context.to_string(),
                r.depth.map(|d| format!("{d}")).unwrap_or_default(),
                r.examples.to_string(),
                m.len().to_string(),
            ]);
            for f in [|r: &RetrievalRow| r.acc, |r: &RetrievalRow| r.token_acc, |r: &RetrievalRow| r.loss] {
                cells.extend(stat_cells(stat(m.iter().map(|r| Some(f(r))))));
            }
            cells
        })
        .collect();
    write_groups(
        &dir.join(RETRIEVAL_GROUPS_CSV),
        &grid,
        &["task", "context", "train_context", "depth", "examples"],
        &["acc", "token_acc", "loss"],
        &rows,
    )
}

/// The measured columns of attention.csv, in order.
type AttField = fn(&AttentionRow) -> Option<f64>;
const ATT_VALUES: [(&str, AttField); 7] = [
    ("lambda", |r| r.lambda),
    ("answer_mass", |r| Some(r.answer_mass)),
    ("noise_mass", |r| Some(r.noise_mass)),
    ("entropy", |r| Some(r.entropy)),
    ("sparsity", |r| Some(r.sparsity)),
    ("signal_answer", |r| r.signal_answer),
    ("noise_answer", |r| r.noise_answer),
];

fn attention_section(dir: &Path, att: &[AttentionRow]) -> Result<Section, GdaError> {
    let intro = "## Attention on retrieval questions\n\nEffective maps (signal − λ·noise for gda, softmax for standard) at each question's position, averaged over all heads of a layer (per-group rows are in attention.csv). Answer mass: weight on the answer span; noise mass: |weight| everywhere else; entropy in nats of |weights| normalised; sparsity: Hoyer (1 = one position, 0 = uniform). Under gda, signal and noise answer: the answer mass of the signal map and of the subtracted noise map.\n\n".to_string();
    let all: Vec<AttentionRow> = att.iter().filter(|r| r.head_group == "all").cloned().collect();
    let mut per_run = "| run | task | context | layer | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n".to_string();
    for r in &all {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            md(&r.task),
            r.context,
            r.layer,
            fixed(r.lambda, 3),
            fixed(Some(r.answer_mass), 3),
            fixed(Some(r.noise_mass), 3),
            fixed(Some(r.entropy), 3),
            fixed(Some(r.sparsity), 3),
            fixed(r.signal_answer, 3),
            fixed(r.noise_answer, 3)
        );
    }
    let mut per_point = "| point | task | context | layer | n | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n".to_string();
    let mut noise: Vec<Line> = Vec::new();
    let mut answer: Vec<Line> = Vec::new();
    for m in by_point(&all, |r| (r.task.clone(), r.context, r.layer)) {
        let r = m[0];
        let s: Vec<Option<Stat>> = ATT_VALUES.iter().map(|(_, f)| stat(m.iter().map(|r| f(r)))).collect();
        let _ = write!(per_point, "| {} | {} | {} | {} | {} |", r.group, md(&r.task), r.context, r.layer, m.len());
        for v in &s {
            let _ = write!(per_point, " {} |", pm(*v, 3));
        }
        per_point += "\n";
        // One colour per (point, task, context): its noise line solid, its
        // answer line dashed.
        let label = format!("{} {}@{}", r.group, r.task, r.context);
        let style = noise.iter().position(|l| l.label == label).unwrap_or(noise.len());
        if let Some(n) = s[2] {
            push_point(&mut noise, &label, style, false, (r.layer as f64, n));
        }
        if let Some(a) = s[1] {
            push_point(&mut answer, &format!("{label} (answer)"), style, true, (r.layer as f64, a));
        }
    }
    let held = held(all.iter().map(|r| r.policy.as_str()), all.iter().map(|r| r.step), "");
    let titles = Titles {
        title: "attention noise (solid) and answer mass (dashed) per layer",
        held: &held,
        x: "layer",
        y: "attention mass (mean ± std over seeds)",
    };
    noise.extend(answer);
    plot_lines(&dir.join("attention_noise.svg"), &titles, true, &noise)?;
    Ok(Section { intro, per_point, per_run })
}

fn write_attention_groups(dir: &Path, att: &[AttentionRow]) -> Result<(), GdaError> {
    let grid = grid_keys(att);
    let rows: Vec<Vec<String>> = by_point(att, |r| (r.task.clone(), r.context, r.layer, r.head_group.clone(), r.heads))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.task.clone(),
                r.context.to_string(),
                r.layer.to_string(),
                r.head_group.clone(),
                r.heads.to_string(),
                m.len().to_string(),
            ]);
            for (_, f) in ATT_VALUES {
                cells.extend(stat_cells(stat(m.iter().map(|r| f(r)))));
            }
            cells
        })
        .collect();
    let values: Vec<&str> = ATT_VALUES.iter().map(|v| v.0).collect();
    write_groups(
        &dir.join(ATTENTION_GROUPS_CSV),
        &grid,
        &["task", "context", "layer", "head_group", "heads"],
        &values,
        &rows,
    )
}

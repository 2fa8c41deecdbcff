//! The tables and plots of `gda eval`, rendered from the CSV files it
//! writes, so `gda report` can redraw them at any time.
//!
//! The run tables (lm.csv, retrieval.csv, attention.csv) have one row per
//! run and measurement, each naming its run's point (`group`, `variant`,
//! `seed`, `policy`, `requested_ratio`, `ratio`, as in an experiment's
//! summary.csv); the `*_groups.csv` tables aggregate the seeds of each point
//! (mean, sample std, n), and so do the summary and the plots.

use std::io::ErrorKind;
use std::path::Path;

mod attention;
pub mod bench;
mod lm;
mod retrieval;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::mean_std;
use super::plot::Line;
use super::table::{line, read, read_rows, write_rows_with};
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

pub use self::attention::{AttentionRow, ATTENTION_CSV, ATTENTION_GROUPS_CSV};
pub use self::bench::{average_row, BenchRow, BENCH_CSV, BENCH_ITEMS};
pub use self::lm::{LmRow, LM_CSV, LM_GROUPS_CSV};
pub use self::retrieval::{RetrievalRow, RETRIEVAL_CSV, RETRIEVAL_GROUPS_CSV};

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
    remove_stale(
        dir,
        &[
            (lm.is_empty(), "bpb_vs_context.svg"),
            (ret.is_empty(), "accuracy_vs_context.svg"),
            (att.is_empty(), "attention_noise.svg"),
            (bench.is_empty(), bench::BENCH_PLOT),
            (bench.is_empty(), bench::BENCH_COMPARISONS_CSV),
        ],
    );
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
    let points = first_seen(
        lm.iter()
            .map(|r| &r.group)
            .chain(ret.iter().map(|r| &r.group))
            .chain(att.iter().map(|r| &r.group))
            .chain(bench.iter().map(|r| &r.group)),
    );
    let style_of = |g: &str| points.iter().position(|p| p == g).unwrap_or(0);
    let mut sections = Vec::new();
    if !lm.is_empty() {
        sections.push(lm::lm_section(dir, &lm, &style_of)?);
    }
    lm::write_lm_groups(dir, &lm)?;
    if !ret.is_empty() {
        sections.push(retrieval::retrieval_section(dir, &ret, &style_of)?);
    }
    retrieval::write_retrieval_groups(dir, &ret)?;
    if !att.is_empty() {
        sections.push(attention::attention_section(dir, &att)?);
    }
    attention::write_attention_groups(dir, &att)?;
    if !bench.is_empty() {
        sections.push(bench::bench_section(dir, &bench, &style_of)?);
    }
    bench::write_bench_groups(dir, &bench)?;
    let report = render(&sections, grouped);
    let path = dir.join("summary.md");
    atomic_write(&path, report.markdown.as_bytes()).map_err(io("cannot write", &path))?;
    Ok(report)
}

/// Removes each file of `dir` whose table is empty.
fn remove_stale(dir: &Path, files: &[(bool, &str)]) {
    for &(empty, file) in files {
        if empty {
            // Absent already is the state wanted; any other failure shows up
            // as a stale plot beside a summary that does not mention it.
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
}

/// The distinct values, in first-seen order.
fn first_seen<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// The summary and the terminal's text from the sections; with `grouped`,
/// each section's per-point table comes first.
fn render(sections: &[Section], grouped: bool) -> EvalReport {
    let (mut markdown, mut brief) = (String::new(), String::new());
    for s in sections {
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
    EvalReport { markdown, brief }
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

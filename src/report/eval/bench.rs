//! The zero-shot benchmark tables of `gda eval --suite bench`: bench.csv
//! (one row per run, task and context, plus each run's `average` over its
//! tasks), bench_groups.csv (seeds of a point aggregated), paired
//! comparisons against 1:1 and the baseline, and accuracy against ratio.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{by_point, fixed, held, point_cells, push_point, ratio_label, stat, write_groups, Identified, Section};
use crate::error::{io, GdaError};
use crate::report::plot::{plot_lines, Line, Titles};
use crate::report::stats::{fmt_p, Paired};
use crate::report::table::{line, md, number, opt_number};
use crate::util::fs::atomic_write;

pub const BENCH_CSV: &str = "bench.csv";
pub const BENCH_GROUPS_CSV: &str = "bench_groups.csv";
pub const BENCH_COMPARISONS_CSV: &str = "bench_comparisons.csv";
/// Per-item scores: one JSON object per run, context, task and item.
pub const BENCH_ITEMS: &str = "bench_items.jsonl";
pub const BENCH_PLOT: &str = "bench_vs_ratio.svg";
/// The `task` of a run's average over its tasks.
pub const AVERAGE: &str = "average";

/// A row of bench.csv: one run, task and context (columns in
/// docs/run-directory.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BenchRow {
    pub run: String,
    pub group: String,
    /// Written and read as the grid columns ([`super::write_run_table`]).
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
    /// Items scored.
    pub n: usize,
    #[serde(serialize_with = "number")]
    pub acc: f64,
    #[serde(serialize_with = "opt_number")]
    pub acc_stderr: Option<f64>,
    #[serde(serialize_with = "opt_number")]
    pub acc_norm: Option<f64>,
    #[serde(serialize_with = "opt_number")]
    pub acc_norm_stderr: Option<f64>,
    #[serde(serialize_with = "opt_number")]
    pub ppl: Option<f64>,
    /// Items truncated on the left to fit the context.
    pub truncated: usize,
}

/// A run's average over its task rows (at one context): the mean of acc
/// over the tasks, of acc_norm over the tasks that have it; n and
/// truncated are summed.
pub fn average_row(tasks: &[BenchRow]) -> Option<BenchRow> {
    let first = tasks.first()?;
    let accs: Vec<f64> = tasks.iter().map(|r| r.acc).collect();
    let norms: Vec<f64> = tasks.iter().filter_map(|r| r.acc_norm).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Some(BenchRow {
        task: AVERAGE.into(),
        n: tasks.iter().map(|r| r.n).sum(),
        acc: mean(&accs),
        acc_stderr: None,
        acc_norm: (!norms.is_empty()).then(|| mean(&norms)),
        acc_norm_stderr: None,
        ppl: None,
        truncated: tasks.iter().map(|r| r.truncated).sum(),
        ..first.clone()
    })
}

/// `value ± stderr` with three decimals.
fn with_se(v: Option<f64>, se: Option<f64>) -> String {
    match (v, se) {
        (Some(v), Some(se)) => format!("{v:.3} ± {se:.3}"),
        (v, _) => fixed(v, 3),
    }
}

/// One comparison of two points' acc on a task, paired by seed.
struct Comparison {
    a: String,
    b: String,
    task: String,
    context: usize,
    seeds: Vec<u64>,
    test: Paired,
}

/// The experiment a group belongs to when several were evaluated together
/// (`sweep/4:1 shared` → `sweep/`), else "".
fn prefix(group: &str) -> &str {
    group.rsplit_once('/').map(|(p, _)| &group[..p.len() + 1]).unwrap_or("")
}

/// Each point of an experiment against 1:1 (shared) and against the
/// baseline of the same experiment and grid cell, on acc, per task and
/// context.
fn comparisons(rows: &[BenchRow]) -> Vec<Comparison> {
    let points = by_point(rows, |r| (r.task.clone(), r.context));
    let is_one = |r: &BenchRow| r.variant == "shared" && r.requested_ratio == Some(1);
    let is_base = |r: &BenchRow| r.variant == "baseline";
    let mut out = Vec::new();
    for a in &points {
        let ra = a[0];
        if ra.variant.is_empty() || is_base(ra) {
            continue;
        }
        for want in [&is_one as &dyn Fn(&BenchRow) -> bool, &is_base] {
            if want(ra) {
                continue;
            }
            let Some(b) = points.iter().find(|b| {
                let rb = b[0];
                want(rb)
                    && rb.task == ra.task
                    && rb.context == ra.context
                    && rb.grid == ra.grid
                    && prefix(&rb.group) == prefix(&ra.group)
            }) else {
                continue;
            };
            let (mut seeds, mut diffs) = (Vec::new(), Vec::new());
            for r in a {
                if let Some(o) = b.iter().find(|o| o.seed == r.seed) {
                    seeds.push(r.seed.unwrap_or(0));
                    diffs.push(r.acc - o.acc);
                }
            }
            out.push(Comparison {
                a: ra.group.clone(),
                b: b[0].group.clone(),
                task: ra.task.clone(),
                context: ra.context,
                seeds,
                test: Paired::new(diffs),
            });
        }
    }
    out
}

fn comparisons_markdown(cmp: &[Comparison]) -> String {
    if cmp.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "Paired comparisons: Δ = A − B in acc, paired by seed (positive: A is more accurate); 95% CI: Student t on the paired differences; p: two-sided paired t-test.\n\n| A | B | task | context | n | mean Δ | 95% CI | p | verdict |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cmp {
        let t = &c.test;
        let mean = if t.n() == 0 { "–".into() } else { format!("{:+.4}", t.mean) };
        let ci = t.ci.map(|(l, h)| format!("[{l:+.4}, {h:+.4}]")).unwrap_or_else(|| "–".into());
        let p = t.p.map(fmt_p).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {mean} | {ci} | {p} | {} |",
            c.a,
            c.b,
            c.task,
            c.context,
            t.n(),
            t.verdict(&c.a, &c.b, "acc")
        );
    }
    s + "\n"
}

fn write_comparisons(dir: &Path, cmp: &[Comparison]) -> Result<(), GdaError> {
    let path = dir.join(BENCH_COMPARISONS_CSV);
    if cmp.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default();
    let mut bytes = line(
        ["a", "b", "task", "context", "n", "seeds", "mean_diff", "std_diff", "ci95_low", "ci95_high", "p_value"]
            .iter()
            .map(|s| s.to_string()),
    );
    for c in cmp {
        let t = &c.test;
        let seeds = c.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ");
        bytes.extend(line([
            c.a.clone(),
            c.b.clone(),
            c.task.clone(),
            c.context.to_string(),
            t.n().to_string(),
            seeds,
            num((t.n() > 0).then_some(t.mean)),
            num((t.n() > 1).then_some(t.std)),
            num(t.ci.map(|c| c.0)),
            num(t.ci.map(|c| c.1)),
            num(t.p),
        ]));
    }
    atomic_write(&path, &bytes).map_err(io("cannot write", &path))
}

pub(super) fn bench_section(
    dir: &Path,
    rows: &[BenchRow],
    style_of: &dyn Fn(&str) -> usize,
) -> Result<Section, GdaError> {
    let intro = "## Zero-shot benchmarks\n\nlm-evaluation-harness 0.4 scoring (docs/bench.md): acc = argmax of the summed log-likelihood of each choice, acc_norm = of the log-likelihood per character of the choice, ± the standard error of the mean over items; lambada: acc = the last word is the greedy continuation, ppl = exp(−mean log-likelihood). `average`: the mean over the run's tasks. `truncated`: items cut on the left to fit the context.\n\n".to_string();
    let mut per_run =
        "| run | task | context | items | acc | acc_norm | ppl | truncated |\n|---|---|---|---|---|---|---|---|\n"
            .to_string();
    for r in rows {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            md(&r.task),
            r.context,
            r.n,
            with_se(Some(r.acc), r.acc_stderr),
            with_se(r.acc_norm, r.acc_norm_stderr),
            fixed(r.ppl, 3),
            r.truncated
        );
    }
    let mut per_point =
        "| point | ratio | task | context | n | acc | acc_norm | ppl |\n|---|---|---|---|---|---|---|---|\n"
            .to_string();
    for m in by_point(rows, |r| (r.task.clone(), r.context)) {
        let r = m[0];
        let _ = writeln!(
            per_point,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            ratio_label(r.ratio),
            md(&r.task),
            r.context,
            m.len(),
            super::pm(stat(m.iter().map(|r| Some(r.acc))), 3),
            super::pm(stat(m.iter().map(|r| r.acc_norm)), 3),
            super::pm(stat(m.iter().map(|r| r.ppl)), 3),
        );
    }
    per_point += "\n";
    let cmp = comparisons(rows);
    per_point += &comparisons_markdown(&cmp);
    write_comparisons(dir, &cmp)?;
    plot(dir, rows, style_of)?;
    Ok(Section { intro, per_point, per_run })
}

/// Average acc against the trained ratio, one line per variant (and
/// context when several); the baseline, which has no ratio, as a dashed
/// level across the others. No ratio at all: no plot.
fn plot(dir: &Path, rows: &[BenchRow], style_of: &dyn Fn(&str) -> usize) -> Result<(), GdaError> {
    let path = dir.join(BENCH_PLOT);
    let avg: Vec<&BenchRow> = rows.iter().filter(|r| r.task == AVERAGE).collect();
    let several = avg.iter().any(|r| r.context != avg[0].context);
    let name = |r: &BenchRow| {
        let v = if r.variant.is_empty() { r.group.clone() } else { format!("{}{}", prefix(&r.group), r.variant) };
        if several {
            format!("{v} @{}", r.context)
        } else {
            v
        }
    };
    let mut lines: Vec<Line> = Vec::new();
    let mut levels = Vec::new();
    let owned: Vec<BenchRow> = avg.iter().map(|r| (*r).clone()).collect();
    for m in by_point(&owned, |r| r.context) {
        let r = m[0];
        let Some(s) = stat(m.iter().map(|r| Some(r.acc))) else { continue };
        match r.ratio {
            Some(x) => push_point(&mut lines, &name(r), style_of(&r.group), false, (x, s)),
            None => levels.push((name(r), style_of(&r.group), s)),
        }
    }
    if lines.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let xs: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, &x| (a.0.min(x), a.1.max(x)));
    for (label, style, s) in levels {
        let pts = if lo < hi { vec![lo, hi] } else { vec![lo] };
        lines.push(Line {
            label,
            points: pts.into_iter().map(|x| (x, s.mean, s.std.unwrap_or(0.0))).collect(),
            dashed: true,
            style,
        });
    }
    let items = super::common(avg.iter().map(|r| r.n)).map(|n| format!("{n} items per run")).unwrap_or_default();
    let held = held(avg.iter().map(|r| r.policy.as_str()), avg.iter().map(|r| r.step), &items);
    let titles = Titles {
        title: "zero-shot accuracy (average over tasks) vs H_s/H_n",
        held: &held,
        x: "signal : noise heads (H_s / H_n)",
        y: "acc (mean ± std over seeds)",
    };
    plot_lines(&path, &titles, false, &lines)
}

pub(super) fn write_bench_groups(dir: &Path, rows: &[BenchRow]) -> Result<(), GdaError> {
    let grid = super::grid_keys(rows);
    let out: Vec<Vec<String>> = by_point(rows, |r| (r.task.clone(), r.context, r.train_context, r.n))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.task.clone(),
                r.context.to_string(),
                r.train_context.to_string(),
                r.n.to_string(),
                m.len().to_string(),
            ]);
            for f in [|r: &BenchRow| Some(r.acc), |r: &BenchRow| r.acc_norm, |r: &BenchRow| r.ppl] {
                cells.extend(super::stat_cells(stat(m.iter().map(|r| f(r)))));
            }
            cells
        })
        .collect();
    write_groups(
        &dir.join(BENCH_GROUPS_CSV),
        &grid,
        &["task", "context", "train_context", "items"],
        &["acc", "acc_norm", "ppl"],
        &out,
    )
}

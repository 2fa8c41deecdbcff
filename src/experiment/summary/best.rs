//! The question a scaling grid asks: in each grid cell, which ratio has the
//! lowest mean validation loss, and can the seeds tell it from the others?
//! `best_ratio.csv`, `best_ratio.md` and the plots of the best ratio against
//! each numeric grid axis and of the loss against the ratio per cell.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::{cells, grid_keys, Row};
use crate::error::{io, GdaError};
use crate::experiment::{cell_label, Cell, Variant};
use crate::report::mean_std;
use crate::report::plot::{
    color, draw_markers, integer_bounds, plot_err, plot_lines, svg_chart, LegendEntry, Line, Titles,
};
use crate::report::stats::{fmt_p, Paired};
use crate::report::table::line;
use crate::util::fs::atomic_write;

/// One ratio of a cell: requested G, mean val loss over its finished seeds,
/// and (seed, val loss) of each.
struct Arm {
    ratio: usize,
    mean: f64,
    seeds: Vec<(u64, f64)>,
}

/// The answer for one grid cell.
pub struct Best {
    pub cell: Cell,
    /// (ratio, mean val loss, finished seeds) of every ratio with a finished
    /// seed, lowest mean first; the first is the best.
    pub ranked: Vec<(usize, f64, usize)>,
    /// The runner-up and the paired difference best − runner-up.
    pub runner_up: Option<(usize, Paired)>,
    /// best − 1:1, paired by seed; None when the best is 1:1 or the cell has no 1:1.
    pub vs_one: Option<Paired>,
    /// The ratios the seeds cannot tell from the best, the best included, in
    /// ascending order: those whose paired 95% interval against it holds 0,
    /// or that have no interval (fewer than two seeds in common).
    pub ties: Vec<usize>,
    pub verdict: String,
}

impl Best {
    pub fn best(&self) -> Option<usize> {
        self.ranked.first().map(|r| r.0)
    }
}

/// best − other over the seeds both finished.
fn paired(best: &Arm, other: &Arm) -> Paired {
    let diffs =
        best.seeds.iter().filter_map(|(s, l)| other.seeds.iter().find(|o| o.0 == *s).map(|o| l - o.1)).collect();
    Paired::new(diffs)
}

/// `[-0.0123, +0.0045]`, or `no interval (n = 1)`.
fn ci_text(p: &Paired) -> String {
    match p.ci {
        Some((lo, hi)) => format!("[{lo:+.4}, {hi:+.4}]"),
        None => format!("no interval (n = {})", p.n()),
    }
}

/// `1:1, 2:1 and 4:1`.
fn ratio_list(r: &[usize]) -> String {
    let names: Vec<String> = r.iter().map(|g| format!("{g}:1")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The best ratio of every grid cell (the whole experiment without a grid),
/// among the GDA points with shared noise heads (not the baseline or the
/// ablation twins).
pub fn best_ratios(rows: &[Row]) -> Vec<Best> {
    cells(rows).into_iter().map(|cell| best_in(rows, cell)).collect()
}

fn best_in(rows: &[Row], cell: Cell) -> Best {
    let mut arms: Vec<Arm> = Vec::new();
    for r in rows.iter().filter(|r| r.point.grid == cell && r.point.variant == Variant::Gda) {
        let (Some(g), Some((loss, _))) = (r.point.requested, r.val()) else { continue };
        match arms.iter_mut().find(|a| a.ratio == g) {
            Some(a) => a.seeds.push((r.point.seed, loss)),
            None => arms.push(Arm { ratio: g, mean: 0.0, seeds: vec![(r.point.seed, loss)] }),
        }
    }
    for a in &mut arms {
        a.mean = mean_std(&a.seeds.iter().map(|s| s.1).collect::<Vec<_>>()).0;
    }
    arms.sort_by(|a, b| a.mean.total_cmp(&b.mean).then(a.ratio.cmp(&b.ratio)));
    let ranked = arms.iter().map(|a| (a.ratio, a.mean, a.seeds.len())).collect();
    let at = if cell.is_empty() { String::new() } else { format!(" at {}", cell_label(&cell)) };
    let Some(best) = arms.first() else {
        let verdict = format!("no ratio has a finished seed{at} yet");
        return Best { cell, ranked, runner_up: None, vs_one: None, ties: Vec::new(), verdict };
    };
    let runner_up = arms.get(1).map(|r| (r.ratio, paired(best, r)));
    let vs_one = arms.iter().find(|a| a.ratio == 1 && best.ratio != 1).map(|one| paired(best, one));
    let mut ties: Vec<usize> = arms
        .iter()
        .filter(|a| a.ratio == best.ratio || paired(best, a).ci.is_none_or(|(_, hi)| hi >= 0.0))
        .map(|a| a.ratio)
        .collect();
    ties.sort_unstable();
    let b = format!("{}:1", best.ratio);
    let mut verdict = match &runner_up {
        None => format!("{b} is the only ratio with a finished seed{at}"),
        Some((r, p)) if ties.len() == 1 => {
            format!("{b} best{at}: {:.4} nats below the runner-up {r}:1, 95% CI {}", -p.mean, ci_text(p))
        }
        Some((r, p)) => format!(
            "{} indistinguishable{at} (lowest mean {b}; {b} − {r}:1 = {:+.4} nats, 95% CI {})",
            ratio_list(&ties),
            p.mean,
            ci_text(p)
        ),
    };
    if let Some(p) = &vs_one {
        let _ = write!(verdict, "; against 1:1: {}", p.verdict(&b, "1:1", "nats"));
    }
    Best { cell, ranked, runner_up, vs_one, ties, verdict }
}

pub const BEST_COLUMNS: &[&str] = &[
    "best_ratio",
    "best_val_loss_mean",
    "best_n",
    "runner_up_ratio",
    "runner_up_val_loss_mean",
    "diff_runner_up",
    "diff_runner_up_ci95_low",
    "diff_runner_up_ci95_high",
    "diff_runner_up_p",
    "diff_runner_up_n",
    "diff_1to1",
    "diff_1to1_ci95_low",
    "diff_1to1_ci95_high",
    "diff_1to1_p",
    "diff_1to1_n",
    "near_ties",
    "verdict",
];

/// best_ratio.csv: one row per cell, the grid keys first.
pub fn csv(best: &[Best], keys: &[String]) -> Vec<u8> {
    let mut out = line(keys.iter().map(String::as_str).chain(BEST_COLUMNS.iter().copied()));
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default();
    let test = |p: Option<&Paired>| -> [String; 5] {
        match p {
            None => Default::default(),
            Some(p) => [num(Some(p.mean)), num(p.ci.map(|c| c.0)), num(p.ci.map(|c| c.1)), num(p.p), p.n().to_string()],
        }
    };
    for b in best {
        let mut cells: Vec<String> =
            keys.iter().map(|k| b.cell.iter().find(|c| &c.0 == k).map(|c| c.1.clone()).unwrap_or_default()).collect();
        let first = b.ranked.first();
        let second = b.ranked.get(1);
        cells.extend([
            first.map(|r| r.0.to_string()).unwrap_or_default(),
            num(first.map(|r| r.1)),
            first.map(|r| r.2.to_string()).unwrap_or_default(),
            second.map(|r| r.0.to_string()).unwrap_or_default(),
            num(second.map(|r| r.1)),
        ]);
        cells.extend(test(b.runner_up.as_ref().map(|r| &r.1)));
        cells.extend(test(b.vs_one.as_ref()));
        cells.push(b.ties.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(" "));
        cells.push(b.verdict.clone());
        out.extend(line(&cells));
    }
    out
}

/// best_ratio.md: the table and the verdicts.
pub fn markdown(best: &[Best]) -> String {
    let mut s = String::from(
        "## Best ratio per grid cell\n\nPer cell, the ratio with the lowest mean val loss over its seeds (GDA, shared noise heads) \
         and its paired difference Δ = best − other in val loss (nats/token, paired by seed) to the runner-up and to 1:1, \
         with a Student t 95% interval and the two-sided p. Near ties: the ratios whose interval against the best \
         holds 0, or that have none (n < 2).\n\n",
    );
    s += "| cell | best | val loss | runner-up | Δ to runner-up | 95% CI | Δ to 1:1 | 95% CI | near ties |\n";
    s += "|---|---|---|---|---|---|---|---|---|\n";
    let d = |p: Option<&Paired>| match p {
        Some(p) if p.n() > 0 => {
            (format!("{:+.4}{}", p.mean, p.p.map(|p| format!(" (p = {})", fmt_p(p))).unwrap_or_default()), ci_text(p))
        }
        _ => ("–".to_string(), "–".to_string()),
    };
    for b in best {
        let cell = if b.cell.is_empty() { "all".to_string() } else { cell_label(&b.cell) };
        let (best, loss) = match b.ranked.first() {
            Some(r) => (format!("{}:1", r.0), format!("{:.4} (n = {})", r.1, r.2)),
            None => ("–".into(), "–".into()),
        };
        let ru = b.runner_up.as_ref().map(|r| format!("{}:1", r.0)).unwrap_or_else(|| "–".into());
        let (dr, cr) = d(b.runner_up.as_ref().map(|r| &r.1));
        let (d1, c1) = d(b.vs_one.as_ref());
        let _ =
            writeln!(s, "| {cell} | {best} | {loss} | {ru} | {dr} | {cr} | {d1} | {c1} | {} |", ratio_list(&b.ties));
    }
    s += "\nVerdicts:\n\n";
    for b in best {
        let _ = writeln!(s, "- {}", b.verdict);
    }
    s
}

/// Writes best_ratio.csv, best_ratio.md and, in a grid, the loss-vs-ratio
/// plot per cell and the best ratio against each numeric axis.
pub fn write(dir: &Path, rows: &[Row], held: &str) -> Result<(), GdaError> {
    let best = best_ratios(rows);
    let keys = grid_keys(rows);
    for (name, bytes) in [("best_ratio.csv", csv(&best, &keys)), ("best_ratio.md", markdown(&best).into_bytes())] {
        let path = dir.join(name);
        atomic_write(&path, &bytes).map_err(io("cannot write", &path))?;
    }
    if keys.is_empty() {
        return Ok(());
    }
    plot_loss_per_cell(&dir.join("loss_vs_ratio_grid.svg"), rows, held)?;
    for key in &keys {
        let values: Vec<Option<f64>> =
            best.iter().map(|b| b.cell.iter().find(|c| &c.0 == key).and_then(|c| c.1.parse::<f64>().ok())).collect();
        let mut distinct: Vec<f64> = values.iter().flatten().copied().collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if values.iter().any(Option::is_none) || distinct.len() < 2 {
            continue;
        }
        let file = format!("best_ratio_vs_{}.svg", key.replace('.', "_"));
        plot_best_vs_axis(&dir.join(file), &best, key, held)?;
    }
    Ok(())
}

/// Final val loss against the requested ratio, one line per grid cell
/// (mean ± std over its seeds; GDA with shared noise heads).
fn plot_loss_per_cell(path: &Path, rows: &[Row], held: &str) -> Result<(), GdaError> {
    let lines: Vec<Line> = cells(rows)
        .into_iter()
        .enumerate()
        .map(|(i, cell)| {
            let mut by_ratio: Vec<(usize, Vec<f64>)> = Vec::new();
            for r in rows.iter().filter(|r| r.point.grid == cell && r.point.variant == Variant::Gda) {
                let (Some(g), Some((l, _))) = (r.point.requested, r.val()) else { continue };
                match by_ratio.iter_mut().find(|b| b.0 == g) {
                    Some(b) => b.1.push(l),
                    None => by_ratio.push((g, vec![l])),
                }
            }
            by_ratio.sort_by_key(|b| b.0);
            let points = by_ratio
                .iter()
                .map(|(g, ls)| {
                    let (m, s) = mean_std(ls);
                    (*g as f64, m, s)
                })
                .collect();
            Line { label: cell_label(&cell), points, dashed: false, style: i }
        })
        .collect();
    let titles = Titles {
        title: "final val loss vs signal:noise ratio, one line per grid cell",
        held,
        x: "ratio G (H_s / H_n), as requested",
        y: "val loss (nats/token; mean ± std over seeds)",
    };
    plot_lines(path, &titles, true, &lines)
}

/// The best ratio of each cell against the numeric axis `key`, one series
/// per combination of the other axes; a vertical bar spans the near ties.
fn plot_best_vs_axis(path: &Path, best: &[Best], key: &str, held: &str) -> Result<(), GdaError> {
    // Series: the cell without `key` → (x, best, lowest tie, highest tie).
    type Series = (Cell, Vec<(f64, f64, f64, f64)>);
    let mut series: Vec<Series> = Vec::new();
    for b in best {
        let (Some(g), Some(x)) = (b.best(), b.cell.iter().find(|c| c.0 == key).and_then(|c| c.1.parse::<f64>().ok()))
        else {
            continue;
        };
        let rest: Cell = b.cell.iter().filter(|c| c.0 != key).cloned().collect();
        let lo = *b.ties.first().unwrap_or(&g) as f64;
        let hi = *b.ties.last().unwrap_or(&g) as f64;
        let pt = (x, g as f64, lo, hi);
        match series.iter_mut().find(|s| s.0 == rest) {
            Some(s) => s.1.push(pt),
            None => series.push((rest, vec![pt])),
        }
    }
    for s in &mut series {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let label = |rest: &Cell| if rest.is_empty() { "best ratio".to_string() } else { cell_label(rest) };
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (x0, x1) = crate::report::plot::bounds(xs).unwrap_or((0.0, 1.0));
    let ys = series.iter().flat_map(|s| s.1.iter().flat_map(|p| [p.2, p.3]));
    let (y0, y1) = integer_bounds(ys).unwrap_or((0.0, 2.0));
    let legend: Vec<LegendEntry> =
        series.iter().enumerate().map(|(i, s)| LegendEntry::styled(i, label(&s.0), false)).collect();
    let axis = key.rsplit('.').next().unwrap_or(key);
    let title = format!("best ratio (lowest mean val loss) vs {axis}");
    let held = format!("{held}; bars: the ratios the seeds cannot tell from the best (95% CI)");
    let x_desc = format!("{key} (grid axis)");
    let titles = Titles { title: &title, held: &held, x: &x_desc, y: "best ratio G (as requested)" };
    svg_chart(path, &titles, (x0..x1, y0..y1), false, &legend, |chart| {
        for (i, (_, pts)) in series.iter().enumerate() {
            let c = color(i);
            chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), c.stroke_width(2))).map_err(plot_err)?;
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.3 > p.2)
                        .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, c.stroke_width(1), 8)),
                )
                .map_err(plot_err)?;
            draw_markers(chart, pts.iter().map(|p| (p.0, p.1)), i, 5, c.filled())?;
        }
        Ok(())
    })
}

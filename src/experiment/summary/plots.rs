//! The plots of a summary: final loss against the ratio, and the loss
//! curves of every group during training.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::Row;
use crate::error::GdaError;
use crate::experiment::{point_dir, Variant};
use crate::report::mean_std;
use crate::report::plot::{
    bounds, draw_error_bars, draw_markers, plot_err, plot_lines, svg_chart, LegendEntry, Line, Titles, COLORS, GREY,
};
use crate::report::units::human_count;
use crate::train::metrics::column_pairs;

/// What every point of an experiment shares, for a plot's subtitle: the
/// budget policy and the training length.
pub(super) fn held_fixed(rows: &[Row], policy: &str) -> String {
    rows.first()
        .map(|r| {
            let t = &r.point.spec.train;
            let tokens = t.steps * t.batch_size * t.grad_accum * t.context;
            let policy = if rows.iter().any(|r| r.point.requested.is_some()) {
                format!("{policy} heads fixed, ")
            } else {
                String::new()
            };
            format!("{policy}{} steps, {} training tokens per run", t.steps, human_count(tokens))
        })
        .unwrap_or_default()
}

/// Writes by rename, so a reader sees the old file or the new one. Each
/// variant's mean ± std over seeds per requested ratio, every seed as a dot;
/// the baseline as a dashed line.
pub(super) fn plot_final(path: &Path, rows: &[Row], which: usize, y_desc: &str, policy: &str) -> Result<(), GdaError> {
    let done: Vec<(&Row, f64)> =
        rows.iter().filter_map(|r| r.val().map(|v| (r, if which == 0 { v.0 } else { v.1 }))).collect();
    // Placed by the ratio asked for: a no-share twin of 4:1 has one noise head
    // per signal head (achieved 1:1) but belongs with the 4:1 models it is
    // compared to; a --nearest point is drawn where it was asked for.
    let x_of = |r: &Row| r.point.requested.map(|g| g as f64).or_else(|| r.point.ratio());
    let rmax = rows.iter().filter_map(x_of).fold(1.0, f64::max);
    let variants = [Variant::Gda, Variant::NoShare, Variant::EqualParams];
    // Mean ± std per variant and ratio.
    // (colour, variant, mean ± std per ratio, every seed).
    type VariantLine = (usize, Variant, Vec<(f64, f64, f64)>, Vec<(f64, f64)>);
    let mut lines: Vec<VariantLine> = Vec::new();
    for (ci, v) in variants.iter().enumerate() {
        let mut by_ratio: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for (r, l) in done.iter().filter(|(r, _)| r.point.variant == *v) {
            by_ratio.entry(x_of(r).unwrap_or(0.0).to_bits()).or_default().push(*l);
        }
        if by_ratio.is_empty() {
            continue;
        }
        let mut pts: Vec<(f64, f64, f64)> = by_ratio
            .iter()
            .map(|(k, ls)| {
                let (m, s) = mean_std(ls);
                (f64::from_bits(*k), m, s)
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Seeds beside their bar, not under it.
        let dots =
            by_ratio.iter().flat_map(|(k, ls)| ls.iter().map(move |l| (f64::from_bits(*k) + 0.06, *l))).collect();
        lines.push((ci, *v, pts, dots));
    }
    let base: Vec<f64> = done.iter().filter(|(r, _)| r.point.variant == Variant::Baseline).map(|d| d.1).collect();
    let ys = done.iter().map(|d| d.1).chain(lines.iter().flat_map(|l| l.2.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2])));
    let (ylo, yhi) = bounds(ys).unwrap_or((0.0, 1.0));
    let axes = (0.5f64..rmax + 0.5, ylo..yhi);
    let mut legend: Vec<LegendEntry> = lines.iter().map(|l| LegendEntry::styled(l.0, l.1.label(), false)).collect();
    if !base.is_empty() {
        legend.push(LegendEntry {
            label: "baseline (standard attention)".into(),
            color: GREY,
            marker: None,
            dashed: true,
        });
    }
    let title = format!("final {} vs signal:noise ratio", y_desc.split(" (").next().unwrap_or(y_desc));
    let held = format!("{}; bars: ± std over seeds, dots: single seeds", held_fixed(rows, policy));
    let titles = Titles { title: &title, held: &held, x: "ratio G (H_s / H_n), as requested", y: y_desc };
    svg_chart(path, &titles, axes, true, &legend, |chart| {
        for (ci, _, pts, dots) in &lines {
            let color = COLORS[*ci];
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
                .map_err(plot_err)?;
            draw_error_bars(chart, pts.iter().copied(), color)?;
            chart.draw_series(dots.iter().map(|d| Circle::new(*d, 3, color.mix(0.5).filled()))).map_err(plot_err)?;
            draw_markers(chart, pts.iter().map(|p| (p.0, p.1)), *ci, 5, color.filled())?;
        }
        if !base.is_empty() {
            let (m, _) = mean_std(&base);
            chart
                .draw_series(DashedLineSeries::new(vec![(0.5, m), (rmax + 0.5, m)], 6, 4, GREY.stroke_width(2)))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// Validation loss against training tokens, one line per group: the mean
/// over its seeds at each evaluation, with their std as error bars; `end`:
/// only the second half of training.
pub(super) fn plot_curves(dir: &Path, path: &Path, rows: &[Row], policy: &str, end: bool) -> Result<(), GdaError> {
    // Per group (in grid order): tokens → the seeds' val losses.
    let mut groups: Vec<(String, BTreeMap<u64, Vec<f64>>)> = Vec::new();
    for r in rows {
        let pts = column_pairs(&point_dir(dir, r.point), "tokens", "val_loss");
        if pts.is_empty() {
            continue;
        }
        let g = r.point.group();
        let i = groups.iter().position(|x| x.0 == g).unwrap_or_else(|| {
            groups.push((g.clone(), BTreeMap::new()));
            groups.len() - 1
        });
        for (t, l) in pts {
            groups[i].1.entry(t as u64).or_default().push(l);
        }
    }
    let half = groups.iter().filter_map(|(_, by_t)| by_t.keys().next_back()).max().map_or(0, |t| t / 2);
    let lines: Vec<Line> = groups
        .iter()
        .enumerate()
        .map(|(i, (g, by_t))| {
            let points = by_t
                .iter()
                .filter(|(t, _)| !end || **t >= half)
                .map(|(t, ls)| {
                    let (m, s) = mean_std(ls);
                    (*t as f64, m, s)
                })
                .collect();
            let seeds = by_t.values().map(Vec::len).max().unwrap_or(0);
            let label = if seeds > 1 { format!("{g} ({seeds} seeds)") } else { g.clone() };
            Line { label, points, dashed: false, style: i }
        })
        .collect();
    let held = held_fixed(rows, policy);
    let titles = Titles {
        title: if end { "validation loss, second half of training" } else { "validation loss during training" },
        held: &held,
        x: "training tokens",
        y: "val loss (nats/token; mean ± std over seeds)",
    };
    plot_lines(path, &titles, false, &lines)
}

//! Summaries of multi-run experiments: a CSV (one row per run plus one per
//! group of seeds), Markdown tables and SVG plots, all rebuilt from the run
//! directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::{cost, point_dir, policy_name, Point, Status, Variant};
use crate::config::{AttentionKind, BudgetPolicy, TaskKind};
use crate::error::{io, GdaError};
use crate::report::mean_std;
use crate::report::plot::{bounds, plot_err, svg_chart, COLORS};
use crate::report::table::line;
use crate::train::metrics::column_pairs;
use crate::util::fs::atomic_write;

/// One run's row.
pub struct Row<'a> {
    pub point: &'a Point,
    pub status: Status,
}

impl Row<'_> {
    fn val(&self) -> Option<(f64, f64)> {
        match &self.status {
            Status::Done(s) => Some((s.val_loss, s.metric())),
            _ => None,
        }
    }
}

/// The second metric of an experiment's runs: `bpb` for text, `acc` for a
/// retrieval task (all points of an experiment train on the same data).
pub fn metric_name(rows: &[Row]) -> &'static str {
    let task = rows.first().is_some_and(|r| r.point.spec.data.task != TaskKind::Text);
    if task {
        "acc"
    } else {
        "bpb"
    }
}

pub fn rows<'a>(dir: &Path, points: &'a [Point]) -> Vec<Row<'a>> {
    points.iter().map(|p| Row { point: p, status: super::status(dir, p) }).collect()
}

/// Groups of rows that differ only in seed, in grid order.
fn groups<'a, 'b>(rows: &'b [Row<'a>]) -> Vec<(String, Vec<&'b Row<'a>>)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let g = r.point.group();
        if !map.contains_key(&g) {
            order.push(g.clone());
        }
        map.entry(g).or_default().push(r);
    }
    order
        .into_iter()
        .map(|g| {
            let v = map.remove(&g).unwrap();
            (g, v)
        })
        .collect()
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.fract() == 0.0 => format!("{r}"),
        Some(r) => format!("{r:.3}"),
        None => String::new(),
    }
}

pub const CSV_COLUMNS: &[&str] = &[
    "row_type",
    "point",
    "group",
    "variant",
    "seed",
    "policy",
    "ratio_requested",
    "ratio",
    "signal_heads",
    "noise_heads",
    "kv_heads",
    "noise_kv_heads",
    "heads",
    "head_dim",
    "parameters",
    "attn_flops_per_token",
    "train_flops",
    "status",
    "val_loss",
    "val_bpb",
    "val_loss_std",
    "val_bpb_std",
    "seeds",
    "per_seed_val_loss",
    "tokens_per_s",
    "elapsed_s",
];

/// summary.csv: a `run` row per point, then a `mean` row per group of seeds.
pub fn csv(rows: &[Row], policy: &str) -> Vec<u8> {
    let metric = metric_name(rows);
    let mut out = line(CSV_COLUMNS.iter().map(|c| c.replace("bpb", metric)));
    let arch = |p: &Point| {
        let m = &p.spec.model;
        let (params, attn, train) = cost(p);
        let gda = m.attention == AttentionKind::Gda;
        let opt = |b: bool, v: usize| if b { v.to_string() } else { String::new() };
        vec![
            opt(gda, m.signal_heads),
            opt(gda, m.noise_heads),
            m.kv_heads.to_string(),
            opt(gda, m.noise_kv_heads),
            opt(!gda, m.heads),
            m.head_dim.to_string(),
            params.to_string(),
            format!("{attn}"),
            format!("{train:e}"),
        ]
    };
    for r in rows {
        let p = r.point;
        let (loss, bpb) = r.val().map(|(l, b)| (format!("{l}"), format!("{b}"))).unwrap_or_default();
        let (tps, secs) = match &r.status {
            Status::Done(s) => (format!("{:.0}", s.tokens_per_s), format!("{:.1}", s.elapsed_s)),
            _ => Default::default(),
        };
        let mut cells = vec![
            "run".to_string(),
            p.name.clone(),
            p.group(),
            p.variant.label().to_string(),
            p.seed.to_string(),
            policy.to_string(),
            p.requested.map(|g| g.to_string()).unwrap_or_default(),
            fmt_ratio(p.ratio()),
        ];
        cells.extend(arch(p));
        cells.extend([
            r.status.describe(),
            loss,
            bpb,
            String::new(),
            String::new(),
            "1".into(),
            String::new(),
            tps,
            secs,
        ]);
        out.extend(line(&cells));
    }
    for (group, members) in groups(rows) {
        let p = members[0].point;
        let vals: Vec<(f64, f64)> = members.iter().filter_map(|r| r.val()).collect();
        let losses: Vec<f64> = vals.iter().map(|v| v.0).collect();
        let bpbs: Vec<f64> = vals.iter().map(|v| v.1).collect();
        let (lm, ls) = if losses.is_empty() { (f64::NAN, f64::NAN) } else { mean_std(&losses) };
        let (bm, bs) = if bpbs.is_empty() { (f64::NAN, f64::NAN) } else { mean_std(&bpbs) };
        let status = if vals.len() == members.len() {
            "done".to_string()
        } else {
            format!("{} of {} done", vals.len(), members.len())
        };
        let per_seed = members
            .iter()
            .map(|r| r.val().map(|v| format!("{}", v.0)).unwrap_or_else(|| "-".into()))
            .collect::<Vec<_>>()
            .join(";");
        let mut cells = vec![
            "mean".to_string(),
            String::new(),
            group,
            p.variant.label().to_string(),
            String::new(),
            policy.to_string(),
            p.requested.map(|g| g.to_string()).unwrap_or_default(),
            fmt_ratio(p.ratio()),
        ];
        cells.extend(arch(p));
        let num = |x: f64| if x.is_nan() { String::new() } else { format!("{x}") };
        cells.extend([
            status,
            num(lm),
            num(bm),
            num(ls),
            num(bs),
            vals.len().to_string(),
            per_seed,
            String::new(),
            String::new(),
        ]);
        out.extend(line(&cells));
    }
    out
}

fn pm(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{m:.digits$} ± {s:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

/// The sweep table: one line per group of seeds.
pub fn sweep_markdown(rows: &[Row], policy: &str) -> String {
    let metric = metric_name(rows);
    let mut s = format!("Budget policy: `{policy}`. Loss in nats/token on the fixed validation set; ± is the sample std over seeds.\n\n");
    s += &format!("| point | ratio | H_s | H_n | K/V | params | attn MFLOP/tok | train PFLOP | val loss | val {metric} | per-seed val loss | status |\n");
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (group, members) in groups(rows) {
        let p = members[0].point;
        let m = &p.spec.model;
        let (params, attn, train) = cost(p);
        let vals: Vec<(f64, f64)> = members.iter().filter_map(|r| r.val()).collect();
        let losses: Vec<f64> = vals.iter().map(|v| v.0).collect();
        let bpbs: Vec<f64> = vals.iter().map(|v| v.1).collect();
        let (hs, hn) = if p.variant == Variant::Baseline {
            (format!("{} std", m.heads), "–".to_string())
        } else {
            (m.signal_heads.to_string(), m.noise_heads.to_string())
        };
        let per_seed = members
            .iter()
            .map(|r| r.val().map(|v| format!("{:.4}", v.0)).unwrap_or_else(|| "–".into()))
            .collect::<Vec<_>>()
            .join(", ");
        let status = if vals.len() == members.len() { "done".to_string() } else { summarize_status(&members) };
        let _ = writeln!(
            s,
            "| {group} | {} | {hs} | {hn} | {} | {params} | {:.2} | {:.3} | {} | {} | {per_seed} | {status} |",
            if p.ratio().is_some() { fmt_ratio(p.ratio()) + ":1" } else { "–".into() },
            m.kv_heads,
            attn / 1e6,
            train / 1e15,
            pm(&losses, 4),
            pm(&bpbs, 4),
        );
    }
    s
}

fn summarize_status(members: &[&Row]) -> String {
    members.iter().map(|r| r.status.describe()).collect::<Vec<_>>().join("; ")
}

/// The ablation table: one line per ratio, shared and its twins side by side,
/// with the per-seed paired difference (twin − shared).
pub fn ablation_markdown(rows: &[Row], variants: &[Variant]) -> String {
    let mut s = String::from(
        "Val loss in nats/token (mean ± sample std over seeds). Δ = twin − shared, paired by seed: negative means the twin is better.\n\n",
    );
    let mut header = "| ratio | shared params | shared attn MFLOP/tok | shared val loss |".to_string();
    let mut rule = "|---|---|---|---|".to_string();
    for v in variants {
        let l = v.label();
        header += &format!(" {l} params | {l} attn MFLOP/tok | {l} val loss | Δ {l} |");
        rule += "---|---|---|---|";
    }
    s += &(header + "\n" + &rule + "\n");
    let mut ratios: Vec<usize> = rows.iter().filter_map(|r| r.point.requested).collect();
    ratios.dedup();
    for g in ratios {
        let of = |v: Variant| -> Vec<&Row> {
            rows.iter().filter(|r| r.point.requested == Some(g) && r.point.variant == v).collect()
        };
        let shared = of(Variant::Gda);
        let Some(first) = shared.first() else { continue };
        let (params, attn, _) = cost(first.point);
        let losses = |rs: &[&Row]| rs.iter().filter_map(|r| r.val().map(|v| v.0)).collect::<Vec<f64>>();
        let _ = write!(s, "| {g}:1 | {params} | {:.2} | {} |", attn / 1e6, pm(&losses(&shared), 4));
        for &v in variants {
            let twin = of(v);
            let Some(t0) = twin.first() else {
                s += " – | – | – | – |";
                continue;
            };
            let (tp, ta, _) = cost(t0.point);
            let diffs: Vec<f64> = twin
                .iter()
                .filter_map(|t| {
                    let sh = shared.iter().find(|r| r.point.seed == t.point.seed)?;
                    Some(t.val()?.0 - sh.val()?.0)
                })
                .collect();
            let _ = write!(s, " {tp} | {:.2} | {} | {} |", ta / 1e6, pm(&losses(&twin), 4), pm(&diffs, 4));
        }
        s += "\n";
    }
    s
}

/// The growth comparison: one line per strategy, with the size it added and
/// the validation loss at its first and last evaluation.
pub fn growth_markdown(rows: &[Row], dir: &Path, source_params: usize) -> String {
    let mut s = String::from("Val loss in nats/token on the fixed validation tokens. Grown models start from the source's function (first val loss = the source's).\n\n");
    s += &format!("| strategy | H_s | H_n | K/V | d_model | layers | params | added params | attn MFLOP/tok | first val loss | final val loss | final val {} | status |\n", metric_name(rows));
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in rows {
        let p = r.point;
        let m = &p.spec.model;
        let (params, attn, _) = cost(p);
        let first = column_pairs(&point_dir(dir, p), "step", "val_loss").first().map(|p| p.1);
        let (fl, fb) = r.val().map(|(l, b)| (format!("{l:.4}"), format!("{b:.4}"))).unwrap_or(("–".into(), "–".into()));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {params} | {} | {:.2} | {} | {fl} | {fb} | {} |",
            p.variant.label(),
            m.signal_heads,
            m.noise_heads,
            m.kv_heads,
            m.d_model,
            m.n_layers,
            params as i64 - source_params as i64,
            attn / 1e6,
            first.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into()),
            r.status.describe()
        );
    }
    s
}

/// Writes summary.csv, summary.md and the plots into `dir`.
pub fn write(dir: &Path, rows: &[Row], policy: BudgetPolicy, markdown: &str, ratio_plot: bool) -> Result<(), GdaError> {
    let policy = policy_name(policy);
    for (name, bytes) in [("summary.csv", csv(rows, policy)), ("summary.md", markdown.as_bytes().to_vec())] {
        let path = dir.join(name);
        atomic_write(&path, &bytes).map_err(io("cannot write", &path))?;
    }
    if ratio_plot {
        plot_final(&dir.join("final_loss_vs_ratio.svg"), rows, 0, "val loss (nats/token)")?;
        if metric_name(rows) == "acc" {
            plot_final(&dir.join("final_acc_vs_ratio.svg"), rows, 1, "val accuracy (exact match)")?;
        }
    }
    plot_curves(dir, &dir.join("loss_curves.svg"), rows)?;
    Ok(())
}

/// Writes by rename, so a reader sees the old file or the new one. The
/// seed as a dot; the baseline as a dashed line.
fn plot_final(path: &Path, rows: &[Row], which: usize, y_desc: &str) -> Result<(), GdaError> {
    let done: Vec<(&Row, f64)> =
        rows.iter().filter_map(|r| r.val().map(|v| (r, if which == 0 { v.0 } else { v.1 }))).collect();
    let (ylo, yhi) = bounds(done.iter().map(|d| d.1)).unwrap_or((0.0, 1.0));
    let rmax = rows.iter().filter_map(|r| r.point.ratio()).fold(1.0, f64::max);
    let axes = (0.5f64..rmax + 0.5, ylo..yhi);
    let caption = format!("final {} vs signal:noise ratio", y_desc.split(" (").next().unwrap_or(y_desc));
    svg_chart(path, &caption, axes, ("ratio G (H_s / H_n)", y_desc), true, |chart| {
        let variants = [Variant::Gda, Variant::NoShare, Variant::EqualParams];
        for (ci, v) in variants.iter().enumerate() {
            let color = COLORS[ci];
            let mut by_ratio: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for (r, l) in done.iter().filter(|(r, _)| r.point.variant == *v) {
                by_ratio.entry(r.point.ratio().unwrap_or(0.0).to_bits()).or_default().push(*l);
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
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(v.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart
                .draw_series(
                    pts.iter().map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color.filled(), 8)),
                )
                .map_err(plot_err)?;
            chart
                .draw_series(by_ratio.iter().flat_map(|(k, ls)| {
                    ls.iter().map(move |l| Circle::new((f64::from_bits(*k), *l), 3, color.mix(0.5).filled()))
                }))
                .map_err(plot_err)?;
        }
        let base: Vec<f64> = done.iter().filter(|(r, _)| r.point.variant == Variant::Baseline).map(|d| d.1).collect();
        if !base.is_empty() {
            let (m, _) = mean_std(&base);
            let c = COLORS[7];
            chart
                .draw_series(DashedLineSeries::new(vec![(0.5, m), (rmax + 0.5, m)], 6, 4, c.stroke_width(2)))
                .map_err(plot_err)?
                .label("baseline (standard attention)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        Ok(())
    })
}

type Points = Vec<(f64, f64)>;

/// Validation loss against training tokens for every finished or started run,
/// one colour per group.
fn plot_curves(dir: &Path, path: &Path, rows: &[Row]) -> Result<(), GdaError> {
    // (group, colour index, points) per run.
    let mut curves: Vec<(String, usize, Points)> = Vec::new();
    let mut group_ids: Vec<String> = Vec::new();
    for r in rows {
        let pts = column_pairs(&point_dir(dir, r.point), "tokens", "val_loss");
        if pts.is_empty() {
            continue;
        }
        let g = r.point.group();
        let gi = group_ids.iter().position(|x| *x == g).unwrap_or_else(|| {
            group_ids.push(g.clone());
            group_ids.len() - 1
        });
        curves.push((g, gi, pts));
    }
    let (ylo, yhi) = bounds(curves.iter().flat_map(|c| c.2.iter().map(|p| p.1))).unwrap_or((0.0, 1.0));
    let xmax = curves.iter().flat_map(|c| c.2.iter().map(|p| p.0)).fold(1.0, f64::max);
    let axes = (0f64..xmax, ylo..yhi);
    svg_chart(
        path,
        "validation loss during training",
        axes,
        ("training tokens", "val loss (nats/token)"),
        false,
        |chart| {
            let mut labelled = vec![false; group_ids.len()];
            for (g, gi, pts) in curves {
                let color = COLORS[gi % COLORS.len()];
                let series = chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(plot_err)?;
                if !labelled[gi] {
                    labelled[gi] = true;
                    series
                        .label(g)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                }
            }
            Ok(())
        },
    )
}

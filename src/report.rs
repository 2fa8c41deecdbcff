//! Summaries of multi-run experiments: a CSV (one row per run plus one per
//! group of seeds), Markdown tables and SVG plots, all rebuilt from the run
//! directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::error::{input, GdaError};
use crate::experiments::{self, cost, policy_name, Point, Status, Variant};

/// One run's row.
pub struct Row<'a> {
    pub point: &'a Point,
    pub status: Status,
}

impl Row<'_> {
    fn val(&self) -> Option<(f64, f64)> {
        match &self.status {
            Status::Done(s) => Some((s.val_loss, s.val_bpb)),
            _ => None,
        }
    }

    fn status_text(&self) -> String {
        match &self.status {
            Status::Pending => "pending".into(),
            Status::Started(step) => format!("started (step {step})"),
            Status::Done(_) => "done".into(),
            Status::Failed(r) => format!("failed: {r}"),
        }
    }
}

pub fn rows<'a>(dir: &Path, points: &'a [Point]) -> Vec<Row<'a>> {
    points.iter().map(|p| Row { point: p, status: experiments::status(dir, p) }).collect()
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
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
    order.into_iter().map(|g| {
        let v = map.remove(&g).unwrap();
        (g, v)
    }).collect()
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.fract() == 0.0 => format!("{r}"),
        Some(r) => format!("{r:.3}"),
        None => String::new(),
    }
}

pub const CSV_COLUMNS: &[&str] = &[
    "row_type", "point", "group", "variant", "seed", "policy", "ratio_requested", "ratio", "signal_heads", "noise_heads",
    "kv_heads", "noise_kv_heads", "heads", "head_dim", "parameters", "attn_flops_per_token", "train_flops", "status",
    "val_loss", "val_bpb", "val_loss_std", "val_bpb_std", "seeds", "per_seed_val_loss", "tokens_per_s", "elapsed_s",
];

/// summary.csv: a `run` row per point, then a `mean` row per group of seeds.
pub fn csv(rows: &[Row], policy: &str) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\n";
    let arch = |p: &Point| {
        let m = &p.spec.model;
        let (params, attn, train) = cost(p);
        let gda = m.attention == crate::config::AttentionKind::Gda;
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
        cells.extend([r.status_text(), loss, bpb, String::new(), String::new(), "1".into(), String::new(), tps, secs]);
        out += &(cells.iter().map(|c| csv_escape(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    for (group, members) in groups(rows) {
        let p = members[0].point;
        let vals: Vec<(f64, f64)> = members.iter().filter_map(|r| r.val()).collect();
        let losses: Vec<f64> = vals.iter().map(|v| v.0).collect();
        let bpbs: Vec<f64> = vals.iter().map(|v| v.1).collect();
        let (lm, ls) = if losses.is_empty() { (f64::NAN, f64::NAN) } else { mean_std(&losses) };
        let (bm, bs) = if bpbs.is_empty() { (f64::NAN, f64::NAN) } else { mean_std(&bpbs) };
        let status = if vals.len() == members.len() { "done".to_string() } else { format!("{} of {} done", vals.len(), members.len()) };
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
        cells.extend([status, num(lm), num(bm), num(ls), num(bs), vals.len().to_string(), per_seed, String::new(), String::new()]);
        out += &(cells.iter().map(|c| csv_escape(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

fn pm(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(v);
    if v.len() > 1 { format!("{m:.digits$} ± {s:.digits$}") } else { format!("{m:.digits$}") }
}

/// The sweep table: one line per group of seeds.
pub fn sweep_markdown(rows: &[Row], policy: &str) -> String {
    let mut s = format!("Budget policy: `{policy}`. Loss in nats/token on the fixed validation tokens; ± is the sample std over seeds.\n\n");
    s += "| point | ratio | H_s | H_n | K/V | params | attn MFLOP/tok | train PFLOP | val loss | val bpb | per-seed val loss | status |\n";
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
        let per_seed =
            members.iter().map(|r| r.val().map(|v| format!("{:.4}", v.0)).unwrap_or_else(|| "–".into())).collect::<Vec<_>>().join(", ");
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
    members.iter().map(|r| r.status_text()).collect::<Vec<_>>().join("; ")
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
        let of = |v: Variant| -> Vec<&Row> { rows.iter().filter(|r| r.point.requested == Some(g) && r.point.variant == v).collect() };
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
    s += "| strategy | H_s | H_n | K/V | d_model | layers | params | added params | attn MFLOP/tok | first val loss | final val loss | final val bpb | status |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in rows {
        let p = r.point;
        let m = &p.spec.model;
        let (params, attn, _) = cost(p);
        let first = column_pairs(&experiments::point_dir(dir, p), "step", "val_loss").first().map(|p| p.1);
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
            r.status_text()
        );
    }
    s
}

/// (x, y) from two columns of a run's metrics.csv, for the rows where both
/// are filled, in step order.
fn column_pairs(run: &Path, x: &str, y: &str) -> Vec<(f64, f64)> {
    let Ok((header, data)) = crate::metrics::read(&run.join("metrics.csv")) else { return Vec::new() };
    let (Some(xi), Some(yi)) = (header.iter().position(|h| h == x), header.iter().position(|h| h == y)) else {
        return Vec::new();
    };
    data.iter().filter_map(|row| Some((row.get(xi)?.parse().ok()?, row.get(yi)?.parse().ok()?))).collect()
}

/// Writes summary.csv, summary.md and the plots into `dir`.
pub fn write(dir: &Path, rows: &[Row], policy: crate::config::BudgetPolicy, markdown: &str, ratio_plot: bool) -> Result<(), GdaError> {
    let io = |e: std::io::Error| input(format!("cannot write the summary in {}: {e}", dir.display()));
    let policy = policy_name(policy);
    atomic_write(&dir.join("summary.csv"), csv(rows, policy).as_bytes()).map_err(io)?;
    atomic_write(&dir.join("summary.md"), markdown.as_bytes()).map_err(io)?;
    if ratio_plot {
        plot_final_loss(&dir.join("final_loss_vs_ratio.svg"), rows)?;
    }
    plot_curves(dir, &dir.join("loss_curves.svg"), rows)?;
    Ok(())
}

pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn plot_err(e: impl std::fmt::Display) -> GdaError {
    input(format!("cannot draw a plot: {e}"))
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// An SVG line chart with a caption, axis labels and a legend; `draw` adds
/// the series.
fn svg_chart(
    path: &Path,
    caption: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    draw: impl FnOnce(&mut Chart) -> Result<(), GdaError>,
) -> Result<(), GdaError> {
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(plot_err)?;
    draw(&mut chart)?;
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_err)?;
    root.present().map_err(plot_err)
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    let pad = ((hi - lo) * 0.1).max(1e-3);
    Some((lo - pad, hi + pad))
}

/// Final validation loss against the ratio: per variant, the seed mean with a
/// ±1 std error bar and every seed as a dot; the baseline as a dashed line.
fn plot_final_loss(path: &Path, rows: &[Row]) -> Result<(), GdaError> {
    let done: Vec<(&Row, f64)> = rows.iter().filter_map(|r| r.val().map(|v| (r, v.0))).collect();
    let (ylo, yhi) = bounds(done.iter().map(|d| d.1)).unwrap_or((0.0, 1.0));
    let rmax = rows.iter().filter_map(|r| r.point.ratio()).fold(1.0, f64::max);
    let axes = (0.5f64..rmax + 0.5, ylo..yhi);
    svg_chart(path, "final validation loss vs signal:noise ratio", axes, ("ratio G (H_s / H_n)", "val loss (nats/token)"), |chart| {
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
        let mut pts: Vec<(f64, f64, f64)> =
            by_ratio.iter().map(|(k, ls)| { let (m, s) = mean_std(ls); (f64::from_bits(*k), m, s) }).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(v.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color.filled(), 8)))
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

/// Validation loss against training tokens for every finished or started run,
/// one colour per group.
fn plot_curves(dir: &Path, path: &Path, rows: &[Row]) -> Result<(), GdaError> {
    let mut curves: Vec<(String, usize, Vec<(f64, f64)>)> = Vec::new();
    let mut group_ids: Vec<String> = Vec::new();
    for r in rows {
        let pts = column_pairs(&experiments::point_dir(dir, r.point), "tokens", "val_loss");
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
    svg_chart(path, "validation loss during training", axes, ("training tokens", "val loss (nats/token)"), |chart| {
    let mut labelled = vec![false; group_ids.len()];
    for (g, gi, pts) in curves {
        let color = COLORS[gi % COLORS.len()];
        let series = chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(plot_err)?;
        if !labelled[gi] {
            labelled[gi] = true;
            series.label(g).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    Ok(())
    })
}

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
            Status::Done(s) => Some((s.val_loss, s.metric())),
            _ => None,
        }
    }
}

/// The second metric of an experiment's runs: `bpb` for text, `acc` for a
/// retrieval task (all points of an experiment train on the same data).
pub fn metric_name(rows: &[Row]) -> &'static str {
    let task = rows.first().is_some_and(|r| r.point.spec.data.task != crate::config::TaskKind::Text);
    if task { "acc" } else { "bpb" }
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
    let metric = metric_name(rows);
    let mut out = CSV_COLUMNS.iter().map(|c| c.replace("bpb", metric)).collect::<Vec<_>>().join(",") + "\n";
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
        cells.extend([r.status.describe(), loss, bpb, String::new(), String::new(), "1".into(), String::new(), tps, secs]);
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
    s += &format!("| strategy | H_s | H_n | K/V | d_model | layers | params | added params | attn MFLOP/tok | first val loss | final val loss | final val {} | status |\n", metric_name(rows));
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
            r.status.describe()
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
        plot_final(&dir.join("final_loss_vs_ratio.svg"), rows, 0, "val loss (nats/token)")?;
        if metric_name(rows) == "acc" {
            plot_final(&dir.join("final_acc_vs_ratio.svg"), rows, 1, "val accuracy (exact match)")?;
        }
    }
    plot_curves(dir, &dir.join("loss_curves.svg"), rows)?;
    Ok(())
}

/// Writes by rename, so a reader sees the old file or the new one. The
/// temporary name is per file and per process: a sweep finishing while
/// `--collect` runs must not rename one's summary.md onto the other's .csv.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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
    integer_x: bool,
    draw: impl FnOnce(&mut Chart) -> Result<(), GdaError>,
) -> Result<(), GdaError> {
    // Whole numbers without a trailing ".0"; an integer axis (layers) gets a
    // label at every integer and none between.
    let x_labels = if integer_x { (x.end - x.start).ceil() as usize + 1 } else { 10 };
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let fmt = |v: &f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}").trim_end_matches('0').to_string() };
    chart
        .configure_mesh()
        .x_labels(x_labels)
        .x_label_formatter(&|v: &f64| if integer_x && v.fract() != 0.0 { String::new() } else { fmt(v) })
        .y_label_formatter(&fmt)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
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

/// A final validation metric (`which`: 0 loss, 1 bpb or accuracy) against
/// the ratio: per variant, the seed mean with a ±1 std error bar and every
/// seed as a dot; the baseline as a dashed line.
fn plot_final(path: &Path, rows: &[Row], which: usize, y_desc: &str) -> Result<(), GdaError> {
    let done: Vec<(&Row, f64)> = rows.iter().filter_map(|r| r.val().map(|v| (r, if which == 0 { v.0 } else { v.1 }))).collect();
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
    svg_chart(path, "validation loss during training", axes, ("training tokens", "val loss (nats/token)"), false, |chart| {
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

// ---------------------------------------------------------------------------
// `gda eval` tables and plots, rendered from the CSV files it writes, so
// `gda report` can redraw them at any time.

/// Rows of a CSV as maps from column name to cell (empty when the file is absent).
fn table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let Ok((header, rows)) = crate::metrics::read(path) else { return Vec::new() };
    rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn num(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn cellf(row: &BTreeMap<String, String>, key: &str, digits: usize) -> String {
    let v = num(row, key);
    if v.is_nan() { "–".into() } else { format!("{v:.digits$}") }
}

/// Lines keyed by a label, in first-seen order, each a list of (x, y).
fn series(rows: &[BTreeMap<String, String>], label: impl Fn(&BTreeMap<String, String>) -> String, x: &str, y: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let (l, px, py) = (label(r), num(r, x), num(r, y));
        if !px.is_finite() || !py.is_finite() {
            continue;
        }
        match out.iter_mut().find(|s| s.0 == l) {
            Some(s) => s.1.push((px, py)),
            None => out.push((l, vec![(px, py)])),
        }
    }
    for s in &mut out {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// A line chart of labelled series; `dashed` series (same colour as the
/// solid one at the same index) are drawn dashed.
fn plot_lines(path: &Path, caption: &str, axes_desc: (&str, &str), integer_x: bool, solid: &[(String, Vec<(f64, f64)>)], dashed: &[(String, Vec<(f64, f64)>)]) -> Result<(), GdaError> {
    let all = || solid.iter().chain(dashed).flat_map(|s| s.1.iter());
    let (xlo, xhi) = bounds(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (ylo, yhi) = bounds(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    svg_chart(path, caption, (xlo..xhi, ylo..yhi), axes_desc, integer_x, |chart| {
        for (i, (label, pts)) in solid.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)).point_size(3))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        for (i, (label, pts)) in dashed.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        }
        Ok(())
    })
}

/// Renders `summary.md` and the plots of an eval directory from its CSV
/// files; returns the Markdown.
pub fn eval_report(dir: &Path) -> Result<String, GdaError> {
    use crate::eval::{ATTENTION_CSV, LM_CSV, RETRIEVAL_CSV};
    let lm = table(&dir.join(LM_CSV));
    let ret = table(&dir.join(RETRIEVAL_CSV));
    let att = table(&dir.join(ATTENTION_CSV));
    // A plot whose table is gone belongs to an earlier evaluation.
    for (rows, plot) in [(&lm, "bpb_vs_context.svg"), (&ret, "accuracy_vs_context.svg"), (&att, "attention_noise.svg")] {
        if rows.is_empty() {
            let _ = std::fs::remove_file(dir.join(plot));
        }
    }
    if lm.is_empty() && ret.is_empty() && att.is_empty() {
        return Err(input(format!("{} holds no evaluation results ({LM_CSV}, {RETRIEVAL_CSV}, {ATTENTION_CSV}); run gda eval first", dir.display())));
    }
    let get = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let mut s = String::new();
    if !lm.is_empty() {
        s += "## Held-out language modelling\n\nLoss in nats/token over a fixed token budget of the validation text; contexts past `train ctx` are extrapolation.\n\n";
        s += "| run | context | train ctx | tokens | loss | ppl | bpb |\n|---|---|---|---|---|---|---|\n";
        for r in &lm {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} | {} |", get(r, "run"), get(r, "context"), get(r, "train_context"), get(r, "tokens"), cellf(r, "loss", 4), cellf(r, "ppl", 3), cellf(r, "bpb", 4));
        }
        let bpb = series(&lm, |r| get(r, "run"), "context", "bpb");
        plot_lines(&dir.join("bpb_vs_context.svg"), "bits per byte vs context length", ("context (tokens)", "bits per byte"), false, &bpb, &[])?;
        s += "\n";
    }
    if !ret.is_empty() {
        s += "## Retrieval\n\nExact match: a question counts only if every answer token is the model's top choice. NIAH rows are per needle depth (0 = start of the haystack).\n\n";
        s += "| run | task | context | train ctx | depth | questions | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &ret {
            let depth = get(r, "depth");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                get(r, "run"), get(r, "task"), get(r, "context"), get(r, "train_context"),
                if depth.is_empty() { "–".into() } else { depth },
                get(r, "queries"), cellf(r, "acc", 3), cellf(r, "token_acc", 3), cellf(r, "loss", 4)
            );
        }
        // Accuracy per context: the mean over depths for NIAH.
        let mut mean_rows: Vec<BTreeMap<String, String>> = Vec::new();
        for r in &ret {
            let key = |m: &BTreeMap<String, String>| (get(m, "run"), get(m, "task"), get(m, "context"));
            if mean_rows.iter().any(|m| key(m) == key(r)) {
                continue;
            }
            let accs: Vec<f64> = ret.iter().filter(|m| key(m) == key(r)).map(|m| num(m, "acc")).collect();
            let mut m = r.clone();
            m.insert("acc".into(), format!("{}", mean_std(&accs).0));
            mean_rows.push(m);
        }
        let acc = series(&mean_rows, |r| format!("{} {}", get(r, "run"), get(r, "task")), "context", "acc");
        plot_lines(&dir.join("accuracy_vs_context.svg"), "retrieval accuracy vs context length", ("context (tokens)", "exact-match accuracy"), false, &acc, &[])?;
        s += "\n";
    }
    if !att.is_empty() {
        s += "## Attention on retrieval questions\n\nEffective maps (signal − λ·noise for gda, softmax for standard) at each question's position, averaged over all heads of a layer (per-group rows are in attention.csv). Answer mass: weight on the answer span; noise mass: |weight| everywhere else; entropy in nats of |weights| normalised; sparsity: Hoyer (1 = one position, 0 = uniform). Under gda, signal and noise answer: the answer mass of the signal map and of the subtracted noise map.\n\n";
        s += "| run | task | context | layer | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        let all: Vec<BTreeMap<String, String>> = att.iter().filter(|r| get(r, "group") == "all").cloned().collect();
        for r in &all {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                get(r, "run"), get(r, "task"), get(r, "context"), get(r, "layer"), cellf(r, "lambda", 3),
                cellf(r, "answer_mass", 3), cellf(r, "noise_mass", 3), cellf(r, "entropy", 3), cellf(r, "sparsity", 3),
                cellf(r, "signal_answer", 3), cellf(r, "noise_answer", 3)
            );
        }
        let label = |r: &BTreeMap<String, String>| format!("{} {}@{}", get(r, "run"), get(r, "task"), get(r, "context"));
        let noise = series(&all, label, "layer", "noise_mass");
        let answer: Vec<(String, Vec<(f64, f64)>)> =
            series(&all, label, "layer", "answer_mass").into_iter().map(|(l, p)| (format!("{l} (answer, dashed)"), p)).collect();
        plot_lines(&dir.join("attention_noise.svg"), "attention noise (solid) and answer mass (dashed) per layer", ("layer", "attention mass"), true, &noise, &answer)?;
    }
    atomic_write(&dir.join("summary.md"), s.as_bytes()).map_err(|e| input(format!("cannot write {}: {e}", dir.join("summary.md").display())))?;
    Ok(s)
}

/// A single run's `report.md` and `loss_curve.svg` (train and validation
/// loss against tokens), from its metrics.csv and summary.json.
pub fn run_report(run: &Path) -> Result<String, GdaError> {
    let metrics = run.join("metrics.csv");
    if !metrics.is_file() {
        return Err(input(format!("{} has no metrics.csv: not a gda run, or one that never started", run.display())));
    }
    let train = column_pairs(run, "tokens", "train_loss");
    let val = column_pairs(run, "tokens", "val_loss");
    plot_lines(
        &run.join("loss_curve.svg"),
        "training (solid) and validation (dashed) loss",
        ("training tokens", "loss (nats/token)"),
        false,
        &[("train loss".to_string(), train)],
        &[("val loss".to_string(), val.clone())],
    )?;
    let mut s = format!("# Run {}\n\n", run.display());
    match crate::train::finished(run) {
        Some(sum) => {
            let _ = writeln!(s, "Finished: {} steps, {} tokens, {} parameters; {}; {:.0} tokens/s; {:.1} s.\n", sum.steps, sum.tokens_seen, sum.parameters, sum.quality(), sum.tokens_per_s, sum.elapsed_s);
        }
        None => {
            let step = crate::checkpoint::latest_step(run).map(|s| format!("checkpoint at step {s}")).unwrap_or_else(|| "no checkpoint yet".into());
            let _ = writeln!(s, "Not finished ({step}); resume with `gda train --resume --run-dir {}`.\n", run.display());
        }
    }
    s += "| tokens | val loss |\n|---|---|\n";
    for (t, l) in &val {
        let _ = writeln!(s, "| {t} | {l:.4} |");
    }
    atomic_write(&run.join("report.md"), s.as_bytes()).map_err(|e| input(format!("cannot write {}: {e}", run.join("report.md").display())))?;
    Ok(s)
}

//! Summaries of multi-run experiments: CSVs (one row per run, one per group
//! of seeds, one per paired comparison and seed), Markdown tables and SVG
//! plots, all rebuilt from the run directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub mod best;
mod comparisons;
mod plots;

pub use self::comparisons::{comparisons, comparisons_csv, comparisons_markdown, Comparison, COMPARISON_COLUMNS};
use super::{cell_label, cost, point_dir, policy_name, Cell, Point, Status, Variant};
use crate::config::{AttentionKind, BudgetPolicy, TaskKind};
use crate::error::{io, GdaError};
use crate::report::eval::RunId;
use crate::report::mean_std;
use crate::report::table::line;
use crate::report::units::{human_count, si_flops};
use crate::train::metrics::column_pairs;
use crate::util::fs::atomic_write;

/// One run's row.
pub struct Row<'a> {
    pub point: &'a Point,
    pub status: Status,
}

impl Row<'_> {
    /// Val loss and the second metric of a finished run.
    pub fn val(&self) -> Option<(f64, f64)> {
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

/// The grid keys of an experiment's points, sorted (none without a grid).
pub fn grid_keys(rows: &[Row]) -> Vec<String> {
    let mut keys: Vec<String> = rows.iter().flat_map(|r| r.point.grid.iter().map(|c| c.0.clone())).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The grid cells of the rows, in grid order (one empty cell without a grid).
pub fn cells(rows: &[Row]) -> Vec<Cell> {
    distinct_cells(rows.iter().map(|r| &r.point.grid))
}

/// The distinct cells, in first-seen order.
pub fn distinct_cells<'a>(of: impl Iterator<Item = &'a Cell>) -> Vec<Cell> {
    let mut out: Vec<Cell> = Vec::new();
    for c in of {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// A point's value of each of `keys` (empty where it has none).
fn grid_cells_of(p: &Point, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| p.grid.iter().find(|c| &c.0 == k).map(|c| c.1.clone()).unwrap_or_default()).collect()
}

/// `header` with the grid keys inserted after its column `after`.
fn with_grid_columns(header: &[&str], after: &str, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in header {
        out.push(h.to_string());
        if *h == after {
            out.extend(keys.iter().cloned());
        }
    }
    out
}

/// Groups of rows that differ only in seed, in grid order.
pub(super) fn groups<'a, 'b>(rows: &'b [Row<'a>]) -> Vec<(String, Vec<&'b Row<'a>>)> {
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

/// summary.csv: one row per run.
pub const CSV_COLUMNS: &[&str] = &[
    "point",
    "group",
    "variant",
    "seed",
    "policy",
    "requested_ratio",
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
    "tokens_per_s",
    "elapsed_s",
];

/// summary_groups.csv: one row per group of runs that differ only in seed.
pub const GROUP_COLUMNS: &[&str] = &[
    "group",
    "variant",
    "policy",
    "requested_ratio",
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
    "runs",
    "n",
    "val_loss_mean",
    "val_loss_std",
    "val_bpb_mean",
    "val_bpb_std",
];

/// Which point a run is, as summary.csv and the eval tables name it. The
/// budget policy only decides how a requested ratio became heads: the
/// baseline and grown models have none.
pub fn run_id(p: &Point, policy: &str) -> RunId {
    let ratio_based = p.requested.is_some() && p.variant != Variant::Baseline;
    RunId {
        group: p.group(),
        variant: p.variant.label().to_string(),
        seed: Some(p.seed),
        policy: if ratio_based { policy.to_string() } else { String::new() },
        requested_ratio: p.requested,
        ratio: p.ratio(),
        grid: p.grid.clone(),
    }
}

/// The cells every row of a point carries: variant, policy, ratios, layout
/// and cost.
fn point_cells(p: &Point, policy: &str) -> Vec<String> {
    let m = &p.spec.model;
    let (params, attn, train) = cost(p);
    let gda = m.attention == AttentionKind::Gda;
    let opt = |b: bool, v: usize| if b { v.to_string() } else { String::new() };
    let id = run_id(p, policy);
    vec![
        id.variant,
        id.policy,
        id.requested_ratio.map(|g| g.to_string()).unwrap_or_default(),
        fmt_ratio(id.ratio),
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
}

/// summary.csv: one row per run, nothing aggregated.
pub fn csv(rows: &[Row], policy: &str) -> Vec<u8> {
    let metric = metric_name(rows);
    let keys = grid_keys(rows);
    let mut out = line(with_grid_columns(CSV_COLUMNS, "group", &keys).iter().map(|c| c.replace("bpb", metric)));
    for r in rows {
        let p = r.point;
        let (loss, bpb) = r.val().map(|(l, b)| (format!("{l}"), format!("{b}"))).unwrap_or_default();
        let (tps, secs) = match &r.status {
            Status::Done(s) => (format!("{:.0}", s.tokens_per_s), format!("{:.1}", s.elapsed_s)),
            _ => Default::default(),
        };
        let pc = point_cells(p, policy);
        let mut cells = vec![p.name.clone(), p.group()];
        cells.extend(grid_cells_of(p, &keys));
        cells.extend([pc[0].clone(), p.seed.to_string()]);
        cells.extend(pc.into_iter().skip(1));
        cells.extend([r.status.describe(), loss, bpb, tps, secs]);
        out.extend(line(&cells));
    }
    out
}

/// summary_groups.csv: mean and sample std over the finished seeds of each
/// group (`n` of `runs`).
pub fn groups_csv(rows: &[Row], policy: &str) -> Vec<u8> {
    let metric = metric_name(rows);
    let keys = grid_keys(rows);
    let mut out = line(with_grid_columns(GROUP_COLUMNS, "group", &keys).iter().map(|c| c.replace("bpb", metric)));
    for (group, members) in groups(rows) {
        let vals: Vec<(f64, f64)> = members.iter().filter_map(|r| r.val()).collect();
        let losses: Vec<f64> = vals.iter().map(|v| v.0).collect();
        let bpbs: Vec<f64> = vals.iter().map(|v| v.1).collect();
        let stats = |v: &[f64]| {
            if v.is_empty() {
                (String::new(), String::new())
            } else {
                let (m, s) = mean_std(v);
                (format!("{m}"), if v.len() > 1 { format!("{s}") } else { String::new() })
            }
        };
        let ((lm, ls), (bm, bs)) = (stats(&losses), stats(&bpbs));
        let status = if vals.len() == members.len() {
            "done".to_string()
        } else {
            format!("{} of {} done", vals.len(), members.len())
        };
        let mut cells = vec![group];
        cells.extend(grid_cells_of(members[0].point, &keys));
        cells.extend(point_cells(members[0].point, policy));
        cells.extend([status, members.len().to_string(), vals.len().to_string(), lm, ls, bm, bs]);
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
    s += &format!("| point | ratio | H_s | H_n | K/V | params | attn MFLOP/tok | train compute | val loss | val {metric} | per-seed val loss | status |\n");
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
            "| {group} | {} | {hs} | {hn} | {} | {} | {:.2} | {} | {} | {} | {per_seed} | {status} |",
            if p.ratio().is_some() { fmt_ratio(p.ratio()) + ":1" } else { "–".into() },
            m.kv_heads,
            human_count(params),
            attn / 1e6,
            si_flops(train),
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
    let grid = !grid_keys(rows).is_empty();
    let mut header = "| ratio | shared params | shared attn MFLOP/tok | shared val loss |".to_string();
    let mut rule = "|---|---|---|---|".to_string();
    if grid {
        header = format!("| grid cell {}", header);
        rule += "---|";
    }
    for v in variants {
        let l = v.label();
        header += &format!(" {l} params | {l} attn MFLOP/tok | {l} val loss | Δ {l} |");
        rule += "---|---|---|---|";
    }
    s += &(header + "\n" + &rule + "\n");
    for cell in cells(rows) {
        let in_cell: Vec<&Row> = rows.iter().filter(|r| r.point.grid == cell).collect();
        let mut ratios: Vec<usize> = in_cell.iter().filter_map(|r| r.point.requested).collect();
        ratios.dedup();
        for g in ratios {
            let of = |v: Variant| -> Vec<&Row> {
                in_cell.iter().copied().filter(|r| r.point.requested == Some(g) && r.point.variant == v).collect()
            };
            let shared = of(Variant::Gda);
            let Some(first) = shared.first() else { continue };
            let (params, attn, _) = cost(first.point);
            let losses = |rs: &[&Row]| rs.iter().filter_map(|r| r.val().map(|v| v.0)).collect::<Vec<f64>>();
            if grid {
                let _ = write!(s, "| {} ", cell_label(&cell));
            }
            let _ = write!(s, "| {g}:1 | {} | {:.2} | {} |", human_count(params), attn / 1e6, pm(&losses(&shared), 4));
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
                let _ = write!(
                    s,
                    " {} | {:.2} | {} | {} |",
                    human_count(tp),
                    ta / 1e6,
                    pm(&losses(&twin), 4),
                    pm(&diffs, 4)
                );
            }
            s += "\n";
        }
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {fl} | {fb} | {} |",
            p.variant.label(),
            m.signal_heads,
            m.noise_heads,
            m.kv_heads,
            m.d_model,
            m.n_layers,
            human_count(params),
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
    let cmp = comparisons_csv(&comparisons(rows));
    for (name, bytes) in [
        ("summary.csv", csv(rows, policy)),
        ("summary_groups.csv", groups_csv(rows, policy)),
        ("summary.md", markdown.as_bytes().to_vec()),
        ("comparisons.csv", cmp),
    ] {
        let path = dir.join(name);
        atomic_write(&path, &bytes).map_err(io("cannot write", &path))?;
    }
    let grid = !grid_keys(rows).is_empty();
    if ratio_plot {
        best::write(dir, rows, &plots::held_fixed(rows, policy))?;
    }
    // In a grid, loss_vs_ratio_grid.svg has a line per cell instead: one
    // line per variant would average over cells.
    if ratio_plot && !grid {
        plots::plot_final(&dir.join("final_loss_vs_ratio.svg"), rows, 0, "val loss (nats/token)", policy)?;
        if metric_name(rows) == "acc" {
            plots::plot_final(&dir.join("final_acc_vs_ratio.svg"), rows, 1, "val accuracy (exact match)", policy)?;
        }
    }
    plots::plot_curves(dir, &dir.join("loss_curves.svg"), rows, policy, false)?;
    // The first evaluations (near ln(vocab)) set the whole curve's y range,
    // which flattens the end where the points differ: the second half again,
    // on its own scale.
    plots::plot_curves(dir, &dir.join("loss_curves_end.svg"), rows, policy, true)?;
    Ok(())
}

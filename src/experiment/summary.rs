//! Summaries of multi-run experiments: CSVs (one row per run, one per group
//! of seeds, one per paired comparison and seed), Markdown tables and SVG
//! plots, all rebuilt from the run directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::{cell_label, cost, point_dir, policy_name, Cell, Point, Status, Variant};
use crate::config::{AttentionKind, BudgetPolicy, TaskKind};
use crate::error::{io, GdaError};
use crate::report::eval::RunId;
use crate::report::mean_std;
use crate::report::plot::{
    bounds, draw_error_bars, draw_markers, plot_err, plot_lines, svg_chart, LegendEntry, Line, Titles, COLORS, GREY,
};
use crate::report::stats::{fmt_p, Paired};
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

/// One comparison the paper makes: arm `a` against arm `b` (group labels),
/// val loss paired by seed, d = a − b.
pub struct Comparison {
    /// The grid cell both arms belong to (never two cells).
    pub cell: Cell,
    pub a: String,
    pub b: String,
    pub seeds: Vec<u64>,
    pub test: Paired,
}

/// Every comparison the grid supports: each ratio against 1:1 and against
/// the baseline; each ablation twin against shared at its ratio; signal-only
/// growth against uniform and against scratch. Arms without a finished seed
/// in common still get a row (n = 0) so a missing comparison is visible.
pub fn comparisons(rows: &[Row]) -> Vec<Comparison> {
    let gs = groups(rows);
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, (_, members)) in gs.iter().enumerate() {
        let p = members[0].point;
        // Only arms of the same grid cell are compared.
        let find = |v: Variant, g: Option<usize>| {
            gs.iter().position(|(_, m)| {
                let q = m[0].point;
                q.grid == p.grid && q.variant == v && (v == Variant::Baseline || q.requested == g)
            })
        };
        let mut against = |other: Option<usize>| pairs.extend(other.map(|o| (i, o)));
        match p.variant {
            Variant::Gda => {
                if p.requested != Some(1) {
                    against(find(Variant::Gda, Some(1)));
                }
                against(find(Variant::Baseline, None));
            }
            Variant::NoShare | Variant::EqualParams => against(find(Variant::Gda, p.requested)),
            Variant::SignalOnly => {
                against(find(Variant::Uniform, p.requested));
                against(find(Variant::Scratch, p.requested));
            }
            _ => {}
        }
    }
    pairs
        .into_iter()
        .map(|(ai, bi)| {
            let ((a, am), (b, bm)) = (&gs[ai], &gs[bi]);
            let mut seeds = Vec::new();
            let mut diffs = Vec::new();
            for r in am {
                let other = bm.iter().find(|o| o.point.seed == r.point.seed);
                if let (Some((x, _)), Some((y, _))) = (r.val(), other.and_then(|o| o.val())) {
                    seeds.push(r.point.seed);
                    diffs.push(x - y);
                }
            }
            let (a, b) = (a.clone(), b.clone());
            Comparison { cell: am[0].point.grid.clone(), a, b, seeds, test: Paired::new(diffs) }
        })
        .collect()
}

/// The comparisons as a Markdown section (empty when there are none).
pub fn comparisons_markdown(cmp: &[Comparison]) -> String {
    if cmp.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Paired comparisons\n\nΔ = A − B in val loss (nats/token), paired by seed (negative: A is better). \
         95% CI: Student t on the paired differences (n − 1 degrees of freedom); p: two-sided paired t-test.\n\n",
    );
    s += "| A | B | n | Δ per seed | mean Δ | 95% CI | p | verdict |\n|---|---|---|---|---|---|---|---|\n";
    for c in cmp {
        let t = &c.test;
        let per_seed =
            c.seeds.iter().zip(&t.diffs).map(|(seed, d)| format!("s{seed}: {d:+.4}")).collect::<Vec<_>>().join(", ");
        let mean = if t.n() == 0 { "–".into() } else { format!("{:+.4}", t.mean) };
        let ci = t.ci.map(|(l, h)| format!("[{l:+.4}, {h:+.4}]")).unwrap_or_else(|| "–".into());
        let p = t.p.map(fmt_p).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {per_seed} | {mean} | {ci} | {p} | {} |",
            c.a,
            c.b,
            t.n(),
            t.verdict(&c.a, &c.b, "nats")
        );
    }
    if cmp.iter().any(|c| c.test.n() == 1) {
        s += ONE_SEED_HINT;
    }
    s
}

/// Said under comparisons made on one seed: how to get their intervals
/// (the base spec's hash leaves the seeds out, so the same directory takes
/// the new seeds and keeps the points trained).
pub const ONE_SEED_HINT: &str = "\nOne seed gives no interval. For intervals, rerun the same command with more seeds \
     into the same directory, e.g. `--num-seeds 3` (seeds from the spec's `seed` up) or `--seeds` listing the \
     seed trained and two more: the finished points are kept and only the new seeds train.\n";

pub const COMPARISON_COLUMNS: &[&str] =
    &["a", "b", "n", "seeds", "diffs", "mean_diff", "std_diff", "ci95_low", "ci95_high", "p_value", "verdict"];

/// comparisons.csv: one row per comparison and seed (`seed`, `diff`), the
/// summary columns repeated on each, so a reader can filter without
/// splitting cells.
pub fn comparisons_csv(cmp: &[Comparison]) -> Vec<u8> {
    let mut keys: Vec<String> = cmp.iter().flat_map(|c| c.cell.iter().map(|k| k.0.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut out = line(with_grid_columns(COMPARISON_COLUMNS, "b", &keys).iter().map(|c| match c.as_str() {
        "seeds" => "seed".to_string(),
        "diffs" => "diff".to_string(),
        c => c.to_string(),
    }));
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default();
    for c in cmp {
        let t = &c.test;
        let grid: Vec<String> =
            keys.iter().map(|k| c.cell.iter().find(|x| &x.0 == k).map(|x| x.1.clone()).unwrap_or_default()).collect();
        let tail = |seed: String, diff: String| {
            let mut cells = vec![c.a.clone(), c.b.clone()];
            cells.extend(grid.iter().cloned());
            cells.extend([
                t.n().to_string(),
                seed,
                diff,
                num(Some(t.mean)),
                num((t.n() > 1).then_some(t.std)),
                num(t.ci.map(|c| c.0)),
                num(t.ci.map(|c| c.1)),
                num(t.p),
                t.verdict(&c.a, &c.b, "nats"),
            ]);
            cells
        };
        if c.seeds.is_empty() {
            out.extend(line(tail(String::new(), String::new())));
        }
        for (seed, d) in c.seeds.iter().zip(&t.diffs) {
            out.extend(line(tail(seed.to_string(), format!("{d}"))));
        }
    }
    out
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
        super::best::write(dir, rows, &held_fixed(rows, policy))?;
    }
    // In a grid, loss_vs_ratio_grid.svg has a line per cell instead: one
    // line per variant would average over cells.
    if ratio_plot && !grid {
        plot_final(&dir.join("final_loss_vs_ratio.svg"), rows, 0, "val loss (nats/token)", policy)?;
        if metric_name(rows) == "acc" {
            plot_final(&dir.join("final_acc_vs_ratio.svg"), rows, 1, "val accuracy (exact match)", policy)?;
        }
    }
    plot_curves(dir, &dir.join("loss_curves.svg"), rows, policy, false)?;
    // The first evaluations (near ln(vocab)) set the whole curve's y range,
    // which flattens the end where the points differ: the second half again,
    // on its own scale.
    plot_curves(dir, &dir.join("loss_curves_end.svg"), rows, policy, true)?;
    Ok(())
}

/// What every point of an experiment shares, for a plot's subtitle: the
/// budget policy and the training length.
fn held_fixed(rows: &[Row], policy: &str) -> String {
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
fn plot_final(path: &Path, rows: &[Row], which: usize, y_desc: &str, policy: &str) -> Result<(), GdaError> {
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
fn plot_curves(dir: &Path, path: &Path, rows: &[Row], policy: &str, end: bool) -> Result<(), GdaError> {
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

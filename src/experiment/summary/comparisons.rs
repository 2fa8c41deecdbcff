//! The paired comparisons of a summary: which arms of the grid the paper
//! compares, their val loss paired by seed, in summary.md and
//! comparisons.csv.

use std::fmt::Write as _;

use super::{groups, with_grid_columns, Row};
use crate::experiment::{Cell, Variant};
use crate::report::stats::{fmt_p, Paired};
use crate::report::table::line;

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

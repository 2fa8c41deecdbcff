//! The evidence for each of the paper's claims, read back from the stages'
//! CSV files (so every number in the report is traceable to one), paired by
//! seed, and the verdict each claim gets by the rule below (the report
//! prints the same rule):
//!
//! - each comparison is a paired difference Δ = A − B over the seeds both
//!   arms finished, with its 95% interval (Student t, n − 1 degrees of
//!   freedom) and two-sided p;
//! - a comparison *favours* the claim when its interval lies wholly on the
//!   claim's side of 0, is *against* it when wholly on the other side, and
//!   is *unclear* otherwise (an interval holding 0, or n < 2). Claim 3 says
//!   "no worse": it is favoured when the interval's upper end is below the
//!   margin, against it when the interval lies wholly above 0 (and not
//!   below the margin), unclear otherwise;
//! - a claim is *supported* when at least one comparison favours it and
//!   none is against it, *contradicted* when at least one is against it and
//!   none favours it, and *inconclusive at this scale* otherwise.

use std::collections::BTreeMap;
use std::path::Path;

use super::preset::{StudyConfig, HIGH_FROM, MODERATE};
use super::{ABLATION, BENCH, GROWTH, SCAN};
use crate::error::GdaError;
use crate::report::stats::Paired;
use crate::report::table;

/// What a claim's comparisons must show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// A below B (val loss).
    Lower,
    /// A above B (a worse loss for claim 2, an accuracy for claim 5).
    Higher,
    /// A no worse than B by more than the margin (val loss).
    NoWorse(f64),
}

impl Rule {
    pub fn name(self) -> String {
        match self {
            Rule::Lower => "A < B".into(),
            Rule::Higher => "A > B".into(),
            Rule::NoWorse(m) => format!("A < B + {m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Favours,
    Against,
    Unclear,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Favours => "favours",
            Outcome::Against => "against",
            Outcome::Unclear => "unclear",
        }
    }
}

/// A comparison's outcome under `rule` (see the module's rule).
pub fn outcome(rule: Rule, test: &Paired) -> Outcome {
    let Some((lo, hi)) = test.ci else { return Outcome::Unclear };
    match rule {
        Rule::Lower if hi < 0.0 => Outcome::Favours,
        Rule::Lower if lo > 0.0 => Outcome::Against,
        Rule::Higher if lo > 0.0 => Outcome::Favours,
        Rule::Higher if hi < 0.0 => Outcome::Against,
        Rule::NoWorse(m) if hi < m => Outcome::Favours,
        Rule::NoWorse(_) if lo > 0.0 => Outcome::Against,
        _ => Outcome::Unclear,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    Contradicted,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive at this scale",
        }
    }
}

/// A claim's verdict from its comparisons' outcomes.
pub fn verdict(outcomes: &[Outcome]) -> Verdict {
    let favours = outcomes.contains(&Outcome::Favours);
    let against = outcomes.contains(&Outcome::Against);
    match (favours, against) {
        (true, false) => Verdict::Supported,
        (false, true) => Verdict::Contradicted,
        _ => Verdict::Inconclusive,
    }
}

/// One comparison: arm A against arm B, paired by seed.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub label: String,
    /// The grid cell (`model.d_model=64`; empty outside a grid).
    pub cell: String,
    pub metric: &'static str,
    /// The CSV the values come from, relative to the study directory.
    pub source: String,
    pub seeds: Vec<u64>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub test: Paired,
    pub rule: Rule,
    pub outcome: Outcome,
}

/// One claim with its evidence and verdict.
#[derive(Debug, Clone)]
pub struct Claim {
    pub number: usize,
    pub title: &'static str,
    pub evidence: Vec<Evidence>,
    pub verdict: Verdict,
}

/// The claims' titles, as the report's summary table names them.
pub const TITLES: [&str; 5] = [
    "Moderate imbalance (3:1, 4:1) beats the symmetric 1:1 design",
    "Very high ratios (8:1 and up) degrade",
    "Controlled repetition (shared noise heads) is not what costs quality",
    "Signal-only growth beats uniform growth and training from scratch",
    "The benchmark average is higher at moderate ratios than at 1:1",
];

/// One value of one run, as read from a CSV: its arm (variant and requested
/// ratio), cell and seed.
#[derive(Debug, Clone)]
struct Obs {
    variant: String,
    ratio: Option<usize>,
    cell: String,
    seed: u64,
    value: f64,
}

/// A row's cell by column name (empty where it has none).
pub type Cells<'a> = &'a dyn Fn(&str) -> String;
/// Which rows of a CSV to read, from their cells.
pub type Keep<'a> = &'a dyn Fn(Cells) -> bool;

/// The rows of a CSV with a value in `column`, keeping those `keep` accepts.
fn observations(path: &Path, column: &str, keep: Keep) -> Vec<Obs> {
    let Ok((header, rows)) = table::read(path) else { return Vec::new() };
    let col = |name: &str| header.iter().position(|h| h == name);
    let grid: Vec<usize> = header.iter().enumerate().filter(|(_, h)| h.contains('.')).map(|(i, _)| i).collect();
    let mut out = Vec::new();
    for r in rows {
        let get = |name: &str| col(name).and_then(|i| r.get(i)).cloned().unwrap_or_default();
        if !keep(&get) {
            continue;
        }
        let (Ok(seed), Ok(value)) = (get("seed").parse::<u64>(), get(column).parse::<f64>()) else { continue };
        let cell = grid.iter().map(|&i| format!("{}={}", header[i], r.get(i).cloned().unwrap_or_default()));
        out.push(Obs {
            variant: get("variant"),
            ratio: get("requested_ratio").parse().ok(),
            cell: cell.collect::<Vec<_>>().join(", "),
            seed,
            value,
        });
    }
    out
}

/// The cells of the observations, in first-seen order.
fn cells(obs: &[Obs]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in obs {
        if !out.contains(&o.cell) {
            out.push(o.cell.clone());
        }
    }
    out
}

/// Arm A against arm B within one cell, paired by seed.
fn compare(
    obs: &[Obs],
    cell: &str,
    a: (&str, Option<usize>),
    b: (&str, Option<usize>),
) -> (Vec<u64>, Vec<f64>, Vec<f64>) {
    let arm = |(v, r): (&str, Option<usize>)| -> BTreeMap<u64, f64> {
        obs.iter().filter(|o| o.cell == cell && o.variant == v && o.ratio == r).map(|o| (o.seed, o.value)).collect()
    };
    let (am, bm) = (arm(a), arm(b));
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (seed, x) in &am {
        if let Some(y) = bm.get(seed) {
            out.0.push(*seed);
            out.1.push(*x);
            out.2.push(*y);
        }
    }
    out
}

struct Source<'a> {
    obs: &'a [Obs],
    path: &'a str,
    metric: &'static str,
    rule: Rule,
}

impl Source<'_> {
    fn evidence(&self, label: String, cell: &str, a: (&str, Option<usize>), b: (&str, Option<usize>)) -> Evidence {
        let (seeds, av, bv) = compare(self.obs, cell, a, b);
        let test = Paired::new(av.iter().zip(&bv).map(|(x, y)| x - y).collect());
        let outcome = outcome(self.rule, &test);
        Evidence {
            label,
            cell: cell.to_string(),
            metric: self.metric,
            source: self.path.to_string(),
            seeds,
            a: av,
            b: bv,
            test,
            rule: self.rule,
            outcome,
        }
    }
}

fn claim(number: usize, evidence: Vec<Evidence>) -> Claim {
    let outcomes: Vec<Outcome> = evidence.iter().map(|e| e.outcome).collect();
    Claim { number, title: TITLES[number - 1], verdict: verdict(&outcomes), evidence }
}

const SHARED: &str = "shared";

/// Every claim's evidence from the study directory's CSV files.
pub fn gather(dir: &Path, study: &StudyConfig) -> Result<Vec<Claim>, GdaError> {
    let done = |get: &dyn Fn(&str) -> String| get("status") == "done";
    let scan_path = format!("{SCAN}/summary.csv");
    let scan = observations(&dir.join(&scan_path), "val_loss", &done);
    let moderate: Vec<usize> = MODERATE.iter().copied().filter(|m| study.ratios.contains(m)).collect();
    let high: Vec<usize> = study.ratios.iter().copied().filter(|&r| r >= HIGH_FROM).collect();
    let src = Source { obs: &scan, path: &scan_path, metric: "val loss", rule: Rule::Lower };
    let mut c1 = Vec::new();
    let mut c2 = Vec::new();
    for cell in cells(&scan) {
        for &m in &moderate {
            c1.push(src.evidence(format!("{m}:1 vs 1:1"), &cell, (SHARED, Some(m)), (SHARED, Some(1))));
        }
        let src = Source { rule: Rule::Higher, ..src };
        for &h in &high {
            for &m in &moderate {
                c2.push(src.evidence(format!("{h}:1 vs {m}:1"), &cell, (SHARED, Some(h)), (SHARED, Some(m))));
            }
        }
    }
    let ab_path = format!("{ABLATION}/summary.csv");
    let ab = observations(&dir.join(&ab_path), "val_loss", &done);
    let src = Source { obs: &ab, path: &ab_path, metric: "val loss", rule: Rule::NoWorse(study.margin) };
    let mut c3 = Vec::new();
    for cell in cells(&ab) {
        for &r in &study.ablation_ratios {
            for twin in ["no-share", "equal-params"] {
                c3.push(src.evidence(format!("{r}:1 shared vs {twin}"), &cell, (SHARED, Some(r)), (twin, Some(r))));
            }
        }
    }
    let growth_path = format!("{GROWTH}/s*/summary.csv");
    let mut growth = Vec::new();
    for &seed in &study.seeds {
        growth.extend(observations(&dir.join(GROWTH).join(format!("s{seed}")).join("summary.csv"), "val_loss", &done));
    }
    let src = Source { obs: &growth, path: &growth_path, metric: "val loss", rule: Rule::Lower };
    let c4 = vec![
        src.evidence("signal-only vs uniform".into(), "", ("signal-only", None), ("uniform", None)),
        src.evidence("signal-only vs scratch".into(), "", ("signal-only", None), ("scratch", None)),
    ];
    let bench_path = format!("{BENCH}/bench.csv");
    let average = |get: &dyn Fn(&str) -> String| get("task") == crate::report::eval::bench::AVERAGE;
    let bench = observations(&dir.join(&bench_path), "acc", &average);
    let src = Source { obs: &bench, path: &bench_path, metric: "benchmark average acc", rule: Rule::Higher };
    let mut c5 = Vec::new();
    for cell in cells(&bench) {
        for &m in &moderate {
            c5.push(src.evidence(format!("{m}:1 vs 1:1"), &cell, (SHARED, Some(m)), (SHARED, Some(1))));
        }
    }
    Ok(vec![claim(1, c1), claim(2, c2), claim(3, c3), claim(4, c4), claim(5, c5)])
}

/// A per-ratio table of one CSV column (mean ± std over seeds of the runs'
/// own means): the retrieval accuracy and attention noise of the report.
pub fn per_ratio(path: &Path, column: &str, keep: Keep) -> Vec<(usize, Vec<f64>)> {
    let obs = observations(path, column, keep);
    // Several rows of one run (layers, depths) average into the run's value.
    let mut runs: BTreeMap<(usize, u64), Vec<f64>> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.variant == SHARED) {
        if let Some(r) = o.ratio {
            runs.entry((r, o.seed)).or_default().push(o.value);
        }
    }
    let mut out: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for ((r, _), v) in runs {
        out.entry(r).or_default().push(v.iter().sum::<f64>() / v.len() as f64);
    }
    out.into_iter().collect()
}

pub const CLAIMS_CSV: &str = "claims.csv";
pub const CLAIMS_COLUMNS: &[&str] = &[
    "claim",
    "comparison",
    "cell",
    "metric",
    "rule",
    "source",
    "seed",
    "a",
    "b",
    "diff",
    "n",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "p_value",
    "outcome",
    "verdict",
];

/// claims.csv: one row per comparison and seed (one with an empty seed for
/// a comparison no seed completed), its summary repeated on each.
pub fn csv(claims: &[Claim]) -> Vec<u8> {
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default();
    let mut out = table::line(CLAIMS_COLUMNS.iter().copied());
    for c in claims {
        for e in &c.evidence {
            let t = &e.test;
            let row = |seed: String, a: String, b: String, d: String| {
                vec![
                    c.number.to_string(),
                    e.label.clone(),
                    e.cell.clone(),
                    e.metric.to_string(),
                    e.rule.name(),
                    e.source.clone(),
                    seed,
                    a,
                    b,
                    d,
                    t.n().to_string(),
                    num(Some(t.mean)),
                    num(t.ci.map(|c| c.0)),
                    num(t.ci.map(|c| c.1)),
                    num(t.p),
                    e.outcome.name().to_string(),
                    c.verdict.name().to_string(),
                ]
            };
            if e.seeds.is_empty() {
                out.extend(table::line(row(String::new(), String::new(), String::new(), String::new())));
            }
            for (i, seed) in e.seeds.iter().enumerate() {
                let cells =
                    row(seed.to_string(), format!("{}", e.a[i]), format!("{}", e.b[i]), format!("{}", t.diffs[i]));
                out.extend(table::line(cells));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paired(d: &[f64]) -> Paired {
        Paired::new(d.to_vec())
    }

    /// Each side of each rule, and the claim-level combination.
    #[test]
    fn outcomes_and_verdicts_follow_the_documented_rule() {
        assert_eq!(outcome(Rule::Lower, &paired(&[-0.1, -0.12, -0.11])), Outcome::Favours);
        assert_eq!(outcome(Rule::Lower, &paired(&[0.1, 0.12, 0.11])), Outcome::Against);
        assert_eq!(outcome(Rule::Lower, &paired(&[-0.1, 0.1, 0.0])), Outcome::Unclear);
        assert_eq!(outcome(Rule::Lower, &paired(&[-0.1])), Outcome::Unclear, "no interval at n = 1");
        assert_eq!(outcome(Rule::Higher, &paired(&[0.1, 0.12, 0.11])), Outcome::Favours);
        assert_eq!(outcome(Rule::NoWorse(0.05), &paired(&[0.01, 0.02, 0.015])), Outcome::Favours);
        assert_eq!(outcome(Rule::NoWorse(0.01), &paired(&[0.1, 0.12, 0.11])), Outcome::Against);
        assert_eq!(outcome(Rule::NoWorse(0.01), &paired(&[-0.1, 0.12, 0.0])), Outcome::Unclear);
        use Outcome::*;
        assert_eq!(verdict(&[Favours, Unclear]), Verdict::Supported);
        assert_eq!(verdict(&[Against, Unclear]), Verdict::Contradicted);
        assert_eq!(verdict(&[Favours, Against]), Verdict::Inconclusive);
        assert_eq!(verdict(&[Unclear]), Verdict::Inconclusive);
        assert_eq!(verdict(&[]), Verdict::Inconclusive);
    }
}

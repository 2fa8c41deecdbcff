//! `gda reproduce`: the smoke preset end to end (every stage's points once,
//! the five claim sections, each verdict recomputed here from claims.csv by
//! the rule the report documents, the HTML self-contained); killed at
//! random moments it finishes with the same report; every preset's dry run;
//! bad input refused before anything trains.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

fn reproduce(dir: &Path) -> std::process::Command {
    let mut c = gda();
    c.args(["reproduce", "--preset", "smoke", "--out"]).arg(dir);
    c
}

/// The uninterrupted smoke study, run once for the tests of this file.
fn smoke() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("smoke");
        let out = reproduce(&dir).output().unwrap();
        assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
        (tmp, dir)
    })
    .1
}

/// Student t's 97.5% quantile for 1..=10 degrees of freedom (tables).
const T975: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];

/// A comparison of claims.csv: its rows' values, and what it says of itself.
struct Comparison {
    claim: usize,
    rule: String,
    diffs: Vec<f64>,
    low: Option<f64>,
    high: Option<f64>,
    outcome: String,
    verdict: String,
}

fn comparisons(dir: &Path) -> Vec<Comparison> {
    let mut out: BTreeMap<(String, String, String), Comparison> = BTreeMap::new();
    for r in table(&dir.join("claims.csv")) {
        let key = (r["claim"].clone(), r["comparison"].clone(), r["cell"].clone());
        let c = out.entry(key).or_insert_with(|| Comparison {
            claim: r["claim"].parse().unwrap(),
            rule: r["rule"].clone(),
            diffs: Vec::new(),
            low: r["ci95_low"].parse().ok(),
            high: r["ci95_high"].parse().ok(),
            outcome: r["outcome"].clone(),
            verdict: r["verdict"].clone(),
        });
        if !r["seed"].is_empty() {
            let (a, b, d): (f64, f64, f64) =
                (r["a"].parse().unwrap(), r["b"].parse().unwrap(), r["diff"].parse().unwrap());
            assert!((a - b - d).abs() < 1e-12, "{r:?}");
            assert_traceable(dir, &r);
            c.diffs.push(d);
        }
    }
    out.into_values().collect()
}

/// A row's A and B values are the values of that seed in the CSV it names.
fn assert_traceable(dir: &Path, r: &BTreeMap<String, String>) {
    let sources: Vec<PathBuf> = if r["source"].contains('*') {
        ["s1", "s2"].iter().map(|s| dir.join("growth").join(s).join("summary.csv")).collect()
    } else {
        vec![dir.join(&r["source"])]
    };
    let column = if r["metric"].contains("acc") { "acc" } else { "val_loss" };
    let values: Vec<String> = sources
        .iter()
        .flat_map(|s| table(s))
        .filter(|row| row["seed"] == r["seed"] && (column != "acc" || row["task"] == "average"))
        .map(|row| row[column].clone())
        .collect();
    for side in ["a", "b"] {
        let v: f64 = r[side].parse().unwrap();
        assert!(values.iter().any(|x| x.parse::<f64>().unwrap() == v), "{side} = {v} of {r:?} is not in {sources:?}");
    }
}

/// The rule the report prints, applied here from the per-seed differences.
fn recompute(c: &Comparison, margin: f64) -> &'static str {
    let n = c.diffs.len();
    if n < 2 {
        assert!(c.low.is_none() && c.high.is_none());
        return "unclear";
    }
    let mean = c.diffs.iter().sum::<f64>() / n as f64;
    let sd = (c.diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let half = T975[n - 2] * sd / (n as f64).sqrt();
    let (lo, hi) = (mean - half, mean + half);
    let tol = 1e-3 * half.max(1e-9);
    assert!(
        (c.low.unwrap() - lo).abs() <= tol && (c.high.unwrap() - hi).abs() <= tol,
        "CI {lo} {hi} vs {:?} {:?}",
        c.low,
        c.high
    );
    match c.rule.as_str() {
        "A < B" if hi < 0.0 => "favours",
        "A < B" if lo > 0.0 => "against",
        "A > B" if lo > 0.0 => "favours",
        "A > B" if hi < 0.0 => "against",
        r if r.starts_with("A < B + ") && hi < margin => "favours",
        r if r.starts_with("A < B + ") && lo > 0.0 => "against",
        _ => "unclear",
    }
}

fn verdict_of(outcomes: &[&str]) -> &'static str {
    match (outcomes.contains(&"favours"), outcomes.contains(&"against")) {
        (true, false) => "supported",
        (false, true) => "contradicted",
        _ => "inconclusive at this scale",
    }
}

/// The report without the line that differs between runs (training time).
fn report_text(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    text.lines().filter(|l| !l.starts_with("- Training time:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_smoke_study_trains_every_point_once_and_judges_each_claim_by_its_rule() {
    let dir = smoke();
    // Every stage is an experiment directory with its points.
    for (stage, n) in [("scan", 6), ("ablation", 6), ("growth/s1", 3), ("growth/s2", 3), ("retrieval", 6)] {
        let grid: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(stage).join("grid.json")).unwrap()).unwrap();
        assert_eq!(grid["points"].as_array().unwrap().len(), n, "{stage}");
        let status = gda().arg("status").arg(dir.join(stage)).output().unwrap();
        assert!(stdout_of(&status).contains(&format!("{n} done")), "{stage}: {}", stdout_of(&status));
    }
    // The ablation's shared arms are the scan's runs, not copies.
    for s in ["g4-s1", "g4-s2"] {
        let link = dir.join("ablation/points").join(s);
        assert!(link.is_symlink(), "{s} was trained again");
        assert_eq!(link.canonicalize().unwrap(), dir.join("scan/points").join(s).canonicalize().unwrap());
        let steps: Vec<String> = table(&dir.join("scan/points").join(s).join("metrics.csv"))
            .into_iter()
            .filter(|r| r.get("val_loss").is_some_and(|v| !v.is_empty()))
            .map(|r| r["step"].clone())
            .collect();
        let mut unique = steps.clone();
        unique.dedup();
        assert_eq!(steps, unique, "{s} logged an evaluation twice: trained twice");
    }
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    for n in 1..=5 {
        assert_eq!(report.matches(&format!("\n## Claim {n}: ")).count(), 1, "claim {n}:\n{report}");
    }
    // Each verdict follows from claims.csv by the documented rule.
    let margin: f64 = 0.01;
    let cmps = comparisons(dir);
    let mut by_claim: BTreeMap<usize, Vec<&Comparison>> = BTreeMap::new();
    for c in &cmps {
        assert_eq!(recompute(c, margin), c.outcome, "claim {} outcome", c.claim);
        by_claim.entry(c.claim).or_default().push(c);
    }
    assert_eq!(by_claim.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5], "every claim has evidence");
    assert!(cmps.iter().all(|c| c.diffs.len() == 2), "both seeds paired everywhere");
    for (claim, cs) in &by_claim {
        let outcomes: Vec<&str> = cs.iter().map(|c| c.outcome.as_str()).collect();
        let v = verdict_of(&outcomes);
        assert!(cs.iter().all(|c| c.verdict == v), "claim {claim}");
        let row = report.lines().find(|l| l.starts_with(&format!("| {claim} | "))).unwrap();
        assert_eq!(row.split(" | ").nth(2).unwrap(), v, "the summary table's verdict of claim {claim}: {row}");
    }
    // The HTML holds every figure inline and loads nothing.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let figures = std::fs::read_dir(dir.join("figures")).unwrap().count();
    assert_eq!(figures, 5);
    assert_eq!(report.matches("](figures/claim-").count(), figures);
    assert_eq!(html.matches("<svg").count(), figures, "every figure inline");
    assert!(!html.contains("<img") && !html.contains("src=") && !html.contains("<script"));
    // Tasks built from the corpus are labelled so.
    assert!(report.contains("built from the held-out split") && dir.join("bench/tasks/corpus_cloze.jsonl").is_file());
    // Rerunning finds everything done and rewrites the same report.
    let before = std::fs::metadata(dir.join("scan/points/g1-s1/summary.json")).unwrap().modified().unwrap();
    let out = reproduce(dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("== bench: up to date"), "{}", stdout_of(&out));
    assert_eq!(std::fs::metadata(dir.join("scan/points/g1-s1/summary.json")).unwrap().modified().unwrap(), before);
    assert_eq!(
        report_text(dir),
        report.lines().filter(|l| !l.starts_with("- Training time:")).collect::<Vec<_>>().join("\n")
    );
}

/// Killed (with its trainers) at two moments drawn from the clock, the same
/// command finishes, and its report and claims.csv equal the uninterrupted run's.
#[test]
fn a_killed_study_resumes_to_the_report_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("killed");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    // One kill early (scan, mid-point), one later (a later stage).
    for (i, range) in [(3.0, 25.0), (30.0, 90.0)].into_iter().enumerate() {
        let at = range.0 + (range.1 - range.0) * ((seed >> (8 * i)) % 1000) as f64 / 1000.0;
        let mut child = reproduce(&dir).process_group(0).stdout(std::process::Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs_f64(at) && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signals the process group the child leads.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        eprintln!("killed after {at:.1}s");
    }
    let out = reproduce(&dir).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    let clean = smoke();
    assert_eq!(report_text(&dir), report_text(clean));
    assert_eq!(
        std::fs::read_to_string(dir.join("claims.csv")).unwrap(),
        std::fs::read_to_string(clean.join("claims.csv")).unwrap()
    );
}

#[test]
fn every_preset_has_a_dry_run_with_each_stage_and_an_estimate() {
    for preset in ["smoke", "cpu", "gpu", "cluster"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("study");
        let out = gda().args(["reproduce", "--preset", preset, "--dry-run", "--out"]).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{preset}: {}", stderr_of(&out));
        let text = stdout_of(&out);
        for stage in ["scan", "ablation", "growth", "retrieval", "bench"] {
            assert!(text.contains(&format!("## stage {stage} -> ")), "{preset} {stage}:\n{text}");
        }
        let total = text.lines().find(|l| l.starts_with("study total: ")).unwrap_or_else(|| panic!("{text}"));
        assert!(total.contains("FLOP training compute | estimated "), "{total}");
        assert!(!dir.exists(), "a dry run writes nothing");
    }
}

/// Refused with exit 2, naming what is wrong, before any directory exists.
#[test]
fn bad_input_is_refused_before_anything_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    let bad_tasks = tmp.path().join("broken.jsonl");
    std::fs::write(&bad_tasks, "{\"context\": \"a\", \"choices\": [\"b\"]\n").unwrap();
    let tasks = format!("mine={}", bad_tasks.display());
    let cases: [(&[&str], &str); 5] = [
        (&["--preset", "nonesuch"], "no such preset; allowed: smoke, cpu, gpu, cluster"),
        (&["--preset", "smoke", "--tasks", &tasks], "broken.jsonl:1"),
        (&["--preset", "smoke", "--set", "study.ratios=[1,3,4,8]"], "ratio 3:1 cannot be met exactly"),
        (&["--preset", "smoke", "--set", "study.ratios=[2,4,8]"], "key `study.ratios`: [2, 4, 8] lacks 1"),
        (&["--preset", "smoke", "--set", "study.growth_ratio=2"], "key `study.growth_ratio`"),
    ];
    for (args, want) in cases {
        let out = gda().arg("reproduce").args(args).arg("--out").arg(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(want), "{args:?}: {}", stderr_of(&out));
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
}

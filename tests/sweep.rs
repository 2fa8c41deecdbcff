//! `gda sweep` and `gda ablate` end to end: grids, summaries, plots,
//! resumption after kill -9 and Ctrl-C, failures, bad input, dry runs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// summary.csv (one row per run) and summary_groups.csv (one per group of seeds).
fn summary(dir: &Path) -> (Table, Table) {
    (table(&dir.join("summary.csv")), table(&dir.join("summary_groups.csv")))
}

/// The first table of summary.md (the per-point one), before the comparisons.
fn first_table(dir: &Path) -> String {
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    md.split("## Paired comparisons").next().unwrap().to_string()
}

fn point_summary(dir: &Path, point: &str) -> serde_json::Value {
    point_json(dir, point, "summary.json")
}

#[test]
fn sweep_trains_every_point_and_summarises_with_seed_spread_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 40"));
    let dir = tmp.path().join("sweep");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2,4", "--num-seeds", "2", "--baseline", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // --num-seeds counts from the spec's seed (7); the plan line says so.
    assert!(
        stdout_of(&out).contains("8 points into") && stdout_of(&out).contains("(seeds 7,8)"),
        "{}",
        stdout_of(&out)
    );
    let (runs, means) = summary(&dir);
    let names: Vec<&str> = runs.iter().map(|r| r["point"].as_str()).collect();
    assert_eq!(names, ["g1-s7", "g1-s8", "g2-s7", "g2-s8", "g4-s7", "g4-s8", "baseline-s7", "baseline-s8"]);
    assert_eq!(means.len(), 4);

    // What was held fixed (signal heads) and what was not, per row.
    for r in &runs[..6] {
        let g: usize = r["requested_ratio"].parse().unwrap();
        assert_eq!(r["signal_heads"], "4");
        assert_eq!(r["noise_heads"], (4 / g).to_string());
        assert_eq!(r["kv_heads"], (4 / g).to_string());
        assert_eq!(r["ratio"], g.to_string());
        assert_eq!(r["policy"], "signal");
        assert_eq!(r["status"], "done");
        // Each row carries its run's own result.
        let s = point_summary(&dir, &r["point"]);
        assert_eq!(r["val_loss"].parse::<f64>().unwrap(), s["val_loss"].as_f64().unwrap());
        assert_eq!(r["parameters"].parse::<u64>().unwrap(), s["parameters"].as_u64().unwrap());
    }
    let params: Vec<u64> = runs[..6].iter().step_by(2).map(|r| r["parameters"].parse().unwrap()).collect();
    assert!(params[0] > params[1] && params[1] > params[2], "fewer noise heads, fewer parameters: {params:?}");
    let attn: Vec<f64> = runs[..6].iter().step_by(2).map(|r| r["attn_flops_per_token"].parse().unwrap()).collect();
    assert!(attn[0] > attn[1] && attn[1] > attn[2]);

    // Seeds are different runs; the mean row is their mean and sample std.
    let l: Vec<f64> = runs[..2].iter().map(|r| r["val_loss"].parse().unwrap()).collect();
    assert_ne!(l[0], l[1]);
    let m = &means[0];
    assert_eq!(m["group"], "1:1 shared");
    assert!((m["val_loss_mean"].parse::<f64>().unwrap() - (l[0] + l[1]) / 2.0).abs() < 1e-12);
    assert!((m["val_loss_std"].parse::<f64>().unwrap() - (l[0] - l[1]).abs() / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!((m["n"].as_str(), m["runs"].as_str(), m["requested_ratio"].as_str()), ("2", "2", "1"));
    // Tidy: one value per cell, no aggregate rows among the runs.
    assert!(runs.iter().chain(&means).all(|r| r.values().all(|c| !c.contains(';'))));
    assert!(!runs[0].contains_key("row_type") && !runs[0].contains_key("per_seed_val_loss"));

    // The baseline is plain attention matched on parameters to the 1:1 model.
    let base = &runs[6];
    assert_eq!(base["variant"], "baseline");
    // The budget policy and a requested ratio do not apply to the baseline.
    assert_eq!((base["policy"].as_str(), base["requested_ratio"].as_str(), base["ratio"].as_str()), ("", "", ""));
    assert_eq!(base["seed"], "7");
    assert_eq!((means[3]["group"].as_str(), means[3]["policy"].as_str()), ("baseline", ""));
    let (bp, gp): (f64, f64) = (base["parameters"].parse().unwrap(), runs[0]["parameters"].parse().unwrap());
    assert!((bp - gp).abs() / gp < 0.05, "baseline {bp} vs 1:1 {gp}");
    let bspec = std::fs::read_to_string(dir.join("points/baseline-s7/spec.toml")).unwrap();
    assert!(bspec.contains("attention = \"standard\""));

    // Every point saw the same evaluation tokens.
    let vt: Vec<u64> = runs
        .iter()
        .map(|r| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("points").join(&r["point"]).join("manifest.json")).unwrap(),
            )
            .unwrap();
            m["val_tokens"].as_u64().unwrap()
        })
        .collect();
    assert!(vt.windows(2).all(|w| w[0] == w[1]));

    let stdout = stdout_of(&out);
    assert!(stdout.contains("| 2:1 shared | 2:1 | 4 | 2 | 2 |"), "{stdout}");
    assert_eq!(first_table(&dir).lines().filter(|l| l.starts_with("| ")).count(), 5);

    // Paired statistics: each ratio against 1:1 and against the baseline, one
    // CSV row per comparison and seed.
    let cmp = table(&dir.join("comparisons.csv"));
    let arms: Vec<(&str, &str)> = cmp.iter().step_by(2).map(|r| (r["a"].as_str(), r["b"].as_str())).collect();
    assert_eq!(
        arms,
        [
            ("1:1 shared", "baseline"),
            ("2:1 shared", "1:1 shared"),
            ("2:1 shared", "baseline"),
            ("4:1 shared", "1:1 shared"),
            ("4:1 shared", "baseline")
        ]
    );
    let loss = |p: &str| runs.iter().find(|r| r["point"] == p).unwrap()["val_loss"].parse::<f64>().unwrap();
    let rows: Vec<_> = cmp.iter().filter(|r| r["a"] == "4:1 shared" && r["b"] == "1:1 shared").collect();
    let d: Vec<f64> = [7, 8].iter().map(|s| loss(&format!("g4-s{s}")) - loss(&format!("g1-s{s}"))).collect();
    for (r, (seed, d)) in rows.iter().zip([7, 8].iter().zip(&d)) {
        assert_eq!((r["n"].as_str(), r["seed"].parse::<u64>().unwrap()), ("2", *seed));
        assert_eq!(r["diff"].parse::<f64>().unwrap(), *d);
    }
    // n = 2: se = |d1 − d2| / 2, t_0.975(1) = 12.706204736174694 (scipy
    // t.ppf(0.975, 1)), and with one degree of freedom t is Cauchy:
    // p = 1 − 2·atan(|t|)/π.
    let f = |k: &str| rows[0][k].parse::<f64>().unwrap();
    let (mean, se) = ((d[0] + d[1]) / 2.0, (d[0] - d[1]).abs() / 2.0);
    assert!((f("mean_diff") - mean).abs() < 1e-12);
    assert!((f("ci95_low") - (mean - 12.706204736174694 * se)).abs() < 1e-9);
    assert!((f("ci95_high") - (mean + 12.706204736174694 * se)).abs() < 1e-9);
    let p = 1.0 - 2.0 * (mean / se).abs().atan() / std::f64::consts::PI;
    assert!((f("p_value") - p).abs() < 1e-9, "{} vs {p}", f("p_value"));
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("| 4:1 shared | 1:1 shared | 2 | s7: "), "{md}");
    assert!(md.contains(&rows[0]["verdict"]) && stdout.contains("## Paired comparisons"));
    for plot in ["final_loss_vs_ratio.svg", "loss_curves.svg"] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{plot}");
    }
    let svg = std::fs::read_to_string(dir.join("final_loss_vs_ratio.svg")).unwrap();
    assert!(svg.contains("baseline (standard attention)") && svg.contains("<circle"));

    // Rerunning the finished sweep trains nothing and rewrites the same summary.
    let before = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let again = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2,4", "--num-seeds", "2", "--baseline", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(stdout_of(&again).contains("8 of 8 points already finished"));
    assert_eq!(std::fs::read_to_string(dir.join("summary.csv")).unwrap(), before);
}

/// Interrupts a sweep in the middle of its second point with `signal`, reruns
/// it, and compares with an uninterrupted sweep of the same grid.
fn check_sweep_resumes(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let text = TINY.replace("steps = 60", "steps = 200").replace("[train]", "[train]\ncheckpoint_every = 20");
    let spec = write_spec(tmp.path(), "tiny", &text);
    let args = |dir: &Path| {
        let mut c = gda();
        c.args(["sweep", "--spec"]).arg(&spec).args(["--ratios", "1,2,4", "--out"]).arg(dir);
        c
    };
    let whole = tmp.path().join("whole");
    let out = args(&whole).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let cut = tmp.path().join("cut");
    let child = args(&cut).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let second = cut.join("points/g2-s7/checkpoints/LATEST");
    wait_for(Duration::from_secs(120), || second.exists());
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    if signal == "-INT" {
        assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("interrupted"), "{}", stderr_of(&out));
    }
    assert!(!cut.join("points/g2-s7/summary.json").exists(), "the point finished before the interruption");
    assert!(!cut.join("points/g4-s7").exists());
    // After kill -9 the child trainer dies with the sweep; give it a moment.
    std::thread::sleep(Duration::from_millis(300));

    let out = args(&cut).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("1 of 3 points already finished"), "{}", stdout_of(&out));
    let (runs, _) = summary(&cut);
    assert_eq!(runs.iter().map(|r| r["point"].as_str()).collect::<Vec<_>>(), ["g1-s7", "g2-s7", "g4-s7"]);
    let (reference, _) = summary(&whole);
    for (a, b) in runs.iter().zip(&reference) {
        assert_eq!(a["val_loss"], b["val_loss"], "{} differs from the uninterrupted sweep", a["point"]);
    }
    // The resumed point logged every step once.
    let steps: Vec<usize> = column(&cut.join("points/g2-s7"), "step").iter().map(|s| s.1 as usize).collect();
    let mut dedup = steps.clone();
    dedup.dedup();
    assert_eq!(steps, dedup);
    assert_eq!(steps.len(), 21);
}

#[test]
fn a_sweep_killed_mid_point_resumes_with_one_row_per_point() {
    check_sweep_resumes("-KILL");
}

#[test]
fn a_sweep_interrupted_by_ctrl_c_resumes_with_one_row_per_point() {
    check_sweep_resumes("-INT");
}

#[test]
fn ablation_puts_shared_and_twins_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 30"));
    let dir = tmp.path().join("ablate");
    let out = gda()
        .args(["ablate", "--no-share", "--equal-params", "--spec"])
        .arg(&spec)
        .args(["--ratios", "2,4", "--seeds", "7,9", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (runs, means) = summary(&dir);
    assert_eq!(runs.len(), 12);
    assert_eq!(means.len(), 6);
    let get = |name: &str| runs.iter().find(|r| r["point"] == name).unwrap_or_else(|| panic!("{name}"));
    let shared = get("g2-s7");
    let twin = get("g2-no-share-s7");
    let control = get("g2-equal-params-s7");
    // The twin: same signal heads, one noise head (own Q2 and K2) per signal
    // head, K1/V still per group; it costs more. The control costs the same.
    assert_eq!(
        (
            twin["signal_heads"].as_str(),
            twin["noise_heads"].as_str(),
            twin["kv_heads"].as_str(),
            twin["noise_kv_heads"].as_str()
        ),
        ("4", "4", "2", "4")
    );
    let p = |r: &BTreeMap<String, String>| r["parameters"].parse::<u64>().unwrap();
    assert!(p(twin) > p(shared));
    assert_eq!(p(control), p(shared));
    assert!(std::fs::read_to_string(dir.join("points/g2-equal-params-s7/spec.toml"))
        .unwrap()
        .contains("noise_scope = \"one\""));

    // One table line per ratio, with the paired difference over seeds.
    let md = first_table(&dir);
    let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2:1") || l.starts_with("| 4:1")).collect();
    assert_eq!(lines.len(), 2, "{md}");
    let l = |n: &str| get(n)["val_loss"].parse::<f64>().unwrap();
    let d: Vec<f64> = [7, 9].iter().map(|s| l(&format!("g2-no-share-s{s}")) - l(&format!("g2-s{s}"))).collect();
    let mean = (d[0] + d[1]) / 2.0;
    let std = (d[0] - d[1]).abs() / 2f64.sqrt();
    assert!(lines[0].contains(&format!("{mean:.4} ± {std:.4}")), "{}", lines[0]);
    assert!(md.contains("Δ no-share") && md.contains("Δ equal-params"));
    assert!(stdout_of(&out).contains(lines[0]));

    // The twins against shared at the same ratio, paired by seed.
    let cmp = table(&dir.join("comparisons.csv"));
    let arms: Vec<(&str, &str)> = cmp.iter().step_by(2).map(|r| (r["a"].as_str(), r["b"].as_str())).collect();
    assert_eq!(
        arms,
        [
            ("2:1 no-share", "2:1 shared"),
            ("2:1 equal-params", "2:1 shared"),
            ("4:1 no-share", "4:1 shared"),
            ("4:1 equal-params", "4:1 shared")
        ]
    );
    assert_eq!(cmp[0]["diff"].parse::<f64>().unwrap(), d[0]);
    assert!((cmp[0]["mean_diff"].parse::<f64>().unwrap() - mean).abs() < 1e-12);

    // The plot places every variant at the ratio it was asked for: the seeds'
    // dots stand in two columns (2:1 and 4:1), six runs each, although the
    // no-share twins achieve 1:1.
    let svg = std::fs::read_to_string(dir.join("final_loss_vs_ratio.svg")).unwrap();
    let mut columns: BTreeMap<String, usize> = BTreeMap::new();
    // The seeds' dots have radius 3 (an error bar marks its mean with its own circle).
    for circle in svg.split("<circle").skip(1).filter(|c| c.contains("r=\"3\"")) {
        let cx = circle.split("cx=\"").nth(1).and_then(|c| c.split('"').next()).unwrap();
        *columns.entry(cx.to_string()).or_default() += 1;
    }
    assert_eq!(columns.values().copied().collect::<Vec<_>>(), [6, 6], "dot x positions: {columns:?}");
}

#[test]
fn failing_points_are_recorded_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // lr·weight_decay far above 1: every model diverges within a few steps.
    let spec = write_spec(tmp.path(), "div", &TINY.replace("[train]", "[train]\nweight_decay = 1e4"));
    let dir = tmp.path().join("sweep");
    let out = gda().args(["sweep", "--spec"]).arg(&spec).args(["--ratios", "1,2", "--out"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("2 of 2 points failed"));
    // The plan line names the spec's own seed when the sweep gives none.
    assert!(
        stdout_of(&out).contains("sweep of 2 points into") && stdout_of(&out).contains("(seeds 7)"),
        "{}",
        stdout_of(&out)
    );
    let (runs, _) = summary(&dir);
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert!(r["status"].starts_with("failed: training diverged at step"), "{}", r["status"]);
        assert!(r["val_loss"].is_empty());
    }
    // A rerun keeps the record without retraining; --retry-failed tries again.
    let again =
        gda().args(["sweep", "--spec"]).arg(&spec).args(["--ratios", "1,2", "--out"]).arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(4));
    assert!(stdout_of(&again).contains("2 of 2 points already finished or failed; 0 to train"));
}

/// A one-seed sweep's comparisons say how to get intervals, and the command
/// they name works: the same sweep with `--num-seeds 2` into the same
/// directory trains only the new seed and the comparison gains its interval.
#[test]
fn a_one_seed_sweep_says_how_to_get_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 5"));
    let dir = tmp.path().join("sweep");
    let sweep = |extra: &[&str]| {
        let out = gda()
            .args(["sweep", "--spec"])
            .arg(&spec)
            .args(["--ratios", "1,2"])
            .args(extra)
            .arg("--out")
            .arg(&dir)
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    let hint = "One seed gives no interval. For intervals, rerun the same command with more seeds";
    let one = sweep(&[]);
    assert!(one.contains("no interval at n = 1") && one.contains(hint) && one.contains("`--num-seeds 3`"), "{one}");
    assert!(std::fs::read_to_string(dir.join("summary.md")).unwrap().contains(hint));
    let two = sweep(&["--num-seeds", "2"]);
    assert!(two.contains("2 of 4 points already finished or failed; 2 to train"), "{two}");
    assert!(!two.contains(hint) && !two.contains("no interval at n = 1"), "{two}");
    let cmp = table(&dir.join("comparisons.csv"));
    assert!(cmp.iter().all(|r| r["n"] == "2" && !r["ci95_low"].is_empty()), "{cmp:?}");
}

#[test]
fn nearest_trains_the_closest_allocation_and_reports_the_real_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 5"));
    let dir = tmp.path().join("sweep");
    let refused =
        gda().args(["sweep", "--spec"]).arg(&spec).args(["--ratios", "3", "--out"]).arg(&dir).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = stderr_of(&refused);
    assert!(
        err.contains("tiny.toml") && err.contains("sweep.ratios") && err.contains("ratio 3:1 cannot be met exactly"),
        "{err}"
    );
    assert!(
        err.contains("2:1 (4 signal + 2 noise heads), 4:1 (4 signal + 1 noise heads)") && err.contains("--nearest"),
        "{err}"
    );
    assert!(!dir.exists());

    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "3", "--nearest", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (runs, _) = summary(&dir);
    assert_eq!(runs[0]["requested_ratio"], "3");
    assert!(runs[0]["ratio"] == "2" || runs[0]["ratio"] == "4");

    // Under the total policy 4 + 2 = 6 heads split exactly for 1:1 (3+3),
    // 2:1 (4+2) and 5:1 (5+1).
    let total = tmp.path().join("total");
    let out = gda()
        .args(["sweep", "--match", "total", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2,5", "--out"])
        .arg(&total)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (runs, _) = summary(&total);
    let alloc: Vec<(String, String)> =
        runs.iter().map(|r| (r["signal_heads"].clone(), r["noise_heads"].clone())).collect();
    assert_eq!(alloc, [("3".into(), "3".into()), ("4".into(), "2".into()), ("5".into(), "1".into())]);
}

/// Runs a sweep command that must be refused before anything is written.
fn refused(args: &[&str], dir: &Path) -> String {
    let out = gda().args(args).arg("--out").arg(dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    stderr_of(&out)
}

#[test]
fn bad_sweep_input_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 5"));
    let s = spec.to_str().unwrap();
    let dir = tmp.path().join("sweep");
    let err = refused(&["sweep", "--spec", s, "--ratios", "1,0"], &dir);
    assert!(err.contains("sweep.ratios") && err.contains("positive integers"), "{err}");
    let err = refused(&["sweep", "--spec", s, "--ratios", "2,2"], &dir);
    assert!(err.contains("ratio 2 is listed twice"), "{err}");
    let out = gda().args(["sweep", "--spec", s, "--ratios", "1,x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--ratios"), "{}", stderr_of(&out));
    for seeds in ["", "1,1", "a,b"] {
        let err = refused(&["sweep", "--spec", s, "--seeds", seeds], &dir);
        assert!(err.contains("seed"), "{seeds:?}: {err}");
    }
    let err = refused(&["sweep", "--spec", s, "--num-seeds", "0"], &dir);
    assert!(err.contains("--num-seeds 0"), "{err}");
    let err = refused(&["sweep", "--spec", s, "--num-seeds", "2", "--seeds", "1,2"], &dir);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = refused(&["ablate", "--spec", s], &dir);
    assert!(err.contains("--no-share"), "{err}");
    assert!(!dir.exists(), "nothing may be written for refused input");

    // A directory holding another sweep is never reused or overwritten.
    let out = gda().args(["sweep", "--spec", s, "--ratios", "1", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let before = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let err = refused(&["sweep", "--spec", s, "--ratios", "1", "--set", "train.lr=0.005"], &dir);
    assert!(err.contains("holds a different experiment"), "{err}");
    let err = refused(&["ablate", "--no-share", "--spec", s, "--ratios", "1"], &dir);
    assert!(err.contains("holds a different experiment"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("summary.csv")).unwrap(), before);
}

#[test]
fn dry_runs_print_the_grid_and_train_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The default spec: every ratio of the paper's scan is exact.
    let out = gda()
        .current_dir(tmp.path())
        .args(["sweep", "--dry-run", "--ratios", "1,2,3,4,8", "--baseline"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    for (g, hn) in [(1, 24), (2, 12), (3, 8), (4, 6), (8, 3)] {
        assert!(text.contains(&format!("| g{g}-s1337 | shared | {g}:1 | 24 | {hn} | {hn} |")), "{text}");
    }
    assert!(text.contains("| baseline-s1337 | baseline |"));
    assert!(text.contains("6 points on cpu | estimated"));
    // Parameters and training FLOPs carry units, never a raw count or 0.000.
    let g1 = text.lines().find(|l| l.starts_with("| g1-s1337 |")).unwrap();
    let cells: Vec<&str> = g1.split(" | ").collect();
    let (params, flop) = (cells[9], cells[11]);
    assert!(params.ends_with('M') && params[..params.len() - 1].parse::<f64>().unwrap() > 1.0, "{g1}");
    let (value, unit) = flop.split_once(' ').unwrap();
    assert!(value.parse::<f64>().unwrap() >= 1.0 && unit.ends_with("FLOP"), "{g1}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "a dry run writes nothing");

    for (spec, points) in
        [("experiments/gpu.toml", 18), ("experiments/ratio-scan-total.toml", 5), ("experiments/smoke.toml", 3)]
    {
        let out = gda().current_dir(repo()).args(["sweep", "--dry-run", "--spec", spec]).output().unwrap();
        assert!(out.status.success(), "{spec}: {}", stderr_of(&out));
        assert!(stdout_of(&out).contains(&format!("{points} points on cpu")), "{spec}: {}", stdout_of(&out));
    }
    let out = gda()
        .current_dir(repo())
        .args(["ablate", "--no-share", "--dry-run", "--spec", "experiments/smoke.toml", "--ratios", "1,2,4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("| g4-no-share-s1 | no-share | 1:1 | 4 | 4 | 1 | 4 |"), "{}", stdout_of(&out));
}

/// Trains two points at once with `concurrency` flags and 2 threads in all;
/// each gets one thread and the results of a sequential sweep.
fn check_concurrent(concurrency: &[&str], child_device: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "tiny", &TINY.replace("steps = 60", "steps = 20"));
    let dir = tmp.path().join("sweep");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--threads", "2", "--out"])
        .arg(&dir)
        .args(concurrency)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let (runs, _) = summary(&dir);
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert_eq!(r["status"], "done");
        let m = point_json(&dir, &r["point"], "manifest.json");
        assert_eq!(m["threads"], 1, "2 threads shared by 2 points at once");
        if let Some(d) = child_device {
            assert_eq!(m["device"], d);
            assert!(m["command"].to_string().contains(&format!("\"--device\",\"{d}\"")), "{m}");
        }
    }
    // Concurrent points give the same results as sequential ones.
    let seq = tmp.path().join("seq");
    let out = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--threads", "1", "--out"])
        .arg(&seq)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (seq_runs, _) = summary(&seq);
    for (a, b) in runs.iter().zip(&seq_runs) {
        assert_eq!(a["val_loss"], b["val_loss"]);
    }
}

#[test]
fn jobs_train_points_concurrently_with_the_threads_split() {
    check_concurrent(&["--jobs", "2"], None);
}

/// `--devices cpu,cpu`: two CPU thread groups, each child told its device.
#[test]
fn devices_train_one_point_per_device_with_the_threads_split() {
    check_concurrent(&["--devices", "cpu,cpu"], Some("cpu"));
}

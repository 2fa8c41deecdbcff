//! Scaling grids (`--grid KEY=V1,V2`, `[sweep.grid]`) end to end: the
//! product trains once and extends by its new points only, the tables carry
//! the grid columns, comparisons stay within a cell, best_ratio.csv agrees
//! with summary.csv, the plots' series are the grid's values, and bad axes
//! are refused before anything trains.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;

fn f(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row[col].parse().unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

/// TINY, shorter: the grids test bookkeeping and statistics, not learning.
fn short_spec(dir: &Path) -> std::path::PathBuf {
    let text = TINY
        .replace("steps = 60", "steps = 10")
        .replace("eval_every = 20", "eval_every = 5")
        .replace("eval_tokens = 2048", "eval_tokens = 512")
        .replace("log_every = 10", "log_every = 5");
    write_spec(dir, "tiny", &text)
}

fn sweep(spec: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    gda().args(["sweep", "--spec"]).arg(spec).arg("--out").arg(out).args(["--jobs", "2"]).args(args).output().unwrap()
}

/// Every point's train.log and summary.json, to tell a point trained again.
fn point_files(dir: &Path) -> BTreeMap<String, (Vec<u8>, Vec<u8>)> {
    std::fs::read_dir(dir.join("points"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let read = |f: &str| std::fs::read(p.join(f)).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), (read("train.log"), read("summary.json")))
        })
        .collect()
}

/// A 2 × 2 grid × 2 ratios × 1 seed trains each of its 8 points once, with
/// the grid keys as columns; one more value on an axis trains only the 4
/// new points; every paired comparison pairs runs of one cell.
#[test]
fn a_grid_trains_each_point_once_and_an_extended_axis_only_its_new_points() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = short_spec(tmp.path());
    let dir = tmp.path().join("grid");
    let grid = ["--grid", "model.d_model=16,32", "--grid", "train.lr=1e-2,3e-3", "--ratios", "1,2"];
    let out = sweep(&spec, &dir, &grid);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let names = |d: &[&str]| -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        for g in [1, 2] {
            for dm in d {
                for lr in ["0.01", "0.003"] {
                    s.insert(format!("g{g}-s7-d{dm}-lr{lr}"));
                }
            }
        }
        s
    };
    let trained = point_files(&dir);
    assert_eq!(trained.keys().cloned().collect::<BTreeSet<_>>(), names(&["16", "32"]));
    for (name, (log, _)) in &trained {
        // `gda train` opens with `train <name>: steps 0 → N ...`.
        let starts =
            String::from_utf8_lossy(log).lines().filter(|l| l.starts_with("train ") && l.contains(": steps ")).count();
        assert_eq!(starts, 1, "{name} trained {starts} times");
    }
    let rows = table(&dir.join("summary.csv"));
    assert_eq!(rows.len(), 8);
    for r in &rows {
        assert_eq!(r["status"], "done", "{r:?}");
        // The name, the grid columns and the point's own spec agree.
        let suffix = format!("-d{}-lr{}", r["model.d_model"], r["train.lr"]);
        assert!(r["point"].ends_with(&suffix), "{r:?}");
        let spec = gda::config::Spec::load(Some(&dir.join("specs").join(format!("{}.toml", r["point"]))), &[]).unwrap();
        assert_eq!(spec.model.d_model.to_string(), r["model.d_model"]);
        assert_eq!(spec.train.lr, f(r, "train.lr"));
        // A derived default follows the gridded key: 8/3 d_model, rounded up to 32.
        assert_eq!(spec.model.mlp_hidden, (spec.model.d_model * 8 / 3).div_ceil(32) * 32);
    }
    let groups = table(&dir.join("summary_groups.csv"));
    assert_eq!(groups.len(), 8);
    assert!(groups.iter().all(|g| g.contains_key("model.d_model") && g.contains_key("train.lr")));

    // Pairs never cross cells: each comparison's two runs (found in
    // summary.csv by group and seed) share every grid value, and its diff
    // is their val loss difference.
    let cmp = table(&dir.join("comparisons.csv"));
    assert_eq!(cmp.len(), 4, "2:1 vs 1:1 in each of the 4 cells: {cmp:?}");
    for c in &cmp {
        let run = |group: &str| {
            rows.iter().find(|r| r["group"] == group && r["seed"] == c["seed"]).unwrap_or_else(|| panic!("{c:?}"))
        };
        let (a, b) = (run(&c["a"]), run(&c["b"]));
        for k in ["model.d_model", "train.lr"] {
            assert_eq!(a[k], b[k], "{k}: {c:?}");
            assert_eq!(c[k], a[k], "{k}: {c:?}");
        }
        assert_eq!((a["requested_ratio"].as_str(), b["requested_ratio"].as_str()), ("2", "1"));
        assert_eq!(f(c, "diff"), f(a, "val_loss") - f(b, "val_loss"));
    }

    // One more value on an axis: only its 4 points train; the others keep
    // their logs and results byte for byte.
    let extended = ["--grid", "model.d_model=16,32,24", "--grid", "train.lr=1e-2,3e-3", "--ratios", "1,2"];
    let out = sweep(&spec, &dir, &extended);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("8 of 12 points already finished or failed; 4 to train"), "{}", stdout_of(&out));
    let after = point_files(&dir);
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), names(&["16", "32", "24"]));
    for (name, files) in &trained {
        assert!(after[name] == *files, "{name} was trained again");
    }
    assert_eq!(table(&dir.join("summary.csv")).len(), 12);

    // gda status groups the points by cell.
    let out = gda().arg("status").arg(&dir).output().unwrap();
    let text = stdout_of(&out);
    let cells: Vec<&str> = text.lines().filter(|l| l.starts_with("cell ")).collect();
    assert_eq!(cells.len(), 6, "{text}");
    assert_eq!(cells[0], "cell d_model=16, lr=0.01: 2 done, 0 running, 0 pending, 0 failed", "{text}");
}

/// Every grid question answered from summary.csv in the test: the best
/// ratio per cell, its paired differences to the runner-up and to 1:1 with
/// their 95% intervals, and the near ties. The plots' series are the grid's
/// values, read back from the SVG; the eval tables carry the grid column.
#[test]
fn best_ratio_per_cell_agrees_with_summary_csv_and_the_plots_with_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = short_spec(tmp.path());
    let dir = tmp.path().join("grid");
    let out = sweep(&spec, &dir, &["--grid", "model.d_model=16,32", "--ratios", "1,2,4", "--num-seeds", "2"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = table(&dir.join("summary.csv"));
    let best = table(&dir.join("best_ratio.csv"));
    assert_eq!(best.iter().map(|b| b["model.d_model"].as_str()).collect::<Vec<_>>(), ["16", "32"]);
    let t975 = gda::report::stats::t_quantile(0.975, 1.0);
    for b in &best {
        // ratio → (seed → val loss) in this cell.
        let mut arms: BTreeMap<usize, BTreeMap<String, f64>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r["model.d_model"] == b["model.d_model"]) {
            arms.entry(r["requested_ratio"].parse().unwrap()).or_default().insert(r["seed"].clone(), f(r, "val_loss"));
        }
        let mean = |g: usize| arms[&g].values().sum::<f64>() / arms[&g].len() as f64;
        let mut ranked: Vec<usize> = arms.keys().copied().collect();
        ranked.sort_by(|x, y| mean(*x).total_cmp(&mean(*y)));
        let (top, second) = (ranked[0], ranked[1]);
        assert_eq!(b["best_ratio"], top.to_string(), "{b:?}");
        assert_eq!(b["runner_up_ratio"], second.to_string(), "{b:?}");
        assert!((f(b, "best_val_loss_mean") - mean(top)).abs() < 1e-12);
        // best − other, paired by seed; n = 2: mean ± t(0.975, 1)·|d1 − d2|/2.
        let check = |other: usize, col: &str| -> Option<(f64, f64)> {
            let d: Vec<f64> = arms[&top].iter().map(|(s, l)| l - arms[&other][s]).collect();
            let m = (d[0] + d[1]) / 2.0;
            let half = t975 * (d[0] - d[1]).abs() / 2.0; // std/√2 with std = |d1 − d2|/√2
            assert!((f(b, col) - m).abs() < 1e-12, "{col}: {b:?}");
            assert!((f(b, &format!("{col}_ci95_low")) - (m - half)).abs() < 1e-9, "{col}: {b:?}");
            assert!((f(b, &format!("{col}_ci95_high")) - (m + half)).abs() < 1e-9, "{col}: {b:?}");
            Some((m - half, m + half))
        };
        check(second, "diff_runner_up");
        if top == 1 {
            assert_eq!(b["diff_1to1"], "", "the best is 1:1 itself");
        } else {
            check(1, "diff_1to1");
        }
        // Near ties: the best and every ratio whose interval against it holds 0.
        let ties: Vec<String> = arms
            .keys()
            .filter(|&&g| {
                g == top || {
                    let d: Vec<f64> = arms[&top].iter().map(|(s, l)| l - arms[&g][s]).collect();
                    let m = (d[0] + d[1]) / 2.0;
                    m + t975 * (d[0] - d[1]).abs() / 2.0 >= 0.0
                }
            })
            .map(|g| g.to_string())
            .collect();
        assert_eq!(b["near_ties"], ties.join(" "), "{b:?}");
        assert!(b["verdict"].contains(&format!("{top}:1")) && b["verdict"].contains("d_model="), "{b:?}");
    }
    let md = std::fs::read_to_string(dir.join("best_ratio.md")).unwrap();
    for b in &best {
        assert!(md.contains(&format!("- {}\n", b["verdict"])), "{md}");
    }

    // loss_vs_ratio_grid.svg: one line per grid value, its legend outside
    // the data, each line through that cell's mean val loss at 1, 2, 4.
    let svg = std::fs::read_to_string(dir.join("loss_vs_ratio_grid.svg")).unwrap();
    let legend = legend_labels(&svg);
    assert_eq!(legend, ["d_model=16", "d_model=32"]);
    let series = data_lines(&svg);
    assert_eq!(series.len(), 2, "{series:?}");
    let (to_x, to_y) = axes(&svg);
    for (line, dm) in series.iter().zip(["16", "32"]) {
        let pts: Vec<(f64, f64)> = line.iter().map(|&(x, y)| (to_x(x), to_y(y))).collect();
        let want: Vec<(f64, f64)> = [1usize, 2, 4]
            .iter()
            .map(|&g| {
                let ls: Vec<f64> = rows
                    .iter()
                    .filter(|r| r["model.d_model"] == dm && r["requested_ratio"] == g.to_string())
                    .map(|r| f(r, "val_loss"))
                    .collect();
                (g as f64, ls.iter().sum::<f64>() / ls.len() as f64)
            })
            .collect();
        assert_eq!(pts.len(), 3, "{pts:?}");
        for (p, w) in pts.iter().zip(&want) {
            // Pixels are whole: within a pixel's worth of the axis.
            assert!((p.0 - w.0).abs() < 0.1, "d_model {dm}: x {p:?} vs {w:?}");
            assert!((p.1 - w.1).abs() < 0.01, "d_model {dm}: y {p:?} vs {w:?}");
        }
    }
    // best_ratio_vs_model_d_model.svg: the best ratio at d_model 16 and 32.
    let svg = std::fs::read_to_string(dir.join("best_ratio_vs_model_d_model.svg")).unwrap();
    assert_eq!(legend_labels(&svg), ["best ratio"]);
    let series = data_lines(&svg);
    assert_eq!(series.len(), 1, "{series:?}");
    let (to_x, to_y) = axes(&svg);
    let pts: Vec<(f64, f64)> = series[0].iter().map(|&(x, y)| (to_x(x), to_y(y))).collect();
    assert_eq!(pts.len(), 2);
    for (p, b) in pts.iter().zip(&best) {
        assert!((p.0 - f(b, "model.d_model")).abs() < 0.2, "{p:?} {b:?}");
        assert!((p.1 - f(b, "best_ratio")).abs() < 0.05, "{p:?} {b:?}");
    }

    // The eval tables carry the grid column, agreeing with summary.csv.
    let out = gda().arg("eval").arg(&dir).args(["--tokens", "512", "--threads", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let lm = table(&dir.join("eval/lm.csv"));
    assert_eq!(lm.len(), 12);
    for r in &lm {
        let s = rows.iter().find(|s| s["point"] == r["run"]).unwrap();
        assert_eq!((&r["model.d_model"], &r["group"]), (&s["model.d_model"], &s["group"]), "{r:?}");
    }
    let lm_groups = table(&dir.join("eval/lm_groups.csv"));
    assert_eq!(lm_groups.len(), 6);
    for g in &lm_groups {
        assert!(g["group"].ends_with(&format!("d_model={}", g["model.d_model"])), "{g:?}");
    }
}

/// Bad axes exit 2 naming the key, and nothing is written or trained.
#[test]
fn bad_grid_axes_are_refused_with_the_key_and_nothing_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = short_spec(tmp.path());
    let dir = tmp.path().join("never");
    for (grid, key, says) in [
        ("data.val_fraction=0.1,0.2", "data.val_fraction", "train/validation split"),
        ("data.corpus=a,b", "data.corpus", "train/validation split"),
        ("model.noise_heads=1,2", "model.noise_heads", "reserved to the ratio"),
        ("model.signal_heads=4,8", "model.signal_heads", "reserved to the ratio"),
        ("model.d_model=0,32", "model.d_model", "must be a positive integer"),
        ("model.head_dim=8,7", "model.head_dim", "odd"),
        ("train.lr=-1", "train.lr", "allowed: a finite number > 0"),
        ("model.d_model=", "model.d_model", "has no values"),
        ("model.d_model=16,32,16", "model.d_model", "listed twice"),
        ("train.lr=1e-3,0.001", "train.lr", "listed twice"),
        ("model.dmodel=16,32", "model.dmodel", "is not a spec key"),
    ] {
        let out = sweep(&spec, &dir, &["--grid", grid, "--ratios", "1,2"]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{grid}: {err}");
        assert!(err.contains(&format!("key `{key}`")) && err.contains(says), "{grid}: {err}");
        assert!(!dir.exists(), "{grid}: {} was written", dir.display());
    }
    // The same in the spec: [sweep.grid] with an empty axis names it there.
    let text = std::fs::read_to_string(&spec).unwrap() + "[sweep.grid]\nmodel.n_layers = []\n";
    let bad = write_spec(tmp.path(), "bad", &text);
    let out = sweep(&bad, &dir, &["--ratios", "1,2"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml") && err.contains("key `sweep.grid.model.n_layers`"), "{err}");
    assert!(!dir.exists());
}

// ------------------------------------------------------------ SVG reading

/// The legend's labels, top to bottom (the only left-anchored texts).
fn legend_labels(svg: &str) -> Vec<String> {
    svg_texts(svg).into_iter().filter(|t| t.2 == "start").map(|t| t.3).collect()
}

/// The data lines: 2-px polylines left of the legend column, in drawing order.
fn data_lines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    let legend_x = svg_texts(svg).iter().filter(|t| t.2 == "start").map(|t| t.0).fold(f64::MAX, f64::min);
    svg.split("<polyline")
        .skip(1)
        .filter(|t| t.split('>').next().unwrap().contains("stroke-width=\"2\""))
        .map(|t| {
            let pts = t.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            pts.split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect::<Vec<(f64, f64)>>()
        })
        .filter(|pts| pts.iter().all(|p| p.0 < legend_x - 20.0))
        .collect()
}

/// Pixel → data maps of both axes, from the outermost numeric tick labels
/// (x: centred on one baseline; y: right-aligned on one x).
#[allow(clippy::type_complexity)]
fn axes(svg: &str) -> (Box<dyn Fn(f64) -> f64>, Box<dyn Fn(f64) -> f64>) {
    let texts = svg_texts(svg);
    let numeric: Vec<&(f64, f64, String, String)> = texts.iter().filter(|t| t.3.parse::<f64>().is_ok()).collect();
    let most =
        |anchor: &str, key: fn(&(f64, f64, String, String)) -> f64, pos: fn(&(f64, f64, String, String)) -> f64| {
            let mut by: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
            for t in numeric.iter().filter(|t| t.2 == anchor) {
                by.entry(key(t) as i64).or_default().push((pos(t), t.3.parse().unwrap()));
            }
            let mut v = by.into_values().max_by_key(|v| v.len()).unwrap();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (a, b) = (v[0], v[v.len() - 1]);
            move |px: f64| a.1 + (px - a.0) * (b.1 - a.1) / (b.0 - a.0)
        };
    (Box::new(most("middle", |t| t.1, |t| t.0)), Box::new(most("end", |t| t.0, |t| t.1)))
}

//! The live view of a sweep (issue 15): progress read from the points'
//! metrics.csv, plain lines off a terminal, the MultiProgress on one, and
//! the closing lines that name the summary, the plots and the next command.

mod common;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

fn spec(dir: &Path, steps: usize) -> std::path::PathBuf {
    write_spec(dir, "tiny", &TINY.replace("steps = 60", &format!("steps = {steps}")))
}

/// `progress g1-s7: step 40/200 | train 3.1422 | val 5.5309 | 20958 tok/s | ETA 3s`
struct PointLine {
    name: String,
    step: usize,
    steps: usize,
    train: Option<String>,
    val: Option<String>,
    tokens_per_s: Option<f64>,
}

fn point_line(line: &str) -> Option<PointLine> {
    let rest = line.strip_prefix("progress ")?;
    let (name, rest) = rest.split_once(": step ")?;
    let cells: Vec<&str> = rest.split(" | ").collect();
    assert_eq!(cells.len(), 5, "{line}");
    let (step, steps) = cells[0].split_once('/').unwrap();
    let value = |cell: &str, prefix: &str| {
        let v = cell.strip_prefix(prefix).unwrap_or_else(|| panic!("{line}: {cell} is not {prefix}"));
        (v != "–").then(|| v.to_string())
    };
    assert!(cells[4].starts_with("ETA "), "{line}");
    Some(PointLine {
        name: name.to_string(),
        step: step.parse().unwrap(),
        steps: steps.parse().unwrap(),
        train: value(cells[1], "train "),
        val: value(cells[2], "val "),
        tokens_per_s: cells[3].strip_suffix(" tok/s").unwrap().parse().ok(),
    })
}

/// `grid: 1 done, 1 running, 0 failed, 0 pending of 2 | ETA 3s`: the counts
/// and the ETA cell.
fn grid_line(line: &str) -> Option<([usize; 5], String)> {
    let rest = line.strip_prefix("grid: ")?;
    let (counts, eta) = rest.split_once(" | ETA ").unwrap();
    let words: Vec<&str> = counts.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    assert_eq!(words[1..8].iter().step_by(2).copied().collect::<Vec<_>>(), ["done", "running", "failed", "pending"]);
    let n: Vec<usize> = [0, 2, 4, 6, 9].iter().map(|&i| words[i].parse().unwrap()).collect();
    assert_eq!(words[8], "of", "{line}");
    Some(([n[0], n[1], n[2], n[3], n[4]], eta.to_string()))
}

/// The value of `col` at `step` in a run's metrics.csv, as printed (4 decimals).
fn metric_at(run: &Path, col: &str, step: usize) -> Option<String> {
    let (header, rows) = metrics(run);
    let i = header.iter().position(|h| h == col).unwrap();
    let row = rows.iter().find(|r| r[0] == step.to_string())?;
    row[i].parse::<f64>().ok().map(|v| format!("{v:.4}"))
}

/// The closing lines name files that exist, and the next command runs.
fn check_closing_lines(out: &Output, dir: &Path) {
    let text = stdout_of(out);
    let line = |prefix: &str| {
        text.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line: {text}"))
    };
    let summaries: Vec<&str> = line("summary: ").split(", ").collect();
    let names: Vec<&str> = summaries.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        names,
        ["summary.md", "summary.csv", "summary_groups.csv", "comparisons.csv", "best_ratio.md", "best_ratio.csv"],
        "{text}"
    );
    let plots: Vec<&str> = line("plots: ").split(", ").collect();
    assert_eq!(
        plots.iter().map(|p| p.rsplit('/').next().unwrap()).collect::<Vec<_>>(),
        ["final_loss_vs_ratio.svg", "loss_curves.svg", "loss_curves_end.svg"],
        "{text}"
    );
    for f in summaries.iter().chain(&plots) {
        assert!(Path::new(f).is_file(), "{f} does not exist");
        assert!(Path::new(f).starts_with(dir), "{f} is not in {}", dir.display());
    }
    assert!(std::fs::read_to_string(plots[1]).unwrap().contains("<svg"), "{}", plots[1]);
    // The command it names works as printed.
    let next = line("next: ");
    let cmd = next.split(" (").next().unwrap();
    assert_eq!(cmd, format!("gda eval {}", dir.display()), "{text}");
    let args: Vec<&str> = cmd.split(' ').skip(1).collect();
    let eval = gda().args(&args).args(["--tokens", "2048"]).output().unwrap();
    assert!(eval.status.success(), "{cmd}: {}", stderr_of(&eval));
    assert!(dir.join("eval/summary.md").is_file());
}

#[test]
fn off_a_terminal_each_point_prints_progress_from_its_metrics_and_the_grid_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 200);
    let dir = tmp.path().join("sweep");
    let sweep = |ratios: &str, every: Option<&str>| {
        let mut c = gda();
        c.args(["sweep", "--spec"]).arg(&spec).args(["--ratios", ratios, "--out"]).arg(&dir);
        match every {
            Some(s) => c.env("GDA_PROGRESS_SECS", s),
            None => c.env_remove("GDA_PROGRESS_SECS"),
        };
        c.output().unwrap()
    };

    // The default interval, 30 s, is longer than this point: no progress
    // line, but the line that starts it names its log.
    let out = sweep("1", None);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let log = dir.join("points/g1-s7/train.log");
    assert!(text.contains(&format!("training g1-s7 (new) | log {}", log.display())), "{text}");
    assert!(log.is_file());
    assert!(!text.contains("progress ") && !text.contains("grid: "), "{text}");

    // At every metrics row: one finished point, one to train.
    let out = sweep("1,2,4", Some("0"));
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let mut finished = 1;
    let mut current: Option<String> = None;
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut grids = 0;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("training ") {
            let name = rest.split(' ').next().unwrap().to_string();
            let log = dir.join("points").join(&name).join("train.log");
            assert_eq!(l, format!("training {name} (new) | log {}", log.display()));
            current = Some(name);
        } else if l.starts_with('[') && l.contains(" done | ") {
            finished += 1;
            assert!(l.starts_with(&format!("[{finished}/3] {} done", current.take().unwrap())), "{l}");
        } else if let Some(p) = point_line(l) {
            assert_eq!(Some(&p.name), current.as_ref(), "a progress line outside its point's training: {text}");
            assert_eq!(p.steps, 200);
            assert!(p.step <= 200, "{l}");
            // Every number is the one metrics.csv has at that step.
            let run = dir.join("points").join(&p.name);
            if p.step > 0 {
                assert_eq!(p.train, metric_at(&run, "train_loss", p.step), "{l}");
                let tps = metric_at(&run, "tokens_per_s", p.step).unwrap().parse::<f64>().unwrap();
                assert_eq!(p.tokens_per_s, Some(tps), "{l}");
                assert!(tps > 0.0);
            }
            // The last validation loss logged at or before that step.
            let (header, rows) = metrics(&run);
            let vi = header.iter().position(|h| h == "val_loss").unwrap();
            let val = rows
                .iter()
                .rfind(|r| r[0].parse::<usize>().unwrap() <= p.step && !r[vi].is_empty())
                .map(|r| format!("{:.4}", r[vi].parse::<f64>().unwrap()));
            assert_eq!(p.val, val, "{l}");
            assert!(seen.last().is_none_or(|(n, s)| *n != p.name || *s < p.step), "a step printed twice: {text}");
            seen.push((p.name, p.step));
        } else if let Some((counts, eta)) = grid_line(l) {
            grids += 1;
            // With --jobs 1: one running, the finished ones as printed so far.
            assert_eq!(counts, [finished, 1, 0, 3 - finished - 1, 3], "{l}\n{text}");
            // g1 finished before this run: its speed gives an ETA at once.
            assert!(eta.ends_with('s') && eta != "–", "{l}");
        }
    }
    assert_eq!(finished, 3, "{text}");
    assert!(grids >= 2, "{text}");
    for name in ["g2-s7", "g4-s7"] {
        let steps: Vec<usize> = seen.iter().filter(|s| s.0 == name).map(|s| s.1).collect();
        assert!(steps.iter().any(|&s| s > 0 && s < 200), "no progress line of {name} mid-run: {text}");
    }
    check_closing_lines(&out, &dir);
}

#[test]
fn a_bad_progress_interval_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 5);
    let dir = tmp.path().join("sweep");
    for bad in ["soon", "-1", "NaN"] {
        let out = gda()
            .args(["sweep", "--spec"])
            .arg(&spec)
            .args(["--ratios", "1", "--out"])
            .arg(&dir)
            .env("GDA_PROGRESS_SECS", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(&format!("GDA_PROGRESS_SECS=\"{bad}\" is not allowed")),
            "{}",
            stderr_of(&out)
        );
        assert!(!dir.join("grid.json").exists() && !dir.join("points").exists());
    }
}

/// On a terminal (stderr a pty 100 columns wide): a line per running point
/// and the grid line, none wider than 80 columns; stdout keeps only the
/// plain lines and the closing lines.
#[test]
fn on_a_terminal_the_view_draws_point_and_grid_lines_within_80_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 300);
    let dir = tmp.path().join("sweep");
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize { ws_row: 40, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two new descriptors into the two integers.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned here alone.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) };
    let child = gda()
        .args(["sweep", "--spec"])
        .arg(&spec)
        .args(["--ratios", "1,2", "--jobs", "2", "--out"])
        .arg(&dir)
        .env("TERM", "xterm")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // The pty's buffer is small: read it while the sweep runs, until the
    // last writer (the child) closes it (EIO).
    let reader = std::thread::spawn(move || {
        let mut master = master;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let out = child.wait_with_output().unwrap();
    let screen = reader.join().unwrap();
    assert!(out.status.success(), "{screen}");
    // Rows as drawn: escape sequences and line ends split them; indicatif
    // pads each line to the terminal's width, so a longer run is several.
    let mut rows = Vec::new();
    for part in screen.split(['\r', '\n']) {
        let mut plain = String::new();
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ parameters, then a final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        let chars: Vec<char> = plain.chars().collect();
        for row in chars.chunks(100) {
            rows.push(row.iter().collect::<String>().trim_end().to_string());
        }
    }
    for r in &rows {
        assert!(r.chars().count() <= 80, "{} columns: {r:?}", r.chars().count());
    }
    for name in ["g1-s7", "g2-s7"] {
        let drawn = rows.iter().any(|r| {
            r.starts_with(name) && r.contains("/300 loss ") && r.contains(" tok/s ETA ") && !r.contains("loss –")
        });
        assert!(drawn, "no line of {name} with a loss: {rows:#?}");
    }
    assert!(
        rows.iter().any(|r| r.starts_with("grid: 0 done, 2 running, 0 failed, 0 pending of 2 | ETA ")),
        "{rows:#?}"
    );
    let text = stdout_of(&out);
    assert!(!text.contains("progress ") && !text.contains("grid: "), "{text}");
    assert!(text.contains("[2/2] ") && text.contains("training g2-s7 (new) | log "), "{text}");
    assert!(text.contains("summary: "), "{text}");
}

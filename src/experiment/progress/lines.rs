//! The text of the view's lines: a running point's, the grid's and the
//! cells', each of the terminal lines at most [`WIDTH`] columns.

use super::{Sample, WIDTH};
use crate::report::units::fmt_duration;

/// 950, 12.3k, 4.56M: tokens per second in a few columns.
fn fmt_rate(v: f64) -> String {
    if v < 1e4 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{:.2}M", v / 1e6)
    }
}

fn fmt_loss(v: Option<f64>) -> String {
    v.map(|l| format!("{l:.3}")).unwrap_or_else(|| "–".into())
}

/// At most `n` characters: longer text loses its end to "…".
fn fit(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut s: String = text.chars().take(n.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A running point's line in the terminal view, at most [`WIDTH`] columns.
pub fn live_line(name: &str, steps: usize, s: Option<&Sample>, eta: Option<f64>) -> String {
    let step = s.map_or(0, |s| s.step);
    let line = format!(
        "{:<20} {:>11} loss {} val {} {} tok/s ETA {}",
        fit(name, 20),
        format!("{step}/{steps}"),
        fmt_loss(s.and_then(|s| s.train_loss)),
        fmt_loss(s.and_then(|s| s.val_loss)),
        s.and_then(|s| s.tokens_per_s).map_or("–".into(), fmt_rate),
        eta.map_or("–".into(), fmt_duration),
    );
    fit(&line, WIDTH)
}

/// A running point's line off a terminal.
pub fn plain_line(name: &str, steps: usize, s: &Sample, eta: Option<f64>) -> String {
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("–".to_string(), f);
    format!(
        "progress {name}: step {}/{steps} | train {} | val {} | {} tok/s | ETA {}",
        s.step,
        opt(s.train_loss, |l| format!("{l:.4}")),
        opt(s.val_loss, |l| format!("{l:.4}")),
        opt(s.tokens_per_s, |t| format!("{t:.0}")),
        eta.map_or("–".into(), fmt_duration)
    )
}

/// Counts of the grid's points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub running: usize,
    pub failed: usize,
    pub pending: usize,
    pub total: usize,
}

/// The grid line, on a terminal and off it (at most [`WIDTH`] columns).
pub fn grid_line(c: Counts, eta: Option<f64>) -> String {
    let line = format!(
        "grid: {} done, {} running, {} failed, {} pending of {} | ETA {}",
        c.done,
        c.running,
        c.failed,
        c.pending,
        c.total,
        eta.map_or("–".into(), fmt_duration)
    );
    fit(&line, WIDTH)
}

/// Counts of a scaling grid's cells: done (every point finished or
/// failed), running (a point in training), pending (the others).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellCounts {
    pub done: usize,
    pub running: usize,
    pub pending: usize,
}

/// The cells line under the grid line (a scaling grid only; at most
/// [`WIDTH`] columns).
pub fn cells_line(c: CellCounts) -> String {
    fit(
        &format!(
            "cells: {} done, {} running, {} pending of {}",
            c.done,
            c.running,
            c.pending,
            c.done + c.running + c.pending
        ),
        WIDTH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_of(step: usize) -> Sample {
        Sample {
            step,
            train_loss: Some(3.14207),
            val_loss: Some(2.71843),
            tokens_per_s: Some(123456.0),
            secs_per_step: Some(0.5),
        }
    }

    #[test]
    fn terminal_lines_fit_in_80_columns_whatever_the_names_and_numbers() {
        let long = "g16-equal-params-s123456789-with-a-very-long-name";
        for (name, steps, s) in [
            ("g1-s7", 60, None),
            (long, 60, Some(sample_of(30))),
            (long, 10_000_000_000, Some(sample_of(9_999_999_999))),
        ] {
            let line = live_line(name, steps, s.as_ref(), Some(1e9));
            assert!(line.chars().count() <= WIDTH, "{} columns: {line}", line.chars().count());
            assert!(line.starts_with(&name.chars().take(19).collect::<String>()), "{line}");
        }
        let line = live_line(long, 450, Some(&sample_of(120)), Some(65.0));
        assert_eq!(line, "g16-equal-params-s1…     120/450 loss 3.142 val 2.718 123.5k tok/s ETA 1m05s");
        let c = Counts { done: 123456, running: 2, failed: 7, pending: 99999, total: 1000000 };
        assert!(grid_line(c, Some(1e9)).chars().count() <= WIDTH);
        assert_eq!(
            grid_line(Counts { done: 3, running: 2, failed: 1, pending: 2, total: 8 }, None),
            "grid: 3 done, 2 running, 1 failed, 2 pending of 8 | ETA –"
        );
    }
}

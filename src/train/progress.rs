//! What a run shows as it trains: the progress bar on a terminal, and each
//! metrics row, echoed as a log line where there is no bar.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::metrics::{cell, MetricsLog};
use crate::error::GdaError;
use crate::eval::Score;
use crate::model::Model;
use crate::report::units::human_count;
use crate::util::out::outln;

/// The bar's template: at most 77 columns with a million steps, a loss of
/// 10 or more, a 6-character tok/s and indicatif's longest ETA ("59 minutes"),
/// so it fits an 80-column terminal without wrapping.
pub const PROGRESS_TEMPLATE: &str = "{bar:16} {pos}/{len} | {msg} | ETA {eta}";

/// The progress bar's message: "loss 2.3456 | 12.3K tok/s".
pub fn progress_message(loss: f64, tokens_per_s: f64) -> String {
    format!("loss {loss:.4} | {} tok/s", human_count(tokens_per_s as usize))
}

/// The run's bar at step `at` of `steps`, drawn only where `shown` and
/// stdout is a terminal.
pub(super) fn progress_bar(steps: usize, at: usize, shown: bool) -> ProgressBar {
    let bar =
        if shown && std::io::stdout().is_terminal() { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template(PROGRESS_TEMPLATE).expect("valid template"));
    bar.set_position(at as u64);
    bar
}

/// Training throughput over the steps since the previous metrics row.
#[derive(Clone, Copy)]
pub(super) struct Speed {
    pub tokens_per_s: f64,
    /// Model FLOP/s over the device's measured matmul peak.
    pub mfu: f64,
}

/// One metrics row, echoed as a log line when stdout is not a terminal.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_row(
    log: &mut MetricsLog,
    model: &Model,
    step: usize,
    tokens: u64,
    train_loss: Option<f64>,
    score: Option<Score>,
    lr: f64,
    grad_norm: Option<f64>,
    speed: Option<Speed>,
    elapsed_s: f64,
    bar: &ProgressBar,
) -> Result<(), GdaError> {
    let lambdas = model.lambdas();
    let mut row = vec![
        step.to_string(),
        tokens.to_string(),
        cell(train_loss),
        cell(score.map(|s| s.loss)),
        cell(score.and_then(|s| s.bpb.or(s.acc))),
        format!("{lr}"),
        cell(grad_norm),
    ];
    if !lambdas.is_empty() {
        row.push(format!("{}", lambdas.iter().sum::<f64>() / lambdas.len() as f64));
        row.extend(lambdas.iter().map(|l| format!("{l}")));
    }
    row.push(cell(speed.map(|s| s.tokens_per_s.round())));
    row.push(speed.map(|s| format!("{:.4}", s.mfu)).unwrap_or_default());
    row.push(format!("{elapsed_s:.3}"));
    log.row(&row)?;
    let mut line = format!("step {step}");
    if let Some(l) = train_loss {
        line += &format!(" | train {l:.4}");
    }
    if let Some(s) = score {
        line += &format!(" | val {:.4}", s.loss);
        if let Some(b) = s.bpb {
            line += &format!(" ({b:.4} bpb)");
        }
        if let Some(a) = s.acc {
            line += &format!(" (acc {a:.4})");
        }
    }
    if let Some(s) = speed {
        line += &format!(" | lr {lr:.2e} | {:.0} tok/s | MFU {:.1}%", s.tokens_per_s, 100.0 * s.mfu);
    }
    line += &format!(" | {elapsed_s:.1}s");
    // A failed write closes stdout for good; the loop then stops as for
    // Ctrl-C (`interrupted`).
    if bar.is_hidden() {
        outln!("{line}");
    } else {
        bar.suspend(|| outln!("{line}"));
    }
    Ok(())
}

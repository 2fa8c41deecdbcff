//! `gda report`: redraw the tables and plots of a run, an experiment or an
//! eval directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{input, io, GdaError};
use crate::experiment::Grid;
use crate::report::eval::{eval_report, ATTENTION_CSV, LM_CSV, RETRIEVAL_CSV};
use crate::train::{self, checkpoint, metrics::column_pairs};
use crate::util::fs::atomic_write;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run directory, a sweep/ablation/growth directory, or an eval directory.
    pub dir: PathBuf,
}

/// `gda report`: redraws whatever `dir` holds.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_path();
    let eval_dir = |d: &Path| [LM_CSV, RETRIEVAL_CSV, ATTENTION_CSV].iter().any(|f| d.join(f).is_file());
    let mut drew = false;
    if dir.join("spec.toml").is_file() {
        println!("{}", run_report(dir)?);
        drew = true;
    } else if dir.join("experiment.json").is_file() {
        let summary = Grid::load(dir)?.summarize(dir)?;
        println!("{}", summary.markdown);
        drew = true;
    }
    for d in [dir.to_path_buf(), dir.join("eval")] {
        if eval_dir(&d) {
            println!("{}", eval_report(&d)?.brief);
            drew = true;
        }
    }
    if !drew {
        return Err(input(format!(
            "{} is not a gda run, experiment or eval directory; allowed: a directory holding spec.toml, experiment.json or eval CSV files",
            dir.display()
        ))
        .into());
    }
    println!("written into {}", dir.display());
    Ok(())
}

/// A single run's `report.md` and `loss_curve.svg` (train and validation
/// loss against tokens), from its metrics.csv and summary.json.
pub fn run_report(run: &Path) -> Result<String, GdaError> {
    let metrics = run.join("metrics.csv");
    if !metrics.is_file() {
        return Err(input(format!("{} has no metrics.csv: not a gda run, or one that never started", run.display())));
    }
    train::draw_loss_curve(run)?;
    let val = column_pairs(run, "tokens", "val_loss");
    let mut s = format!("# Run {}\n\n", run.display());
    match train::finished(run) {
        Some(sum) => {
            let _ = writeln!(
                s,
                "Finished: {} steps, {} tokens, {} parameters; {}; {:.0} tokens/s; {:.1} s.\n",
                sum.steps,
                sum.tokens_seen,
                sum.parameters,
                sum.quality(),
                sum.tokens_per_s,
                sum.elapsed_s
            );
        }
        None => {
            let step = checkpoint::latest_step(run)
                .map(|s| format!("checkpoint at step {s}"))
                .unwrap_or_else(|| "no checkpoint yet".into());
            let _ = writeln!(s, "Not finished ({step}); resume with `gda train --resume --out {}`.\n", run.display());
        }
    }
    s += "| tokens | val loss |\n|---|---|\n";
    for (t, l) in &val {
        let _ = writeln!(s, "| {t} | {l:.4} |");
    }
    let path = run.join("report.md");
    atomic_write(&path, s.as_bytes()).map_err(io("cannot write", &path))?;
    Ok(s)
}

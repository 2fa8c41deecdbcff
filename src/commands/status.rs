//! `gda status`: each point of an experiment, from its run directory and,
//! for Slurm jobs, squeue/sacct.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::experiment::slurm::{self, Queue};
use crate::experiment::{self, Grid, Status};
use crate::report::table;
use crate::train::checkpoint;
use crate::train::run_dir::{local_trainer, Manifest};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Experiment directory (a sweep's, an ablation's or a growth comparison's).
    pub dir: PathBuf,
}

/// The newest step a run logged (metrics.csv), else its newest checkpoint's.
fn progress(run: &Path) -> Option<usize> {
    let from_metrics = table::read(&run.join("metrics.csv"))
        .ok()
        .and_then(|(_, rows)| rows.last().and_then(|r| r.first()).and_then(|s| s.parse().ok()));
    from_metrics.or_else(|| checkpoint::latest_step(run))
}

/// " | 2 ranks (gloo on node1, node2)" for a point trained data-parallel
/// (its manifest's `world`), else nothing.
fn ranks(run: &Path) -> String {
    let manifest = std::fs::read(run.join("manifest.json")).ok();
    let world = manifest.and_then(|b| serde_json::from_slice::<Manifest>(&b).ok()).and_then(|m| m.world);
    match world {
        Some(w) => {
            let mut hosts = w.hosts.clone();
            hosts.dedup();
            format!(" | {} ranks ({} on {})", w.world_size, w.backend, hosts.join(", "))
        }
        None => String::new(),
    }
}

/// `gda status <dir>`: one line per point (pending, running, done with its
/// validation loss, failed with the reason), from the run directories and,
/// where the grid was submitted to Slurm and Slurm answers, its queue.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let dir = args.dir.as_path();
    let grid = Grid::load(dir)?;
    let queue = Queue::read(dir);
    let width = grid.points.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut resubmit = Vec::new();
    let mut marked_failed = false;
    println!("{} of {} points in {}{}", grid.kind.dir_prefix(), grid.points.len(), dir.display(), queue.describe());
    let mut lines: Vec<(&experiment::Point, &str, String)> = Vec::new();
    for p in &grid.points {
        let run = experiment::point_dir(dir, p);
        let step =
            || progress(&run).map(|s| format!("step {s}/{}", p.spec.train.steps)).unwrap_or_else(|| "starting".into());
        // A queued or live trainer outranks an earlier failure: the point
        // was resubmitted, and must not be offered for resubmission again.
        let (state, detail) = match (experiment::status(dir, p), queue.task(&p.name), local_trainer(&run)) {
            (Status::Done(s), _, _) => {
                ("done", format!("{} | {} steps | {:.1}s{}", s.quality(), s.steps, s.elapsed_s, ranks(&run)))
            }
            (_, Some(t), _) if t.is_running() => {
                ("running", format!("{} (Slurm {} on {}){}", step(), t.id(), t.node, ranks(&run)))
            }
            (_, Some(t), _) if t.is_waiting() => ("pending", format!("queued as Slurm {} ({})", t.id(), t.reason)),
            (_, _, Some(pid)) => ("running", format!("{} (pid {pid}){}", step(), ranks(&run))),
            (Status::Failed(reason), _, None) => {
                resubmit.push(p.name.as_str());
                marked_failed = true;
                ("failed", reason)
            }
            (other, Some(t), None) => {
                resubmit.push(p.name.as_str());
                let at = match other {
                    Status::Started(s) => format!("its checkpoint at step {s} is kept; a resubmit resumes from it"),
                    _ => "no checkpoint was written".into(),
                };
                ("failed", format!("Slurm task {} ended {} before the point finished; {at}", t.id(), t.state))
            }
            (Status::Started(s), None, None) => {
                ("pending", format!("stopped at step {s}; the next run resumes from its checkpoint"))
            }
            (_, None, None) => ("pending", String::new()),
        };
        *counts.entry(state).or_default() += 1;
        lines.push((p, state, detail));
    }
    // A scaling grid's points by cell, each under a line with its counts.
    let cells = experiment::summary::distinct_cells(grid.points.iter().map(|p| &p.grid));
    for cell in &cells {
        let members: Vec<_> = lines.iter().filter(|l| &l.0.grid == cell).collect();
        if cells.len() > 1 {
            let count = |s: &str| members.iter().filter(|l| l.1 == s).count();
            println!(
                "cell {}: {} done, {} running, {} pending, {} failed",
                experiment::cell_label(cell),
                count("done"),
                count("running"),
                count("pending"),
                count("failed")
            );
        }
        for (p, state, detail) in members {
            println!("{:width$}  {state:8} {detail}", p.name);
        }
    }
    let counts: Vec<String> = ["done", "running", "pending", "failed"]
        .iter()
        .map(|s| format!("{} {s}", counts.get(s).copied().unwrap_or(0)))
        .collect();
    println!("{}", counts.join(", "));
    if !resubmit.is_empty() {
        println!("{}", slurm::resubmit_hint(dir, grid.kind.dir_prefix(), &resubmit, marked_failed));
    }
    Ok(())
}

//! An experiment's grid as recorded in its directory (`grid.json` beside the
//! points' specs), so `gda status <dir>` and `gda sweep --collect <dir>` need
//! nothing but the directory; and the summary rebuilt from it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::summary::{self, best};
use super::{local, policy_name, progress, slurm, write_spec, Kind, Launcher, Point, RunOptions, Status, Variant};
use crate::config::{BudgetPolicy, Spec};
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;
use crate::util::out::outln;

/// An experiment's grid with what its summary needs.
pub struct Grid {
    pub kind: Kind,
    pub policy: BudgetPolicy,
    /// Growth comparisons: the parameters of the source model.
    pub source_parameters: Option<usize>,
    pub points: Vec<Point>,
}

pub const GRID_FILE: &str = "grid.json";

#[derive(Serialize, Deserialize)]
struct GridFile {
    kind: Kind,
    policy: BudgetPolicy,
    source_parameters: Option<usize>,
    /// In training order; each point's spec is `specs/<name>.toml`.
    points: Vec<PointEntry>,
}

#[derive(Serialize, Deserialize)]
struct PointEntry {
    name: String,
    variant: Variant,
    requested: Option<usize>,
    seed: u64,
    /// The point's grid cell, (key, value) by key; absent before grids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    grid: Vec<(String, String)>,
}

/// What a summary found.
pub struct Summary {
    pub markdown: String,
    pub total: usize,
    pub failed: usize,
    /// Points without a result, with their status.
    pub missing: Vec<(String, String)>,
}

impl Grid {
    /// Writes every point's spec and `grid.json` into the experiment directory.
    pub fn record(&self, dir: &Path) -> Result<(), GdaError> {
        let unwritable = |e: std::io::Error| input(format!("results directory {} is not writable: {e}", dir.display()));
        std::fs::create_dir_all(dir.join("specs")).map_err(unwritable)?;
        for p in &self.points {
            write_spec(dir, p).map_err(io("cannot write a point's spec in", dir))?;
        }
        let file = GridFile {
            kind: self.kind,
            policy: self.policy,
            source_parameters: self.source_parameters,
            points: self
                .points
                .iter()
                .map(|p| PointEntry {
                    name: p.name.clone(),
                    variant: p.variant,
                    requested: p.requested,
                    seed: p.seed,
                    grid: p.grid.clone(),
                })
                .collect(),
        };
        let path = dir.join(GRID_FILE);
        atomic_write(&path, &serde_json::to_vec_pretty(&file).expect("grid serialises"))
            .map_err(io("cannot write", &path))
    }

    /// The grid recorded in an experiment directory.
    pub fn load(dir: &Path) -> Result<Grid, GdaError> {
        let path = dir.join(GRID_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if dir.join("experiment.json").exists() {
                input(format!("{} has no {GRID_FILE} (written by gda since launchers were added): rerun the command that made it once", dir.display()))
            } else {
                input(format!("{} is not a gda experiment directory (no {GRID_FILE}): {e}", dir.display()))
            }
        })?;
        let file: GridFile = serde_json::from_str(&text)
            .map_err(|e| input(format!("{} is not a gda grid file: {e}", path.display())))?;
        let points = file
            .points
            .into_iter()
            .map(|e| {
                let spec = Spec::load(Some(&dir.join("specs").join(format!("{}.toml", e.name))), &[])?;
                Ok(Point { name: e.name, variant: e.variant, requested: e.requested, seed: e.seed, spec, grid: e.grid })
            })
            .collect::<Result<_, GdaError>>()?;
        Ok(Grid { kind: file.kind, policy: file.policy, source_parameters: file.source_parameters, points })
    }

    /// Rebuilds summary.csv, summary.md and the plots from the run directories.
    pub fn summarize(&self, dir: &Path) -> Result<Summary, GdaError> {
        let rows = summary::rows(dir, &self.points);
        let markdown = match self.kind {
            Kind::Sweep => summary::sweep_markdown(&rows, policy_name(self.policy)),
            Kind::Ablate { no_share, equal_params } => {
                let mut v = Vec::new();
                if no_share {
                    v.push(Variant::NoShare);
                }
                if equal_params {
                    v.push(Variant::EqualParams);
                }
                summary::ablation_markdown(&rows, &v)
            }
            Kind::Grow { .. } => summary::growth_markdown(&rows, dir, self.source_parameters.unwrap_or(0)),
        } + &summary::comparisons_markdown(&summary::comparisons(&rows));
        // A scaling grid's question, answered in the printed summary too.
        let markdown = if !summary::grid_keys(&rows).is_empty() && !matches!(self.kind, Kind::Grow { .. }) {
            markdown + "\n" + &best::markdown(&best::best_ratios(&rows))
        } else {
            markdown
        };
        summary::write(dir, &rows, self.policy, &markdown, !matches!(self.kind, Kind::Grow { .. }))?;
        let failed = rows.iter().filter(|r| matches!(r.status, Status::Failed(_))).count();
        let missing = rows
            .iter()
            .filter(|r| !matches!(r.status, Status::Done(_)))
            .map(|r| (r.point.name.clone(), r.status.describe()))
            .collect();
        Ok(Summary { markdown, total: rows.len(), failed, missing })
    }
}

impl Summary {
    /// Prints the table and where it is; Err(PointsFailed) if some points failed.
    pub fn report(&self, dir: &Path) -> Result<(), GdaError> {
        outln!("\n{}", self.markdown);
        if !self.missing.is_empty() {
            let list: Vec<String> = self.missing.iter().map(|(n, s)| format!("{n} ({s})")).collect();
            outln!("{} of {} points have no result yet: {}", self.missing.len(), self.total, list.join(", "));
        }
        for line in closing_lines(dir, !self.missing.is_empty()) {
            outln!("{line}");
        }
        if self.failed > 0 {
            return Err(GdaError::PointsFailed { failed: self.failed, total: self.total, dir: dir.to_path_buf() });
        }
        Ok(())
    }
}

/// The files of a summary, in the order a reader wants them.
const SUMMARY_FILES: [&str; 6] =
    ["summary.md", "summary.csv", "summary_groups.csv", "comparisons.csv", "best_ratio.md", "best_ratio.csv"];

/// What the summary wrote and what to run next: `summary: <files>`,
/// `plots: <svg files>`, `next: <command>`, every path one that exists.
pub fn closing_lines(dir: &Path, incomplete: bool) -> Vec<String> {
    let existing = |names: Vec<String>| -> Vec<String> {
        names.iter().map(|n| dir.join(n)).filter(|p| p.is_file()).map(|p| p.display().to_string()).collect()
    };
    let mut plots: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    plots.sort();
    let d = slurm::sh_quote(dir.as_os_str());
    let next = if incomplete {
        format!("next: gda status {d} (which points are missing and why), then rerun the command that trained it to train them")
    } else {
        format!("next: gda eval {d} (held-out scores of every point, per ratio; written to {d}/eval/)")
    };
    vec![
        format!("summary: {}", existing(SUMMARY_FILES.map(String::from).to_vec()).join(", ")),
        format!("plots: {}", existing(plots).join(", ")),
        next,
    ]
}

/// Trains (local) or submits (slurm) the points of a grid, after recording
/// it; locally, then rebuilds and prints the summary.
pub fn run(grid: &Grid, opts: &RunOptions) -> Result<(), GdaError> {
    if opts.launcher == Launcher::Local {
        // A bad GDA_PROGRESS_SECS is refused before anything is written.
        progress::interval_from_env()?;
    }
    grid.record(&opts.dir)?;
    if opts.launcher == Launcher::Slurm {
        return slurm::launch(grid, opts);
    }
    let outcome = local::run_points(&grid.points, opts);
    // The summary is rebuilt from the run directories whatever happened.
    let summary = grid.summarize(&opts.dir)?;
    let killed = outcome?;
    let reported = summary.report(&opts.dir);
    // Points still to train outrank failed ones: the command is not done.
    if !killed.is_empty() {
        return Err(GdaError::PointsKilled { dir: opts.dir.clone(), killed, total: summary.total });
    }
    reported
}

/// `gda sweep --collect <dir>`: the summary of whatever points are done.
pub fn collect(dir: &Path) -> Result<(), GdaError> {
    let grid = Grid::load(dir)?;
    let summary = grid.summarize(dir)?;
    summary.report(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_lines_name_only_files_that_exist_and_the_next_step() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my sweep");
        std::fs::create_dir(&dir).unwrap();
        for f in ["summary.csv", "summary.md", "loss_curves.svg", "a.svg"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let d = dir.display();
        let lines = closing_lines(&dir, false);
        assert_eq!(lines[0], format!("summary: {d}/summary.md, {d}/summary.csv"));
        assert_eq!(lines[1], format!("plots: {d}/a.svg, {d}/loss_curves.svg"));
        // Quoted for the shell: the path has a space.
        assert!(lines[2].starts_with(&format!("next: gda eval '{d}' (")), "{}", lines[2]);
        let lines = closing_lines(&dir, true);
        assert!(lines[2].starts_with(&format!("next: gda status '{d}' (")), "{}", lines[2]);
    }
}

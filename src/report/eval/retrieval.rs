//! The retrieval tables of `gda eval --suite mqar` / `niah`: retrieval.csv
//! (one row per run, task, context and needle depth), retrieval_groups.csv
//! (seeds of a point aggregated), and accuracy against context length.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    by_point, common, fixed, grid_keys, group_by, held, pm, point_cells, push_point, ratio_label, stat, stat_cells,
    write_groups, Identified, Section,
};
use crate::error::GdaError;
use crate::report::mean_std;
use crate::report::plot::{plot_lines, Line, Titles};
use crate::report::table::{md, number, opt_number};

pub const RETRIEVAL_CSV: &str = "retrieval.csv";
pub const RETRIEVAL_GROUPS_CSV: &str = "retrieval_groups.csv";

/// A row of retrieval.csv: one run, task, context and (NIAH) needle depth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetrievalRow {
    pub run: String,
    pub group: String,
    /// Written and read as the grid columns ([`write_run_table`]).
    #[serde(skip)]
    pub grid: Vec<(String, String)>,
    pub variant: String,
    pub seed: Option<u64>,
    pub policy: String,
    pub requested_ratio: Option<usize>,
    #[serde(serialize_with = "opt_number")]
    pub ratio: Option<f64>,
    pub step: usize,
    pub task: String,
    pub context: usize,
    pub train_context: usize,
    #[serde(serialize_with = "opt_number")]
    pub depth: Option<f64>,
    pub examples: usize,
    pub queries: usize,
    #[serde(serialize_with = "number")]
    pub loss: f64,
    #[serde(serialize_with = "number")]
    pub acc: f64,
    #[serde(serialize_with = "number")]
    pub token_acc: f64,
}

pub(super) fn retrieval_section(
    dir: &Path,
    ret: &[RetrievalRow],
    style_of: &dyn Fn(&str) -> usize,
) -> Result<Section, GdaError> {
    let intro = "## Retrieval\n\nExact match: a question counts only if every answer token is the model's top choice. NIAH rows are per needle depth (0 = start of the haystack).\n\n".to_string();
    let depth = |d: Option<f64>| d.map(|d| d.to_string()).unwrap_or_else(|| "–".into());
    let mut per_run = "| run | task | context | train ctx | depth | questions | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n".to_string();
    for r in ret {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            md(&r.task),
            r.context,
            r.train_context,
            depth(r.depth),
            r.queries,
            fixed(Some(r.acc), 3),
            fixed(Some(r.token_acc), 3),
            fixed(Some(r.loss), 4)
        );
    }
    let mut per_point = "| point | ratio | task | context | depth | n | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n".to_string();
    for m in by_point(ret, |r| (r.task.clone(), r.context, r.depth.map(f64::to_bits))) {
        let r = m[0];
        let s = |f: fn(&RetrievalRow) -> f64| stat(m.iter().map(|r| Some(f(r))));
        let _ = writeln!(
            per_point,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            ratio_label(r.ratio),
            md(&r.task),
            r.context,
            depth(r.depth),
            m.len(),
            pm(s(|r| r.acc), 3),
            pm(s(|r| r.token_acc), 3),
            pm(s(|r| r.loss), 4)
        );
    }
    // Accuracy per context: each run's mean over depths (NIAH), then mean ±
    // std of those over the point's seeds.
    let run_means: Vec<RetrievalRow> = group_by(ret, |r| (r.run.clone(), r.task.clone(), r.context))
        .into_iter()
        .map(|m| RetrievalRow { acc: mean_std(&m.iter().map(|r| r.acc).collect::<Vec<_>>()).0, ..m[0].clone() })
        .collect();
    let mut lines: Vec<Line> = Vec::new();
    for m in by_point(&run_means, |r| r.task.clone()) {
        for c in group_by(&m, |r| r.context) {
            if let Some(a) = stat(c.iter().map(|r| Some(r.acc))) {
                let r = c[0];
                push_point(
                    &mut lines,
                    &format!("{} {}", r.group, r.task),
                    style_of(&r.group),
                    false,
                    (r.context as f64, a),
                );
            }
        }
    }
    let examples = common(ret.iter().map(|r| r.examples))
        .map(|n| format!("{n} examples per context and depth"))
        .unwrap_or_default();
    let held = held(ret.iter().map(|r| r.policy.as_str()), ret.iter().map(|r| r.step), &examples);
    let titles = Titles {
        title: "retrieval accuracy vs context length",
        held: &held,
        x: "context (tokens)",
        y: "exact-match accuracy (mean ± std over seeds)",
    };
    plot_lines(&dir.join("accuracy_vs_context.svg"), &titles, true, &lines)?;
    Ok(Section { intro, per_point, per_run })
}

pub(super) fn write_retrieval_groups(dir: &Path, ret: &[RetrievalRow]) -> Result<(), GdaError> {
    let grid = grid_keys(ret);
    let rows: Vec<Vec<String>> = by_point(ret, |r| (r.task.clone(), r.context, r.depth.map(f64::to_bits), r.examples))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.task.clone(),
                r.context.to_string(),
                r.train_context.to_string(),
                r.depth.map(|d| format!("{d}")).unwrap_or_default(),
                r.examples.to_string(),
                m.len().to_string(),
            ]);
            for f in [|r: &RetrievalRow| r.acc, |r: &RetrievalRow| r.token_acc, |r: &RetrievalRow| r.loss] {
                cells.extend(stat_cells(stat(m.iter().map(|r| Some(f(r))))));
            }
            cells
        })
        .collect();
    write_groups(
        &dir.join(RETRIEVAL_GROUPS_CSV),
        &grid,
        &["task", "context", "train_context", "depth", "examples"],
        &["acc", "token_acc", "loss"],
        &rows,
    )
}

//! The attention tables of `gda eval --suite attention`: attention.csv (one
//! row per run, task, context, layer and head group), attention_groups.csv
//! (seeds of a point aggregated), and noise and answer mass per layer.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    by_point, fixed, grid_keys, held, pm, point_cells, push_point, stat, stat_cells, write_groups, Identified, Section,
    Stat,
};
use crate::error::GdaError;
use crate::report::plot::{plot_lines, Line, Titles};
use crate::report::table::{md, number, opt_number};

pub const ATTENTION_CSV: &str = "attention.csv";
pub const ATTENTION_GROUPS_CSV: &str = "attention_groups.csv";

/// A row of attention.csv: one head group of a layer (`head_group` = `all`:
/// the whole layer); the gda-only columns are empty for standard attention.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttentionRow {
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
    pub layer: usize,
    pub head_group: String,
    pub heads: usize,
    #[serde(serialize_with = "opt_number")]
    pub lambda: Option<f64>,
    #[serde(serialize_with = "number")]
    pub answer_mass: f64,
    #[serde(serialize_with = "number")]
    pub noise_mass: f64,
    #[serde(serialize_with = "number")]
    pub entropy: f64,
    #[serde(serialize_with = "number")]
    pub sparsity: f64,
    #[serde(serialize_with = "opt_number")]
    pub signal_answer: Option<f64>,
    #[serde(serialize_with = "opt_number")]
    pub noise_answer: Option<f64>,
    pub rows: usize,
}

/// The measured columns of attention.csv, in order.
type AttField = fn(&AttentionRow) -> Option<f64>;
const ATT_VALUES: [(&str, AttField); 7] = [
    ("lambda", |r| r.lambda),
    ("answer_mass", |r| Some(r.answer_mass)),
    ("noise_mass", |r| Some(r.noise_mass)),
    ("entropy", |r| Some(r.entropy)),
    ("sparsity", |r| Some(r.sparsity)),
    ("signal_answer", |r| r.signal_answer),
    ("noise_answer", |r| r.noise_answer),
];

pub(super) fn attention_section(dir: &Path, att: &[AttentionRow]) -> Result<Section, GdaError> {
    let intro = "## Attention on retrieval questions\n\nEffective maps (signal − λ·noise for gda, softmax for standard) at each question's position, averaged over all heads of a layer (per-group rows are in attention.csv). Answer mass: weight on the answer span; noise mass: |weight| everywhere else; entropy in nats of |weights| normalised; sparsity: Hoyer (1 = one position, 0 = uniform). Under gda, signal and noise answer: the answer mass of the signal map and of the subtracted noise map.\n\n".to_string();
    let all: Vec<AttentionRow> = att.iter().filter(|r| r.head_group == "all").cloned().collect();
    let mut per_run = "| run | task | context | layer | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n".to_string();
    for r in &all {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            md(&r.task),
            r.context,
            r.layer,
            fixed(r.lambda, 3),
            fixed(Some(r.answer_mass), 3),
            fixed(Some(r.noise_mass), 3),
            fixed(Some(r.entropy), 3),
            fixed(Some(r.sparsity), 3),
            fixed(r.signal_answer, 3),
            fixed(r.noise_answer, 3)
        );
    }
    let mut per_point = "| point | task | context | layer | n | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n".to_string();
    let mut noise: Vec<Line> = Vec::new();
    let mut answer: Vec<Line> = Vec::new();
    for m in by_point(&all, |r| (r.task.clone(), r.context, r.layer)) {
        let r = m[0];
        let s: Vec<Option<Stat>> = ATT_VALUES.iter().map(|(_, f)| stat(m.iter().map(|r| f(r)))).collect();
        let _ = write!(per_point, "| {} | {} | {} | {} | {} |", r.group, md(&r.task), r.context, r.layer, m.len());
        for v in &s {
            let _ = write!(per_point, " {} |", pm(*v, 3));
        }
        per_point += "\n";
        // One colour per (point, task, context): its noise line solid, its
        // answer line dashed.
        let label = format!("{} {}@{}", r.group, r.task, r.context);
        let style = noise.iter().position(|l| l.label == label).unwrap_or(noise.len());
        if let Some(n) = s[2] {
            push_point(&mut noise, &label, style, false, (r.layer as f64, n));
        }
        if let Some(a) = s[1] {
            push_point(&mut answer, &format!("{label} (answer)"), style, true, (r.layer as f64, a));
        }
    }
    let held = held(all.iter().map(|r| r.policy.as_str()), all.iter().map(|r| r.step), "");
    let titles = Titles {
        title: "attention noise (solid) and answer mass (dashed) per layer",
        held: &held,
        x: "layer",
        y: "attention mass (mean ± std over seeds)",
    };
    noise.extend(answer);
    plot_lines(&dir.join("attention_noise.svg"), &titles, true, &noise)?;
    Ok(Section { intro, per_point, per_run })
}

pub(super) fn write_attention_groups(dir: &Path, att: &[AttentionRow]) -> Result<(), GdaError> {
    let grid = grid_keys(att);
    let rows: Vec<Vec<String>> = by_point(att, |r| (r.task.clone(), r.context, r.layer, r.head_group.clone(), r.heads))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.task.clone(),
                r.context.to_string(),
                r.layer.to_string(),
                r.head_group.clone(),
                r.heads.to_string(),
                m.len().to_string(),
            ]);
            for (_, f) in ATT_VALUES {
                cells.extend(stat_cells(stat(m.iter().map(|r| f(r)))));
            }
            cells
        })
        .collect();
    let values: Vec<&str> = ATT_VALUES.iter().map(|v| v.0).collect();
    write_groups(
        &dir.join(ATTENTION_GROUPS_CSV),
        &grid,
        &["task", "context", "layer", "head_group", "heads"],
        &values,
        &rows,
    )
}

//! The held-out language modelling tables of `gda eval --suite lm`: lm.csv
//! (one row per run and context), lm_groups.csv (seeds of a point
//! aggregated), and bits per byte against context length.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    by_point, common, fixed, grid_keys, held, pm, point_cells, push_point, ratio_label, stat, stat_cells, write_groups,
    Identified, Section,
};
use crate::error::GdaError;
use crate::report::plot::{plot_lines, Line, Titles};
use crate::report::table::{md, number, opt_number};

pub const LM_CSV: &str = "lm.csv";
pub const LM_GROUPS_CSV: &str = "lm_groups.csv";

/// A row of lm.csv: one run at one context (columns in docs/run-directory.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LmRow {
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
    pub context: usize,
    pub train_context: usize,
    pub tokens: usize,
    #[serde(serialize_with = "number")]
    pub loss: f64,
    #[serde(serialize_with = "number")]
    pub ppl: f64,
    #[serde(serialize_with = "number")]
    pub bpb: f64,
}

pub(super) fn lm_section(dir: &Path, lm: &[LmRow], style_of: &dyn Fn(&str) -> usize) -> Result<Section, GdaError> {
    let intro = "## Held-out language modelling\n\nLoss in nats/token over a fixed token budget of the validation text; contexts past `train ctx` are extrapolation.\n\n".to_string();
    let mut per_run =
        "| run | context | train ctx | tokens | loss | ppl | bpb |\n|---|---|---|---|---|---|---|\n".to_string();
    for r in lm {
        let _ = writeln!(
            per_run,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&r.run),
            r.context,
            r.train_context,
            r.tokens,
            fixed(Some(r.loss), 4),
            fixed(Some(r.ppl), 3),
            fixed(Some(r.bpb), 4)
        );
    }
    let mut per_point =
        "| point | ratio | context | train ctx | n | loss | ppl | bpb |\n|---|---|---|---|---|---|---|---|\n"
            .to_string();
    let mut lines: Vec<Line> = Vec::new();
    for m in by_point(lm, |r| r.context) {
        let r = m[0];
        let s = |f: fn(&LmRow) -> f64| stat(m.iter().map(|r| Some(f(r))));
        let (loss, ppl, bpb) = (s(|r| r.loss), s(|r| r.ppl), s(|r| r.bpb));
        let _ = writeln!(
            per_point,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            ratio_label(r.ratio),
            r.context,
            r.train_context,
            m.len(),
            pm(loss, 4),
            pm(ppl, 3),
            pm(bpb, 4)
        );
        if let Some(b) = bpb {
            push_point(&mut lines, &r.group, style_of(&r.group), false, (r.context as f64, b));
        }
    }
    let tokens =
        common(lm.iter().map(|r| r.tokens)).map(|t| format!("{t} tokens scored per context")).unwrap_or_default();
    let held = held(lm.iter().map(|r| r.policy.as_str()), lm.iter().map(|r| r.step), &tokens);
    let titles = Titles {
        title: "held-out bits per byte vs context length",
        held: &held,
        x: "context (tokens)",
        y: "bits per byte (mean ± std over seeds)",
    };
    plot_lines(&dir.join("bpb_vs_context.svg"), &titles, true, &lines)?;
    Ok(Section { intro, per_point, per_run })
}

pub(super) fn write_lm_groups(dir: &Path, lm: &[LmRow]) -> Result<(), GdaError> {
    let grid = grid_keys(lm);
    let rows: Vec<Vec<String>> = by_point(lm, |r| (r.context, r.train_context, r.tokens))
        .into_iter()
        .map(|m| {
            let r = m[0];
            let mut cells = point_cells(&r.id(), &grid);
            cells.extend([
                r.context.to_string(),
                r.train_context.to_string(),
                r.tokens.to_string(),
                m.len().to_string(),
            ]);
            for f in [|r: &LmRow| r.loss, |r: &LmRow| r.ppl, |r: &LmRow| r.bpb] {
                cells.extend(stat_cells(stat(m.iter().map(|r| Some(f(r))))));
            }
            cells
        })
        .collect();
    write_groups(
        &dir.join(LM_GROUPS_CSV),
        &grid,
        &["context", "train_context", "tokens"],
        &["loss", "ppl", "bpb"],
        &rows,
    )
}

//! The tables and plots of `gda eval`, rendered from the CSV files it
//! writes, so `gda report` can redraw them at any time.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::mean_std;
use super::plot::plot_lines;
use super::table::{number, opt_number, read_rows};
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

pub const LM_CSV: &str = "lm.csv";
pub const RETRIEVAL_CSV: &str = "retrieval.csv";
pub const ATTENTION_CSV: &str = "attention.csv";

/// A row of lm.csv: one run at one context (columns in docs/run-directory.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LmRow {
    pub run: String,
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

/// A row of retrieval.csv: one run, task, context and (NIAH) needle depth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrievalRow {
    pub run: String,
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

/// A row of attention.csv: one head group of a layer (`group` = `all`: the
/// whole layer); the gda-only columns are empty for standard attention.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttentionRow {
    pub run: String,
    pub step: usize,
    pub task: String,
    pub context: usize,
    pub layer: usize,
    pub group: String,
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

/// The rows of an eval table; none when the file is absent.
fn rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, GdaError> {
    match read_rows(path) {
        Err(GdaError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// A number with `digits` decimals; "–" for a missing or undefined one.
fn fixed(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if !v.is_nan() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

/// Renders `summary.md` and the plots of an eval directory from its CSV
/// files; returns the Markdown.
pub fn eval_report(dir: &Path) -> Result<String, GdaError> {
    let lm: Vec<LmRow> = rows(&dir.join(LM_CSV))?;
    let ret: Vec<RetrievalRow> = rows(&dir.join(RETRIEVAL_CSV))?;
    let att: Vec<AttentionRow> = rows(&dir.join(ATTENTION_CSV))?;
    // A plot whose table is gone belongs to an earlier evaluation.
    for (empty, plot) in [
        (lm.is_empty(), "bpb_vs_context.svg"),
        (ret.is_empty(), "accuracy_vs_context.svg"),
        (att.is_empty(), "attention_noise.svg"),
    ] {
        if empty {
            let _ = std::fs::remove_file(dir.join(plot));
        }
    }
    if lm.is_empty() && ret.is_empty() && att.is_empty() {
        return Err(input(format!(
            "{} holds no evaluation results ({LM_CSV}, {RETRIEVAL_CSV}, {ATTENTION_CSV}); run gda eval first",
            dir.display()
        )));
    }
    let mut s = String::new();
    if !lm.is_empty() {
        s += "## Held-out language modelling\n\nLoss in nats/token over a fixed token budget of the validation text; contexts past `train ctx` are extrapolation.\n\n";
        s += "| run | context | train ctx | tokens | loss | ppl | bpb |\n|---|---|---|---|---|---|---|\n";
        for r in &lm {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.run,
                r.context,
                r.train_context,
                r.tokens,
                fixed(Some(r.loss), 4),
                fixed(Some(r.ppl), 3),
                fixed(Some(r.bpb), 4)
            );
        }
        let bpb = series(lm.iter().map(|r| (r.run.clone(), r.context as f64, r.bpb)));
        plot_lines(
            &dir.join("bpb_vs_context.svg"),
            "bits per byte vs context length",
            ("context (tokens)", "bits per byte"),
            false,
            &bpb,
            &[],
        )?;
        s += "\n";
    }
    if !ret.is_empty() {
        s += "## Retrieval\n\nExact match: a question counts only if every answer token is the model's top choice. NIAH rows are per needle depth (0 = start of the haystack).\n\n";
        s += "| run | task | context | train ctx | depth | questions | acc | token acc | answer loss |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &ret {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.run,
                r.task,
                r.context,
                r.train_context,
                r.depth.map(|d| d.to_string()).unwrap_or_else(|| "–".into()),
                r.queries,
                fixed(Some(r.acc), 3),
                fixed(Some(r.token_acc), 3),
                fixed(Some(r.loss), 4)
            );
        }
        // Accuracy per context: the mean over depths for NIAH.
        let key = |r: &RetrievalRow| (r.run.clone(), r.task.clone(), r.context);
        let mut means: Vec<(String, f64, f64)> = Vec::new();
        let mut seen = Vec::new();
        for r in &ret {
            if seen.contains(&key(r)) {
                continue;
            }
            seen.push(key(r));
            let accs: Vec<f64> = ret.iter().filter(|m| key(m) == key(r)).map(|m| m.acc).collect();
            means.push((format!("{} {}", r.run, r.task), r.context as f64, mean_std(&accs).0));
        }
        plot_lines(
            &dir.join("accuracy_vs_context.svg"),
            "retrieval accuracy vs context length",
            ("context (tokens)", "exact-match accuracy"),
            false,
            &series(means),
            &[],
        )?;
        s += "\n";
    }
    if !att.is_empty() {
        s += "## Attention on retrieval questions\n\nEffective maps (signal − λ·noise for gda, softmax for standard) at each question's position, averaged over all heads of a layer (per-group rows are in attention.csv). Answer mass: weight on the answer span; noise mass: |weight| everywhere else; entropy in nats of |weights| normalised; sparsity: Hoyer (1 = one position, 0 = uniform). Under gda, signal and noise answer: the answer mass of the signal map and of the subtracted noise map.\n\n";
        s += "| run | task | context | layer | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        let all: Vec<&AttentionRow> = att.iter().filter(|r| r.group == "all").collect();
        for r in &all {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.run,
                r.task,
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
        let label = |r: &AttentionRow| format!("{} {}@{}", r.run, r.task, r.context);
        let noise = series(all.iter().map(|r| (label(r), r.layer as f64, r.noise_mass)));
        let answer =
            series(all.iter().map(|r| (format!("{} (answer, dashed)", label(r)), r.layer as f64, r.answer_mass)));
        plot_lines(
            &dir.join("attention_noise.svg"),
            "attention noise (solid) and answer mass (dashed) per layer",
            ("layer", "attention mass"),
            true,
            &noise,
            &answer,
        )?;
    }
    let path = dir.join("summary.md");
    atomic_write(&path, s.as_bytes()).map_err(io("cannot write", &path))?;
    Ok(s)
}

/// Lines keyed by a label, in first-seen order, each a list of (x, y)
/// sorted by x; points that are not finite are left out.
fn series(points: impl IntoIterator<Item = (String, f64, f64)>) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (l, px, py) in points {
        if !px.is_finite() || !py.is_finite() {
            continue;
        }
        match out.iter_mut().find(|s| s.0 == l) {
            Some(s) => s.1.push((px, py)),
            None => out.push((l, vec![(px, py)])),
        }
    }
    for s in &mut out {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

//! The tables and plots of `gda eval`, rendered from the CSV files it
//! writes, so `gda report` can redraw them at any time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::mean_std;
use super::plot::plot_lines;
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

pub const LM_CSV: &str = "lm.csv";
pub const RETRIEVAL_CSV: &str = "retrieval.csv";
pub const ATTENTION_CSV: &str = "attention.csv";

/// Rows of a CSV as maps from column name to cell (empty when the file is absent).
fn table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let Ok((header, rows)) = super::table::read(path) else { return Vec::new() };
    rows.into_iter().map(|r| header.iter().cloned().zip(r).collect()).collect()
}

fn num(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn cellf(row: &BTreeMap<String, String>, key: &str, digits: usize) -> String {
    let v = num(row, key);
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.digits$}")
    }
}

/// Renders `summary.md` and the plots of an eval directory from its CSV
/// files; returns the Markdown.
pub fn eval_report(dir: &Path) -> Result<String, GdaError> {
    let lm = table(&dir.join(LM_CSV));
    let ret = table(&dir.join(RETRIEVAL_CSV));
    let att = table(&dir.join(ATTENTION_CSV));
    // A plot whose table is gone belongs to an earlier evaluation.
    for (rows, plot) in [(&lm, "bpb_vs_context.svg"), (&ret, "accuracy_vs_context.svg"), (&att, "attention_noise.svg")]
    {
        if rows.is_empty() {
            let _ = std::fs::remove_file(dir.join(plot));
        }
    }
    if lm.is_empty() && ret.is_empty() && att.is_empty() {
        return Err(input(format!(
            "{} holds no evaluation results ({LM_CSV}, {RETRIEVAL_CSV}, {ATTENTION_CSV}); run gda eval first",
            dir.display()
        )));
    }
    let get = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let mut s = String::new();
    if !lm.is_empty() {
        s += "## Held-out language modelling\n\nLoss in nats/token over a fixed token budget of the validation text; contexts past `train ctx` are extrapolation.\n\n";
        s += "| run | context | train ctx | tokens | loss | ppl | bpb |\n|---|---|---|---|---|---|---|\n";
        for r in &lm {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                get(r, "run"),
                get(r, "context"),
                get(r, "train_context"),
                get(r, "tokens"),
                cellf(r, "loss", 4),
                cellf(r, "ppl", 3),
                cellf(r, "bpb", 4)
            );
        }
        let bpb = series(&lm, |r| get(r, "run"), "context", "bpb");
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
            let depth = get(r, "depth");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                get(r, "run"),
                get(r, "task"),
                get(r, "context"),
                get(r, "train_context"),
                if depth.is_empty() { "–".into() } else { depth },
                get(r, "queries"),
                cellf(r, "acc", 3),
                cellf(r, "token_acc", 3),
                cellf(r, "loss", 4)
            );
        }
        // Accuracy per context: the mean over depths for NIAH.
        let mut mean_rows: Vec<BTreeMap<String, String>> = Vec::new();
        for r in &ret {
            let key = |m: &BTreeMap<String, String>| (get(m, "run"), get(m, "task"), get(m, "context"));
            if mean_rows.iter().any(|m| key(m) == key(r)) {
                continue;
            }
            let accs: Vec<f64> = ret.iter().filter(|m| key(m) == key(r)).map(|m| num(m, "acc")).collect();
            let mut m = r.clone();
            m.insert("acc".into(), format!("{}", mean_std(&accs).0));
            mean_rows.push(m);
        }
        let acc = series(&mean_rows, |r| format!("{} {}", get(r, "run"), get(r, "task")), "context", "acc");
        plot_lines(
            &dir.join("accuracy_vs_context.svg"),
            "retrieval accuracy vs context length",
            ("context (tokens)", "exact-match accuracy"),
            false,
            &acc,
            &[],
        )?;
        s += "\n";
    }
    if !att.is_empty() {
        s += "## Attention on retrieval questions\n\nEffective maps (signal − λ·noise for gda, softmax for standard) at each question's position, averaged over all heads of a layer (per-group rows are in attention.csv). Answer mass: weight on the answer span; noise mass: |weight| everywhere else; entropy in nats of |weights| normalised; sparsity: Hoyer (1 = one position, 0 = uniform). Under gda, signal and noise answer: the answer mass of the signal map and of the subtracted noise map.\n\n";
        s += "| run | task | context | layer | λ | answer mass | noise mass | entropy | sparsity | signal answer | noise answer |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        let all: Vec<BTreeMap<String, String>> = att.iter().filter(|r| get(r, "group") == "all").cloned().collect();
        for r in &all {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                get(r, "run"),
                get(r, "task"),
                get(r, "context"),
                get(r, "layer"),
                cellf(r, "lambda", 3),
                cellf(r, "answer_mass", 3),
                cellf(r, "noise_mass", 3),
                cellf(r, "entropy", 3),
                cellf(r, "sparsity", 3),
                cellf(r, "signal_answer", 3),
                cellf(r, "noise_answer", 3)
            );
        }
        let label =
            |r: &BTreeMap<String, String>| format!("{} {}@{}", get(r, "run"), get(r, "task"), get(r, "context"));
        let noise = series(&all, label, "layer", "noise_mass");
        let answer: Vec<(String, Vec<(f64, f64)>)> = series(&all, label, "layer", "answer_mass")
            .into_iter()
            .map(|(l, p)| (format!("{l} (answer, dashed)"), p))
            .collect();
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

/// Lines keyed by a label, in first-seen order, each a list of (x, y).
fn series(
    rows: &[BTreeMap<String, String>],
    label: impl Fn(&BTreeMap<String, String>) -> String,
    x: &str,
    y: &str,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let (l, px, py) = (label(r), num(r, x), num(r, y));
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

//! A study preset: a gda spec (the model, data and training every stage
//! shares) with a `[study]` table saying which ratios, seeds and stages the
//! study runs. The presets shipped in `experiments/study/` are built into
//! the binary, so `gda reproduce --preset cpu` works from any directory; a
//! path names a preset file of one's own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{apply_override, Spec};
use crate::error::{input, GdaError};

/// The shipped presets, by name (their text: `experiments/study/NAME.toml`).
pub const PRESETS: &[(&str, &str)] = &[
    ("smoke", include_str!("../../experiments/study/smoke.toml")),
    ("cpu", include_str!("../../experiments/study/cpu.toml")),
    ("gpu", include_str!("../../experiments/study/gpu.toml")),
    ("cluster", include_str!("../../experiments/study/cluster.toml")),
];

/// The `[study]` table. Every key is described in docs/study.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// What the preset is for, in a line.
    #[serde(default)]
    pub about: String,
    /// The measured wall time and the machine it was measured on.
    #[serde(default)]
    pub expected: String,
    /// The scan's ratios: 1 (DIFF), a moderate one (3 or 4) and a high one
    /// (8 or more) at least, so every claim has its arms.
    #[serde(default = "default_ratios")]
    pub ratios: Vec<usize>,
    /// Seeds of every arm; comparisons are paired by seed.
    pub seeds: Vec<u64>,
    /// Ratios of the repetition ablation (a subset of `ratios`).
    #[serde(default = "default_ablation")]
    pub ablation_ratios: Vec<usize>,
    /// The scan ratio whose runs (one per seed) are grown.
    #[serde(default = "default_growth")]
    pub growth_ratio: usize,
    /// Steps the grown runs (and the grown architecture from scratch) train
    /// for; default: the spec's train.steps.
    #[serde(default)]
    pub growth_steps: Option<usize>,
    /// Claim 3's non-inferiority margin, in nats/token of val loss.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Items of each task built from the corpus when no --tasks are given.
    #[serde(default = "default_items")]
    pub bench_items: usize,
    /// With it, the dry run estimates each point's time from its FLOPs at
    /// this many TFLOP/s (points that train on GPUs elsewhere) instead of
    /// timing steps on this machine.
    #[serde(default)]
    pub assumed_tflops: Option<f64>,
    /// The retrieval stage (absent: none).
    #[serde(default)]
    pub retrieval: Option<RetrievalConfig>,
}

/// `[study.retrieval]`: the scan's ratios trained on a retrieval task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrievalConfig {
    /// Overrides of the study's spec that make it a retrieval run
    /// (`data.task = "mqar"`, task.* keys, a shorter context...).
    pub set: Vec<String>,
    /// Its ratios (default: the scan's).
    #[serde(default)]
    pub ratios: Option<Vec<usize>>,
}

fn default_ratios() -> Vec<usize> {
    vec![1, 2, 3, 4, 8]
}
fn default_ablation() -> Vec<usize> {
    vec![4]
}
fn default_growth() -> usize {
    4
}
fn default_margin() -> f64 {
    0.01
}
fn default_items() -> usize {
    500
}

/// The ratios claim 1 calls moderate, and the least claim 2 calls very high.
pub const MODERATE: [usize; 2] = [3, 4];
pub const HIGH_FROM: usize = 8;

/// A preset as read: its name, where it came from, the study table and the
/// spec every stage starts from.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub origin: String,
    pub study: StudyConfig,
    pub spec: Spec,
}

/// Reads the preset `name` (a shipped name, or a path to a TOML file);
/// `spec` replaces its spec part; `set` overrides spec keys and, as
/// `study.KEY=VALUE`, study keys.
pub fn load(name: &str, spec: Option<&Path>, set: &[String]) -> Result<Preset, GdaError> {
    let (text, origin, stem) = match PRESETS.iter().find(|p| p.0 == name) {
        Some((n, text)) => (text.to_string(), format!("experiments/study/{n}.toml (built in)"), n.to_string()),
        None if name.ends_with(".toml") || name.contains('/') => {
            let path = PathBuf::from(name);
            let text =
                std::fs::read_to_string(&path).map_err(|e| input(format!("--preset {name}: cannot read it: {e}")))?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| name.into());
            (text, name.to_string(), stem)
        }
        None => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(input(format!(
                "--preset {name}: no such preset; allowed: {}, or the path of a preset file (.toml)",
                names.join(", ")
            )));
        }
    };
    let err = |key: Option<String>, msg: String| GdaError::Spec { file: origin.clone(), key, msg };
    let mut table: toml::Table = text.parse().map_err(|e| err(None, format!("not valid TOML: {e}")))?;
    let (study_set, spec_set): (Vec<&String>, Vec<&String>) =
        set.iter().partition(|s| s.trim_start().starts_with("study."));
    // `study.KEY=VALUE` lands in the preset's [study] table, as any override does.
    for ov in study_set {
        apply_override(&mut table, ov).map_err(|e| err(Some(e.key), e.msg))?;
    }
    let study = match table.remove("study") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(err(Some("study".into()), "must be a table ([study])".into())),
        None => return Err(err(Some("study".into()), "missing: a preset has a [study] table".into())),
    };
    let study: StudyConfig = serde_path_to_error::deserialize(toml::Value::Table(study))
        .map_err(|e| err(Some(format!("study.{}", e.path())), e.into_inner().to_string()))?;
    if !table.contains_key("name") {
        table.insert("name".into(), toml::Value::String(stem.clone()));
    }
    let spec_set: Vec<String> = spec_set.into_iter().cloned().collect();
    let spec = match spec {
        Some(p) => Spec::load(Some(p), &spec_set)?,
        None => Spec::from_toml(table, &spec_set, &origin)?,
    };
    Ok(Preset { name: stem, origin, study, spec })
}

impl StudyConfig {
    /// Refuses a study whose stages cannot share their points or whose
    /// claims would have no arms, naming the key.
    pub fn check(&self, origin: &str) -> Result<(), GdaError> {
        let bad = |key: &str, msg: String| GdaError::Spec {
            file: origin.to_string(),
            key: Some(format!("study.{key}")),
            msg,
        };
        let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        if !self.ratios.contains(&1) {
            return Err(bad("ratios", format!("[{}] lacks 1; allowed: a list holding 1 (DIFF, the arm every claim compares against), 3 or 4, and 8 or more", list(&self.ratios))));
        }
        if !MODERATE.iter().any(|m| self.ratios.contains(m)) {
            return Err(bad(
                "ratios",
                format!("[{}] has no moderate ratio; allowed: a list holding 3 or 4 (claim 1)", list(&self.ratios)),
            ));
        }
        if !self.ratios.iter().any(|&r| r >= HIGH_FROM) {
            return Err(bad(
                "ratios",
                format!(
                    "[{}] has no ratio of {HIGH_FROM} or more; allowed: a list holding one (claim 2)",
                    list(&self.ratios)
                ),
            ));
        }
        if self.ratios.contains(&0) {
            return Err(bad("ratios", "0 is not a ratio; allowed: positive integers".into()));
        }
        if self.seeds.is_empty() {
            return Err(bad("seeds", "is empty; allowed: at least one seed (two or more for intervals)".into()));
        }
        let mut seeds = self.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        if seeds.len() != self.seeds.len() {
            return Err(bad("seeds", "names a seed twice; allowed: distinct seeds".into()));
        }
        if let Some(r) = self.ablation_ratios.iter().find(|r| !self.ratios.contains(r)) {
            return Err(bad("ablation_ratios", format!("{r} is not a scan ratio; allowed: a subset of study.ratios [{}] (the scan's runs are the ablation's shared arms)", list(&self.ratios))));
        }
        if self.ablation_ratios.is_empty() {
            return Err(bad("ablation_ratios", "is empty; allowed: at least one of study.ratios (claim 3)".into()));
        }
        if !self.ratios.contains(&self.growth_ratio) {
            return Err(bad(
                "growth_ratio",
                format!(
                    "{} is not a scan ratio; allowed: one of [{}] (its runs are grown)",
                    self.growth_ratio,
                    list(&self.ratios)
                ),
            ));
        }
        if self.growth_steps == Some(0) {
            return Err(bad("growth_steps", "0 would train nothing; allowed: a positive count".into()));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(bad(
                "margin",
                format!("{} is not a margin; allowed: a finite number ≥ 0 (nats/token)", self.margin),
            ));
        }
        if self.bench_items < crate::data::made::MIN_ITEMS {
            return Err(bad(
                "bench_items",
                format!("{} is too few; allowed: at least {}", self.bench_items, crate::data::made::MIN_ITEMS),
            ));
        }
        if let Some(r) = self.retrieval.as_ref().and_then(|r| r.ratios.as_ref()) {
            if !r.contains(&1) {
                return Err(bad(
                    "retrieval.ratios",
                    "lacks 1; allowed: a list holding 1 (the comparison's reference)".into(),
                ));
            }
        }
        Ok(())
    }
}

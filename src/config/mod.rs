//! Experiment specs. Every key is documented in `docs/spec.md`; a test
//! keeps the two in step. The files, in the order they use each other:
//! `schema` (the typed keys and their defaults), `overrides` (`--set` and
//! `--grid` text into TOML), `validate` (each constraint and its message),
//! `resolve` (derived defaults, then every check), `load` (file → table →
//! resolved spec), `grid` (a grid's cells as specs), `identity` (the hash
//! and the diff a resume is judged by).

mod grid;
mod identity;
mod load;
mod overrides;
mod resolve;
mod schema;
mod validate;

pub use overrides::{apply_override, grid_value_text, parse_grid_arg};
pub use schema::*;
pub use validate::{check_eval_memory, check_task, nearest_divisors, task_symbols, GRID_REFUSED, TASK_MARKERS};

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
}

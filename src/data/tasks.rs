//! Synthetic retrieval tasks (`shared/design/gda.md` §6): multi-query
//! associative recall (MQAR) and needle-in-a-haystack with distractor needles
//! (NIAH). Each example is a pure function of its seed, so a training batch
//! depends only on (seed, step) like text batches do, and every run scores the
//! same evaluation examples.
//!
//! Token layout (task vocabulary V = `task.vocab`, n = ⌊(V − 4) / 3⌋):
//! 0 padding (unused), 1 needle marker, 2 query marker, 3 reserved,
//! keys [4, 4 + n), values [4 + n, 4 + 2n), filler [4 + 2n, V).
//! Keys, values and filler never overlap, so a label can only be predicted
//! by retrieving it from the prompt.

use std::ops::Range;

use tch::{Device, Tensor};

use super::rng::{splitmix64, Rng};
use crate::config::{TaskConfig, TaskKind, TASK_MARKERS};

pub const IGNORE: i64 = -100;
pub const NEEDLE: i64 = 1;
pub const QUERY: i64 = 2;
const FIRST: i64 = TASK_MARKERS as i64;

/// One question of an example: the label positions that must all be
/// predicted right, the input positions holding the answer (for the
/// attention analysis), and the input position whose attention row is
/// analysed (the one predicting the first answer token).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub labels: Vec<usize>,
    pub answer_span: Vec<usize>,
    pub focus: usize,
}

/// A window of `context + 1` tokens: inputs are `tokens[..context]`, targets
/// `tokens[1..]`; `labels[i]` is the target at input position i or IGNORE.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<i64>,
    pub labels: Vec<i64>,
    pub queries: Vec<Query>,
}

/// Token ranges of a task vocabulary.
#[derive(Debug, Clone, Copy)]
struct Ranges {
    n: i64,
    filler: i64,
}

impl Ranges {
    fn new(vocab: usize) -> Ranges {
        let n = (vocab as i64 - FIRST) / 3;
        Ranges { n, filler: vocab as i64 - FIRST - 2 * n }
    }
    fn key(&self, i: usize) -> i64 {
        FIRST + i as i64
    }
    fn value(&self, i: usize) -> i64 {
        FIRST + self.n + i as i64
    }
    fn filler(&self, rng: &mut Rng) -> i64 {
        FIRST + 2 * self.n + rng.below(self.filler as usize) as i64
    }
}

/// One example of `kind` for windows of `context` tokens (the config must
/// have passed `check`). `depth` fixes the NIAH needle's depth; `None` draws it
/// from `cfg.depths` (uniform in [0, 1] when empty).
pub fn example(cfg: &TaskConfig, kind: TaskKind, context: usize, seed: u64, depth: Option<f64>) -> Example {
    let mut rng = Rng::new(seed);
    match kind {
        TaskKind::Mqar => mqar(cfg, context, &mut rng),
        TaskKind::Niah => niah(cfg, context, &mut rng, depth),
        TaskKind::Text => unreachable!("text has no generator"),
    }
}

fn finish(tokens: Vec<i64>, queries: Vec<Query>) -> Example {
    let mut labels = vec![IGNORE; tokens.len() - 1];
    for q in &queries {
        for &p in &q.labels {
            labels[p] = tokens[p + 1];
        }
    }
    Example { tokens, labels, queries }
}

/// Key-value pairs, then questions (a key of a pair, drawn with replacement)
/// at random pair-aligned slots of a filler region, each followed by its
/// value (the label).
fn mqar(cfg: &TaskConfig, context: usize, rng: &mut Rng) -> Example {
    let r = Ranges::new(cfg.vocab);
    let window = context + 1;
    let pairs = cfg.pairs;
    let keys = rng.distinct(pairs, r.n as usize);
    let values: Vec<usize> = (0..pairs).map(|_| rng.below(r.n as usize)).collect();
    let mut tokens: Vec<i64> = (0..window).map(|_| r.filler(rng)).collect();
    for i in 0..pairs {
        tokens[2 * i] = r.key(keys[i]);
        tokens[2 * i + 1] = r.value(values[i]);
    }
    let start = 2 * pairs;
    let slots = (window - start) / 2;
    // Questions pick pairs with replacement: were each pair asked exactly
    // once, the last answers would follow by elimination (a model scores
    // H_n/n that way without matching a single key).
    let q = cfg.mqar_queries();
    let asked: Vec<usize> = (0..q).map(|_| rng.below(pairs)).collect();
    let mut at = rng.distinct(q, slots);
    at.sort_unstable();
    let mut queries: Vec<Query> = Vec::with_capacity(q);
    for (&i, &slot) in asked.iter().zip(&at) {
        let p = start + 2 * slot;
        tokens[p] = r.key(keys[i]);
        tokens[p + 1] = r.value(values[i]);
        // The answer sits in its pair and in every earlier question of the
        // same pair: attention to any of them is attention to the answer.
        let mut answer_span = vec![2 * i, 2 * i + 1];
        for (&j, o) in asked.iter().zip(&queries) {
            if j == i {
                answer_span.extend([o.focus, o.focus + 1]);
            }
        }
        queries.push(Query { labels: vec![p], answer_span, focus: p });
    }
    finish(tokens, queries)
}

/// A haystack of filler with `needles` needles `[NEEDLE, key, value…]`, the
/// real one at the given depth and the distractors (other keys, other values)
/// anywhere else; the window ends with `[QUERY, key, value…]` asking for the
/// real one.
fn niah(cfg: &TaskConfig, context: usize, rng: &mut Rng, depth: Option<f64>) -> Example {
    let r = Ranges::new(cfg.vocab);
    let window = context + 1;
    let span = cfg.value_len + 2;
    let hay = window - span;
    let mut tokens: Vec<i64> = (0..window).map(|_| r.filler(rng)).collect();
    let keys = rng.distinct(cfg.needles, r.n as usize);
    // Values are drawn per needle; a distractor never repeats the real value.
    let real: Vec<usize> = (0..cfg.value_len).map(|_| rng.below(r.n as usize)).collect();
    let depth =
        depth.unwrap_or_else(
            || {
                if cfg.depths.is_empty() {
                    rng.unit()
                } else {
                    cfg.depths[rng.below(cfg.depths.len())]
                }
            },
        );
    let last = hay - span;
    let mut starts = vec![(depth * last as f64).round() as usize];
    for _ in 1..cfg.needles {
        let free: Vec<usize> = (0..=last).filter(|&s| starts.iter().all(|&o| s + span <= o || o + span <= s)).collect();
        assert!(!free.is_empty(), "task::check leaves room for every needle");
        starts.push(free[rng.below(free.len())]);
    }
    let mut put = |at: usize, marker: i64, key: usize, value: &[usize]| {
        tokens[at] = marker;
        tokens[at + 1] = r.key(key);
        for (j, &v) in value.iter().enumerate() {
            tokens[at + 2 + j] = r.value(v);
        }
    };
    for (i, &s) in starts.iter().enumerate() {
        let value = if i == 0 {
            real.clone()
        } else {
            loop {
                let v: Vec<usize> = (0..cfg.value_len).map(|_| rng.below(r.n as usize)).collect();
                if v != real {
                    break v;
                }
            }
        };
        put(s, NEEDLE, keys[i], &value);
    }
    put(hay, QUERY, keys[0], &real);
    let focus = hay + 1;
    let query = Query {
        labels: (focus..focus + cfg.value_len).collect(),
        answer_span: (starts[0]..starts[0] + span).collect(),
        focus,
    };
    finish(tokens, vec![query])
}

/// Example seeds: training examples come from the run's seed and step, the
/// evaluation set from a fixed stream shared by every run.
pub fn train_seed(seed: u64, step: usize, row: usize) -> u64 {
    splitmix64(seed ^ 0x7461_736b_5f74_726e) ^ splitmix64(((step as u64) << 24) | row as u64)
}

pub fn eval_seed(i: usize) -> u64 {
    splitmix64(0x7461_736b_5f65_7661 ^ i as u64)
}

/// Stacks examples into (inputs, targets) of shape (rows, context); targets
/// are IGNORE except at label positions.
pub fn batch(examples: &[Example], device: Device) -> (Tensor, Tensor) {
    let rows = examples.len() as i64;
    let t = examples[0].labels.len() as i64;
    let x: Vec<i64> = examples.iter().flat_map(|e| e.tokens[..e.labels.len()].iter().copied()).collect();
    let y: Vec<i64> = examples.iter().flat_map(|e| e.labels.iter().copied()).collect();
    (Tensor::from_slice(&x).view([rows, t]).to_device(device), Tensor::from_slice(&y).view([rows, t]).to_device(device))
}

/// The rows `rows` (indices into the step's global batch) of the training
/// batch of (seed, step).
pub fn train_batch(
    cfg: &TaskConfig,
    kind: TaskKind,
    context: usize,
    seed: u64,
    step: usize,
    rows: Range<usize>,
) -> Vec<Example> {
    rows.map(|r| example(cfg, kind, context, train_seed(seed, step, r), None)).collect()
}

/// The fixed evaluation set: `n` examples at `context`, each with the given
/// NIAH depth (or depths drawn as in training).
pub fn eval_set(cfg: &TaskConfig, kind: TaskKind, context: usize, n: usize, depth: Option<f64>) -> Vec<Example> {
    (0..n).map(|i| example(cfg, kind, context, eval_seed(i), depth)).collect()
}

//! Scoring a model: held-out language modelling on a fixed set of windows,
//! and exact-match retrieval on a fixed set of task examples; `sample`:
//! what a model writes.

pub mod analysis;
pub mod bench;
mod loglik;
pub mod sample;

use tch::{Device, Kind, Reduction, Tensor};

use crate::config::Spec;
use crate::data::tasks::{self, Example, IGNORE};
use crate::data::{eval_offsets, windows, Dataset, Split};
use crate::model::Model;

/// What a run's periodic evaluation reports: bits per byte for text,
/// accuracy for a retrieval task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub loss: f64,
    pub bpb: Option<f64>,
    pub acc: Option<f64>,
}

/// Scores `model` on the fixed evaluation set of `data`.
pub fn evaluate(model: &Model, data: &Dataset, spec: &Spec, device: Device) -> Score {
    let tc = &spec.train;
    match data {
        Dataset::Text(c) => {
            let s = lm_eval(
                model,
                &c.val,
                &eval_offsets(c.val.len, tc.context, tc.eval_tokens),
                tc.context,
                tc.batch_size,
                device,
            );
            Score { loss: s.loss, bpb: Some(s.bpb), acc: None }
        }
        Dataset::Task { eval, .. } => {
            let s = retrieval_eval(model, eval, tc.batch_size, device);
            Score { loss: s.loss, bpb: None, acc: Some(s.acc) }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmScore {
    /// Mean cross-entropy in nats per token.
    pub loss: f64,
    /// Bits per byte of text: total nats / ln 2 / bytes covered by the targets.
    pub bpb: f64,
    pub tokens: usize,
}

/// Scores the windows starting at `offsets` (see `data::eval_offsets`), in
/// batches of `batch` rows.
pub fn lm_eval(model: &Model, split: &Split, offsets: &[i64], context: usize, batch: usize, device: Device) -> LmScore {
    tch::no_grad(|| {
        let mut nats = Tensor::zeros([], (Kind::Double, device));
        for chunk in offsets.chunks(batch.max(1)) {
            let (x, y) = windows(split, chunk, context, device);
            let logits = model.forward(&x);
            let v = logits.size()[2];
            let sum =
                logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y.reshape([-1]), None, Reduction::Sum, -100, 0.0);
            nats += sum.to_kind(Kind::Double);
        }
        let tokens = offsets.len() * context;
        let bytes = target_bytes(split, offsets, context);
        let nats = nats.double_value(&[]);
        LmScore { loss: nats / tokens as f64, bpb: nats / std::f64::consts::LN_2 / bytes, tokens }
    })
}

/// Bytes of text covered by the targets of the windows at `offsets`.
fn target_bytes(split: &Split, offsets: &[i64], context: usize) -> f64 {
    offsets.iter().map(|&o| split.text_bytes(o as usize + 1, context)).sum::<u64>() as f64
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalScore {
    /// Mean cross-entropy over answer tokens (nats).
    pub loss: f64,
    /// Share of questions whose every answer token is the argmax (teacher
    /// forcing; equal to greedy decoding being exactly right).
    pub acc: f64,
    /// Share of answer tokens that are the argmax.
    pub token_acc: f64,
    pub queries: usize,
}

/// Scores `examples` (all of one context length) in batches of `batch`.
pub fn retrieval_eval(model: &Model, examples: &[Example], batch: usize, device: Device) -> RetrievalScore {
    tch::no_grad(|| {
        let (mut nats, mut tokens, mut right_tokens, mut right, mut queries) = (0.0, 0usize, 0usize, 0usize, 0usize);
        for chunk in examples.chunks(batch.max(1)) {
            let (x, y) = tasks::batch(chunk, device);
            let logits = model.forward(&x);
            let v = logits.size()[2];
            let sum =
                logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y.reshape([-1]), None, Reduction::Sum, IGNORE, 0.0);
            nats += sum.double_value(&[]);
            let pred: Vec<i64> = Vec::try_from(logits.argmax(-1, false).reshape([-1]).to_device(Device::Cpu))
                .expect("int64 predictions");
            let t = chunk[0].labels.len();
            for (i, e) in chunk.iter().enumerate() {
                for q in &e.queries {
                    let ok = q.labels.iter().filter(|&&p| pred[i * t + p] == e.labels[p]).count();
                    tokens += q.labels.len();
                    right_tokens += ok;
                    right += usize::from(ok == q.labels.len());
                    queries += 1;
                }
            }
        }
        RetrievalScore {
            loss: nats / tokens.max(1) as f64,
            acc: right as f64 / queries.max(1) as f64,
            token_acc: right_tokens as f64 / tokens.max(1) as f64,
            queries,
        }
    })
}

//! Held-out language-modelling quality on a fixed set of windows.

use tch::{Device, Kind, Reduction, Tensor};

use crate::data::{windows, Split};
use crate::model::Model;

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
            let sum = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y.reshape([-1]), None, Reduction::Sum, -100, 0.0);
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
    let t = context as i64;
    let idx = Tensor::from_slice(offsets).view([-1, 1]) + 1 + Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
    split.token_bytes.take(&idx).sum(Kind::Double).double_value(&[])
}

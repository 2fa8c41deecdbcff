//! One training step's forward and backward, the step losses and gradient
//! norms kept on the device until the host needs them, and the timing of
//! steps outside a run (`--dry-run`, `gda bench`).

use std::ops::Range;
use std::time::Instant;

use tch::{nn::VarStore, Kind, Tensor};

use super::checkpoint::TrainState;
use super::optim::AdamW;
use crate::config::Spec;
use crate::data::Dataset;
use crate::device;
use crate::model::Model;

/// Forward and backward over the micro-batches of `step`, this rank's rows
/// `rows` of each; returns the step's mean loss as a 0-dim tensor (no host
/// sync). `before_last_backward` runs just before the last micro-batch's
/// backward (the one whose gradients are the step's).
pub(super) fn accumulate_gradients(
    model: &Model,
    data: &Dataset,
    spec: &Spec,
    at: (usize, Range<usize>),
    device: tch::Device,
    before_last_backward: &mut dyn FnMut(),
) -> Tensor {
    let tc = &spec.train;
    let (step, rows) = at;
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    for micro in 0..tc.grad_accum {
        let first = micro * tc.batch_size;
        let (x, y) = data.batch(spec, step, first + rows.start..first + rows.end, device);
        let loss = Model::loss(&model.forward(&x), &y) / tc.grad_accum as f64;
        if micro + 1 == tc.grad_accum {
            before_last_backward();
        }
        loss.backward();
        loss_sum += loss.detach();
    }
    loss_sum
}

/// Step losses and gradient norms stay on the device between metrics rows:
/// reading them every step would stall an asynchronous device (CUDA) once
/// per step. They are read where the host needs them anyway (a metrics
/// row, an evaluation, a checkpoint). f64 sums of f32 losses are exact, so
/// where the flushes fall does not change `train_loss` (exact resume).
pub(super) struct Pending {
    loss: Tensor,
    norm: Tensor,
    pub steps: usize,
}

impl Pending {
    pub fn new(device: tch::Device) -> Pending {
        Pending {
            loss: Tensor::zeros([], (Kind::Double, device)),
            norm: Tensor::zeros([], (Kind::Double, device)),
            steps: 0,
        }
    }

    /// Adds one step's loss and gradient norm, without a host read.
    pub fn add(&mut self, loss: &Tensor, norm: &Tensor) {
        self.loss += loss.to_kind(Kind::Double);
        self.norm += norm.to_kind(Kind::Double);
        self.steps += 1;
    }

    /// Moves the sums since the last flush into `state`'s loss sum; the
    /// reason to stop if a loss or norm among them is not finite.
    pub fn flush(&mut self, state: &mut TrainState) -> Result<(), String> {
        let (l, n) = (device::host_f64(&self.loss), device::host_f64(&self.norm));
        state.loss_sum += l;
        state.loss_count += self.steps;
        let _ = self.loss.zero_();
        let _ = self.norm.zero_();
        let first = state.step + 1 - self.steps;
        self.steps = 0;
        if !l.is_finite() || !n.is_finite() {
            let what = if !l.is_finite() { format!("train loss is {l}") } else { format!("gradient norm is {n}") };
            Err(format!("{what} (steps {first}..={})", state.step))
        } else {
            Ok(())
        }
    }
}

/// A model and optimizer for timing training steps outside a run.
pub struct StepTimer<'a> {
    spec: &'a Spec,
    data: &'a Dataset,
    device: tch::Device,
    _vs: VarStore,
    model: Model,
    opt: AdamW,
    steps: usize,
}

impl<'a> StepTimer<'a> {
    pub fn new(spec: &'a Spec, data: &'a Dataset, device: tch::Device) -> StepTimer<'a> {
        tch::manual_seed(spec.seed as i64);
        let (vs, model) = Model::build(&spec.model, device);
        let opt = AdamW::new(&vs, &spec.train);
        StepTimer { spec, data, device, _vs: vs, model, opt, steps: 0 }
    }

    /// Seconds of one full optimizer step (forward, backward, clip, AdamW) on
    /// micro-batches of `rows` windows, ending with a host read of the loss so
    /// asynchronous devices are timed to completion.
    pub fn step(&mut self, rows: usize) -> f64 {
        let start = Instant::now();
        let loss =
            accumulate_gradients(&self.model, self.data, self.spec, (self.steps, 0..rows), self.device, &mut || {});
        let _ = self.opt.clip_grad_norm(self.spec.train.grad_clip);
        self.opt.step(1e-4);
        self.opt.zero_grad();
        let _ = loss.double_value(&[]);
        self.steps += 1;
        start.elapsed().as_secs_f64()
    }
}

/// Rows of the micro-batches [`estimate_seconds`] times: about 1024 tokens.
pub fn estimate_rows(spec: &Spec) -> usize {
    (1024 / spec.train.context).clamp(1, spec.train.batch_size)
}

/// Estimated wall time (seconds) of a whole run of `spec`, for `--dry-run`:
/// optimizer steps and evaluation forwards are timed after a warm-up on
/// batches of about 1024 tokens (fewer rows than the spec's when its batch is
/// larger) and scaled to the spec's batch, steps and evaluation budget.
pub fn estimate_seconds(spec: &Spec, data: &Dataset, device: tch::Device) -> f64 {
    let tc = &spec.train;
    let mut timer = StepTimer::new(spec, data, device);
    let rows = estimate_rows(spec);
    let mut times = Vec::new();
    // A warm-up step, then two timed ones; a step slower than 2 s is its own
    // estimate (large models on a CPU: allocation overhead is small there).
    while times.len() < 3 && !(times.len() == 1 && times[0] > 2.0) {
        times.push(timer.step(rows));
    }
    let step_secs = if times.len() == 1 { times[0] } else { (times[1] + times[2]) / 2.0 };
    let probe = data.eval_inputs(spec, rows, device);
    let start = Instant::now();
    let _ = tch::no_grad(|| timer.model.forward(&probe).sum(Kind::Float).double_value(&[]));
    let eval_secs = start.elapsed().as_secs_f64() * data.eval_rows(spec) as f64 / probe.size()[0] as f64;
    let evals = tc.steps / tc.eval_every + 2;
    step_secs * (tc.batch_size as f64 / rows as f64) * tc.steps as f64 + eval_secs * evals as f64
}

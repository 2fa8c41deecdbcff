//! A run between its setup and its summary: what the loop carries from step
//! to step, and the parts of one step of `train`: the update (with the
//! ranks' all-reduce), its evaluation and metrics row, its checkpoint, and
//! the two ways a run ends (the last step, or a stop at a step boundary).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;
use tch::{nn::VarStore, Tensor};

use super::checkpoint::{self, TrainState};
use super::dist::{Collective, Ranks};
use super::metrics::MetricsLog;
use super::optim::{learning_rate, AdamW};
use super::progress::{progress_bar, progress_message, write_row, Speed};
use super::run_dir::{self, draw_loss_curve, RunSummary, SUMMARY_FILE};
use super::step::{accumulate_gradients, Pending};
use super::{interrupted, metric_columns, Setup, TrainOptions};
use crate::config::{Spec, TrainConfig};
use crate::data::Dataset;
use crate::device;
use crate::error::{io, GdaError};
use crate::eval::{evaluate, Score};
use crate::model::Model;
use crate::util::fs::atomic_write;
use crate::util::out::{self, errln};

/// One rank's run in progress. Fields drop in declaration order, so the run
/// directory's lock is released before the process group is left.
pub(super) struct Trainer<'a> {
    spec: &'a Spec,
    /// Rank 0 alone writes metrics, TensorBoard, checkpoints and the summary.
    writer: bool,
    device: tch::Device,
    /// This rank's rows of every micro-batch.
    rows: Range<usize>,
    pending: Pending,
    meter: Meter,
    unlogged_host_reads: usize,
    /// With ranks, a stop is agreed through the steps' all-reduces and read
    /// at the same steps on every rank, so every rank stops after the same step.
    stop_agreed: bool,
    bar: ProgressBar,
    log: Option<MetricsLog>,
    flops_per_token: f64,
    /// Tokens per second count every rank's tokens, so MFU divides by the
    /// peak of all of their devices.
    peak: f64,
    parameters: usize,
    /// The step the newest checkpoint holds: an interrupt right after one has
    /// nothing new to save.
    saved_step: Option<usize>,
    last_ckpt: Option<PathBuf>,
    pub state: TrainState,
    opt: AdamW,
    model: Model,
    vs: VarStore,
    _lock: Option<File>,
    run_dir: PathBuf,
    data: Dataset,
    group: Option<Collective>,
}

/// With ranks, the agreed stop flag is read (a host sync) at every log or
/// checkpoint step and at least every this many steps: an interrupt stops
/// the run within as many steps, without a device-to-host read per step.
const STOP_CHECK_EVERY: usize = 10;

/// What one step left for its evaluation, metrics row and checkpoint.
pub(super) struct Done {
    lr: f64,
    /// The step's gradient norm, read only where a row or checkpoint is due.
    norm: f64,
    due: Due,
}

/// What falls due after a step.
struct Due {
    eval: bool,
    log: bool,
    checkpoint: bool,
}

impl Due {
    fn after(tc: &TrainConfig, step: usize) -> Due {
        let checkpoint_every = if tc.checkpoint_every == 0 { tc.eval_every } else { tc.checkpoint_every };
        let eval = step.is_multiple_of(tc.eval_every) || step == tc.steps;
        Due {
            eval,
            log: step.is_multiple_of(tc.log_every) || eval,
            checkpoint: step.is_multiple_of(checkpoint_every) || step == tc.steps,
        }
    }
}

/// Training time and tokens (evaluation excluded), in all and since the
/// last metrics row; and the run's wall time (evaluation included).
struct Meter {
    /// The run's wall time before this process started it.
    start_elapsed: f64,
    clock: Instant,
    train_time: f64,
    train_tokens: u64,
    window_time: f64,
    window_tokens: u64,
}

impl Meter {
    fn start(start_elapsed: f64) -> Meter {
        let clock = Instant::now();
        Meter { start_elapsed, clock, train_time: 0.0, train_tokens: 0, window_time: 0.0, window_tokens: 0 }
    }

    fn add(&mut self, tokens: u64) {
        self.window_tokens += tokens;
        self.train_tokens += tokens;
    }

    fn add_time(&mut self, secs: f64) {
        self.train_time += secs;
        self.window_time += secs;
    }

    fn elapsed(&self) -> f64 {
        self.start_elapsed + self.clock.elapsed().as_secs_f64()
    }

    fn new_window(&mut self) {
        self.window_tokens = 0;
        self.window_time = 0.0;
    }
}

impl<'a> Trainer<'a> {
    /// Rank 0 starts the run directory (spec, manifest, the opening lines)
    /// and its metrics log; every rank starts its clock and progress bar.
    pub fn begin(
        spec: &'a Spec,
        opts: &TrainOptions,
        ranks: &Ranks,
        setup: Setup,
        group: Option<Collective>,
    ) -> Result<Trainer<'a>, GdaError> {
        let tc = &spec.train;
        let Setup { device, threads, data, run_dir, lock, vs, model, opt, mut state, last_ckpt } = setup;
        let writer = ranks.rank == 0;
        let saved_step = last_ckpt.as_ref().map(|_| state.step);
        let world = group.as_ref().map(Collective::describe);
        let start = if writer {
            run_dir::begin(spec, opts, &run_dir, device, threads, &data, state.step, world.as_ref())?
        } else {
            run_dir::quiet_start(spec)
        };
        // Checkpoints written from now on carry the spec they continue (a
        // resume may have changed its resumable keys).
        state.spec_hash = spec.hash();
        let differential = model.lambdas().len() == spec.model.n_layers;
        let task = !matches!(data, Dataset::Text(_));
        let columns = metric_columns(spec.model.n_layers, differential, task);
        let keep = last_ckpt.as_ref().map(|_| state.step);
        let log = if writer { Some(open_log(spec, &run_dir, &columns, keep)?) } else { None };
        Ok(Trainer {
            spec,
            writer,
            device,
            rows: ranks.rows(tc.batch_size),
            pending: Pending::new(device),
            bar: progress_bar(tc.steps, state.step, writer),
            meter: Meter::start(state.elapsed_s),
            unlogged_host_reads: 0,
            stop_agreed: false,
            log,
            flops_per_token: start.flops_per_token,
            peak: start.peak.flops * ranks.world as f64,
            parameters: start.parameters,
            saved_step,
            last_ckpt,
            state,
            opt,
            model,
            vs,
            _lock: lock,
            run_dir,
            data,
            group,
        })
    }

    /// A fresh run's step 0 row: rank 0 scores the untrained model.
    pub fn score_untrained(&mut self) -> Result<(), GdaError> {
        if self.state.step == 0 && self.last_ckpt.is_none() && self.writer {
            let score = self.evaluate();
            self.state.record(score);
            if let Some(log) = self.log.as_mut() {
                write_row(log, &self.model, 0, 0, None, Some(score), 0.0, None, None, 0.0, &self.bar)?;
            }
        }
        Ok(())
    }

    /// Whether to stop before the next step: an interrupt, or with ranks a
    /// stop agreed in the last step.
    pub fn stop_due(&self) -> bool {
        if self.group.is_some() {
            self.stop_agreed
        } else {
            interrupted()
        }
    }

    /// Stops at this step boundary with a checkpoint of it (rank 0 writes
    /// it unless the newest holds it already; the other ranks name it).
    /// Returns the error the run ends with: `Interrupted`, or what stopping hit.
    pub fn stop(mut self) -> GdaError {
        if self.pending.steps > 0 {
            if let Err(e) = self.flush() {
                return e;
            }
        }
        self.bar.abandon();
        let step = self.state.step;
        let ckpt = match &self.last_ckpt {
            Some(c) if self.saved_step == Some(step) => c.clone(),
            _ if !self.writer => checkpoint::dir(&self.run_dir).join(format!("step-{step:08}")),
            _ => match checkpoint::save(
                &self.run_dir,
                &self.vs,
                &self.opt,
                &self.state,
                self.spec.train.keep_checkpoints,
            ) {
                Ok(c) => c,
                Err(e) => return e,
            },
        };
        if out::closed() {
            errln!("standard output was closed (its reader went away): stopping as for Ctrl-C");
        }
        GdaError::Interrupted { step, checkpoint: ckpt, run_dir: self.run_dir }
    }

    /// One optimizer step, then the host reads that a metrics row or a
    /// checkpoint after it needs (none otherwise).
    pub fn step(&mut self) -> Result<Done, GdaError> {
        let spec = self.spec;
        let tc = &spec.train;
        let step_start = Instant::now();
        let reads_before = device::host_reads();
        let lr = learning_rate(tc, self.state.step);
        let grad_norm = self.update(lr)?;
        let tokens = (tc.batch_size * tc.context * tc.grad_accum) as u64;
        self.state.step += 1;
        self.state.tokens_seen += tokens;
        self.meter.add(tokens);
        let due = Due::after(tc, self.state.step);
        let mut norm = f64::NAN;
        if due.log || due.checkpoint {
            norm = device::host_f64(&grad_norm);
            self.flush()?;
        }
        if let Some(g) = self.group.as_ref() {
            // The same steps on every rank: all learn of a stop together.
            if due.log || due.checkpoint || self.state.step.is_multiple_of(STOP_CHECK_EVERY) {
                self.stop_agreed = g.stop_agreed();
            }
        }
        self.meter.add_time(step_start.elapsed().as_secs_f64());
        self.bar.set_position(self.state.step as u64);
        if due.log {
            let loss = self.state.loss_sum / self.state.loss_count.max(1) as f64;
            let meter = &self.meter;
            self.bar.set_message(progress_message(loss, meter.train_tokens as f64 / meter.train_time.max(1e-9)));
        }
        if !(due.log || due.checkpoint) {
            self.unlogged_host_reads += device::host_reads() - reads_before;
        }
        Ok(Done { lr, norm, due })
    }

    /// Forward and backward on this rank's rows, the gradients averaged
    /// over the ranks (their all-reduces started during backward; the stop
    /// flags ride after them), then clipping and the AdamW update. Returns
    /// the gradient norm, still on the device.
    fn update(&mut self, lr: f64) -> Result<Tensor, GdaError> {
        let spec = self.spec;
        let at = (self.state.step, self.rows.clone());
        let loss_sum = match self.group.as_mut() {
            Some(g) => {
                g.prepare(&self.opt)?;
                let loss = accumulate_gradients(&self.model, &self.data, spec, at, self.device, &mut || g.arm());
                g.average_gradients(&self.opt, &loss, interrupted())?
            }
            None => accumulate_gradients(&self.model, &self.data, spec, at, self.device, &mut || {}),
        };
        let grad_norm = self.opt.clip_grad_norm(spec.train.grad_clip);
        self.pending.add(&loss_sum, &grad_norm);
        self.opt.step(lr);
        self.opt.zero_grad();
        Ok(grad_norm)
    }

    /// Rank 0's evaluation where one is due, then the metrics row where
    /// one is due (with the training loss and speed since the last row).
    pub fn evaluate_and_log(&mut self, done: &Done) -> Result<(), GdaError> {
        let score = (done.due.eval && self.writer).then(|| self.evaluate());
        if let Some(sc) = score {
            self.state.record(sc);
        }
        self.state.elapsed_s = self.meter.elapsed();
        if !done.due.log {
            return Ok(());
        }
        let tps = self.meter.window_tokens as f64 / self.meter.window_time.max(1e-9);
        let train_loss = self.state.loss_sum / self.state.loss_count as f64;
        let speed = Speed { tokens_per_s: tps, mfu: tps * self.flops_per_token / self.peak };
        if let Some(log) = self.log.as_mut() {
            let s = &self.state;
            let (lr, norm) = (done.lr, Some(done.norm));
            write_row(
                log,
                &self.model,
                s.step,
                s.tokens_seen,
                Some(train_loss),
                score,
                lr,
                norm,
                Some(speed),
                s.elapsed_s,
                &self.bar,
            )?;
        }
        self.state.loss_sum = 0.0;
        self.state.loss_count = 0;
        self.meter.new_window();
        Ok(())
    }

    /// A checkpoint where one is due (rank 0 writes it); a parameter that
    /// is not finite ends the run instead.
    pub fn checkpoint(&mut self, done: &Done) -> Result<(), GdaError> {
        if !done.due.checkpoint {
            return Ok(());
        }
        if !params_finite(&self.vs) {
            return Err(self.diverged("parameters became non-finite after the update".into()));
        }
        if self.writer {
            let keep = self.spec.train.keep_checkpoints;
            self.last_ckpt = Some(checkpoint::save(&self.run_dir, &self.vs, &self.opt, &self.state, keep)?);
        }
        self.saved_step = Some(self.state.step);
        Ok(())
    }

    /// After the last step: each rank leaves the group with its all-reduce
    /// report, and rank 0 writes summary.json and the loss curve.
    pub fn finish(mut self) -> Result<RunSummary, GdaError> {
        self.bar.finish_and_clear();
        if let Some(g) = self.group.as_mut() {
            g.finish();
            errln!("{}", g.report(self.meter.train_time));
        }
        let (state, meter) = (&self.state, &self.meter);
        let summary = RunSummary {
            name: self.spec.name.clone(),
            steps: state.step,
            tokens_seen: state.tokens_seen,
            parameters: self.parameters,
            val_loss: state.val_loss.unwrap_or(f64::NAN),
            val_bpb: state.val_bpb,
            val_acc: state.val_acc,
            elapsed_s: state.elapsed_s,
            tokens_per_s: if meter.train_time > 0.0 { meter.train_tokens as f64 / meter.train_time } else { 0.0 },
            run_dir: self.run_dir.clone(),
            unlogged_host_reads: self.unlogged_host_reads,
        };
        if self.writer {
            let summary_path = self.run_dir.join(SUMMARY_FILE);
            atomic_write(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises"))
                .map_err(io("cannot write", &summary_path))?;
            draw_loss_curve(&self.run_dir)?;
        }
        Ok(summary)
    }

    fn evaluate(&self) -> Score {
        evaluate(&self.model, &self.data, self.spec, self.device)
    }

    /// Moves the pending losses and norms into the state; a non-finite one
    /// ends the run.
    fn flush(&mut self) -> Result<(), GdaError> {
        self.pending.flush(&mut self.state).map_err(|reason| self.diverged(reason))
    }

    /// The error a diverged run ends with at this step, naming the last
    /// checkpoint (which holds finite parameters).
    fn diverged(&mut self, reason: String) -> GdaError {
        self.bar.abandon();
        GdaError::Diverged { step: self.state.step, reason, checkpoint: self.last_ckpt.take() }
    }
}

/// Rank 0's metrics log, its rows after `keep` (the step resumed from)
/// dropped, with the spec as its first text.
fn open_log(spec: &Spec, run_dir: &Path, columns: &[String], keep: Option<usize>) -> Result<MetricsLog, GdaError> {
    let mut log = MetricsLog::open(&run_dir.join("metrics.csv"), columns, keep)?;
    // A code block, since TensorBoard renders text as Markdown.
    log.text("spec", &format!("```toml\n{}```", spec.to_toml()))?;
    Ok(log)
}

/// Every parameter finite? Checked before a checkpoint is written, so a
/// checkpoint is never poisoned by a diverging update.
fn params_finite(vs: &VarStore) -> bool {
    tch::no_grad(|| {
        let vars = vs.trainable_variables();
        let flags: Vec<Tensor> = vars.iter().map(|v| v.isfinite().all()).collect();
        device::host_f64(&Tensor::stack(&flags, 0).all()) != 0.0
    })
}

//! `gda train`: one model, one run directory, the whole loop in one place.
//!
//! Run directory layout (see docs/run-directory.md):
//! `spec.toml` (resolved), `manifest.json`, `metrics.csv`,
//! `checkpoints/`, and `summary.json` once the run has finished.

pub mod checkpoint;
pub mod dist;
pub mod metrics;
pub mod optim;
pub mod run_dir;

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn::VarStore, Kind, Tensor};

use self::checkpoint::TrainState;
use self::dist::{Collective, Ranks};
use self::metrics::{cell, MetricsLog};
use self::optim::{learning_rate, AdamW};
pub use self::run_dir::{draw_loss_curve, LOSS_CURVE_FILE};
pub use self::run_dir::{finished, Manifest, RunSummary};
use self::run_dir::{prepare_run_dir, run_dir_for, SUMMARY_FILE};
use crate::config::Spec;
use crate::data::Dataset;
use crate::device;
use crate::error::{io, GdaError};
use crate::eval::{evaluate, Score};
use crate::model::{self, Model};
use crate::report::units::human_count;
use crate::util::fs::atomic_write;
use crate::util::host::fmt_bytes;
use crate::util::out::{self, errln, outln};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// When the first interrupt came, in ms since the handler was installed.
static FIRST_INTERRUPT_MS: AtomicU64 = AtomicU64::new(0);
static HANDLER_SINCE: OnceLock<Instant> = OnceLock::new();
/// A repeat within this long is the same interrupt delivered twice (a
/// terminal's Ctrl-C reaching a process group and a parent passing it on),
/// not a second Ctrl-C.
const SAME_INTERRUPT_MS: u64 = 1000;

/// The signals a trainer stops at with a checkpoint: Ctrl-C, SIGTERM (Slurm,
/// systemd, kill) and SIGHUP (a closed terminal or ssh session).
pub const INTERRUPT_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Ctrl-C / SIGTERM / SIGHUP: the first asks the loop to checkpoint and stop
/// at the next step boundary; a second one, a second or more later, stops at
/// once without a checkpoint (the previous one is kept). Unblocks these
/// signals, which a sweep blocks in its children until now (local.rs), so
/// that one arriving while libtorch loads is not lost.
pub fn install_interrupt_handler() {
    HANDLER_SINCE.get_or_init(Instant::now);
    // set_handler fails only when a handler is already installed, and this
    // is the one place that installs it.
    let _ = ctrlc::set_handler(on_interrupt);
    // SAFETY: a signal set on the stack, passed to pthread_sigmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in INTERRUPT_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

fn on_interrupt() {
    let now = HANDLER_SINCE.get().map(|t| t.elapsed().as_millis() as u64).unwrap_or(0);
    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
        FIRST_INTERRUPT_MS.store(now, Ordering::SeqCst);
        return;
    }
    if now.saturating_sub(FIRST_INTERRUPT_MS.load(Ordering::SeqCst)) < SAME_INTERRUPT_MS {
        return;
    }
    errln!("second interrupt: stopping now, without a checkpoint (the last one is kept)");
    // _exit, not process::exit: exit handlers and static destructors must not
    // run while the main thread is inside libtorch.
    // SAFETY: _exit ends the process; nothing after it runs.
    unsafe { libc::_exit(130) };
}

/// Whether training should stop at the next step boundary: an interrupt, or
/// a stdout that can no longer be written (`util::out`).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) || out::closed()
}

#[derive(Debug, Default, Clone)]
pub struct TrainOptions {
    /// Run directory; default `<output.dir>/<name>`.
    pub run_dir: Option<PathBuf>,
    /// Continue from the run directory's last checkpoint.
    pub resume: bool,
    /// With `resume`: the checkpoint to continue from (`step-N`, `N` or its
    /// path) instead of the newest; the newer ones are set aside.
    pub resume_from: Option<String>,
    /// Where the run's initial weights came from (`gda grow` records its source here).
    pub parent: Option<serde_json::Value>,
    /// This process's rank in a distributed run (None: a run of one process).
    pub dist: Option<crate::dist::Launch>,
    /// How long a rank waits for its peers (None: `dist::DEFAULT_TIMEOUT`).
    pub dist_timeout: Option<Duration>,
}

/// Column names of metrics.csv for a model with `layers` layers, trained on
/// text (`val_bpb`) or on a retrieval task (`val_acc`).
pub fn metric_columns(layers: usize, differential: bool, task: bool) -> Vec<String> {
    let quality = if task { "val_acc" } else { "val_bpb" };
    let mut c: Vec<String> = ["step", "tokens", "train_loss", "val_loss", quality, "lr", "grad_norm"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if differential {
        c.push("lambda_mean".into());
        c.extend((0..layers).map(|l| format!("lambda_{l}")));
    }
    c.extend(["tokens_per_s", "mfu", "elapsed_s"].iter().map(|s| s.to_string()));
    c
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

/// Refuses a run that cannot fit in `device`'s memory, before anything is
/// allocated or written: parameters, AdamW state and the activations of
/// micro-batches of `rows` windows (`model::memory`, a lower bound) against
/// what the device has free.
pub fn check_memory(spec: &Spec, device: tch::Device, rows: usize) -> Result<(), GdaError> {
    let tc = &spec.train;
    let need = model::memory::training(&spec.model, rows, tc.context, device::compute_kind(device));
    device::check_memory(device, need.total()).map_err(|available| {
        let (key, change) = if need.state_bytes >= need.activation_bytes {
            ("model.d_model", "make the model smaller: model.d_model or model.n_layers (or model.vocab_size)")
        } else {
            ("train.batch_size", "lower train.batch_size (a larger train.grad_accum keeps the tokens per step) or train.context")
        };
        let parameters =
            if need.parameters < 1e6 { format!("{}", need.parameters) } else { format!("{:.3e}", need.parameters) };
        spec.error(
            key,
            format!(
                "training needs at least {} on {}: {parameters} parameters × 16 bytes (weights, gradients, AdamW moments) = {}, plus {} of activations for a micro-batch of {rows} × {} tokens (train.batch_size × train.context); {available}; {change}",
                fmt_bytes(need.total()),
                device::describe(device),
                fmt_bytes(need.state_bytes),
                fmt_bytes(need.activation_bytes),
                tc.context,
            ),
        )
    })
}

pub fn train(spec: &Spec, opts: &TrainOptions) -> Result<RunSummary, GdaError> {
    let tc = &spec.train;
    let ranks = Ranks::of(opts.dist.as_ref());
    // Every rank sets up, then all meet (a rank that failed its setup tells
    // the others why), so no rank trains alone or waits for one that quit.
    let setup = Setup::new(spec, opts, &ranks);
    let group = opts.dist.as_ref().map(|launch| {
        let set_up = setup.as_ref().map(|s| s.state.step).map_err(|e| e.to_string());
        let nccl = setup.as_ref().is_ok_and(|s| s.device.is_cuda());
        Collective::join(launch, spec, set_up, nccl, opts.dist_timeout)
    });
    // This rank's own error first: the others report it from the handshake.
    let setup = setup?;
    let mut group = group.transpose()?;
    let Setup { device, threads, data, run_dir, lock: _lock, vs, model, mut opt, mut state, last_ckpt } = setup;
    let writer = ranks.rank == 0;
    let mut last_ckpt = last_ckpt;
    // The step the newest checkpoint holds: an interrupt right after one has
    // nothing new to save.
    let mut saved_step = last_ckpt.as_ref().map(|_| state.step);
    if state.step >= tc.steps {
        if let Some(done) = finished(&run_dir) {
            return Ok(done);
        }
    }

    let world = group.as_ref().map(Collective::describe);
    let start = if writer {
        run_dir::begin(spec, opts, &run_dir, device, threads, &data, state.step, world.as_ref())?
    } else {
        run_dir::quiet_start(spec)
    };
    // Tokens per second count every rank's tokens, so MFU divides by the
    // peak of all of their devices.
    let (flops_per_token, peak) = (start.flops_per_token, start.peak.flops * ranks.world as f64);
    // Checkpoints written from now on carry the spec they continue (a
    // resume may have changed its resumable keys).
    state.spec_hash = spec.hash();

    let differential = model.lambdas().len() == spec.model.n_layers;
    let task = !matches!(data, Dataset::Text(_));
    let columns = metric_columns(spec.model.n_layers, differential, task);
    let keep = last_ckpt.as_ref().map(|_| state.step);
    // Rank 0 alone writes metrics, TensorBoard, checkpoints and the summary.
    let mut log = if writer { Some(MetricsLog::open(&run_dir.join("metrics.csv"), &columns, keep)?) } else { None };
    if let Some(log) = log.as_mut() {
        // A code block, since TensorBoard renders text as Markdown.
        log.text("spec", &format!("```toml\n{}```", spec.to_toml()))?;
    }

    let evaluate = |model: &Model| evaluate(model, &data, spec, device);
    let checkpoint_every = if tc.checkpoint_every == 0 { tc.eval_every } else { tc.checkpoint_every };
    let tokens_per_step = (tc.batch_size * tc.context * tc.grad_accum) as u64;
    let rows = ranks.rows(tc.batch_size);

    let bar = progress_bar(tc.steps, state.step, writer);
    let start_elapsed = state.elapsed_s;
    let clock = Instant::now();
    // Training time and tokens since the last metrics row (evaluation excluded).
    let mut window_time = 0.0f64;
    let mut window_tokens = 0u64;
    let mut train_time = 0.0f64;
    let mut train_tokens_now = 0u64;

    if state.step == 0 && last_ckpt.is_none() && writer {
        let score = evaluate(&model);
        state.record(score);
        if let Some(log) = log.as_mut() {
            write_row(log, &model, 0, 0, None, Some(score), 0.0, None, None, 0.0, &bar)?;
        }
    }

    // Step losses and gradient norms stay on the device between metrics rows:
    // reading them every step would stall an asynchronous device (CUDA) once
    // per step. They are read where the host needs them anyway (a metrics
    // row, an evaluation, a checkpoint). f64 sums of f32 losses are exact, so
    // where the flushes fall does not change `train_loss` (exact resume).
    let mut pending_loss = Tensor::zeros([], (Kind::Double, device));
    let mut pending_norm = Tensor::zeros([], (Kind::Double, device));
    let mut pending_steps = 0usize;
    let mut unlogged_host_reads = 0usize;
    let flush = |state: &mut TrainState, loss: &mut Tensor, norm: &mut Tensor, steps: &mut usize| {
        let (l, n) = (device::host_f64(loss), device::host_f64(norm));
        state.loss_sum += l;
        state.loss_count += *steps;
        let _ = loss.zero_();
        let _ = norm.zero_();
        let first = state.step + 1 - *steps;
        *steps = 0;
        if !l.is_finite() || !n.is_finite() {
            let what = if !l.is_finite() { format!("train loss is {l}") } else { format!("gradient norm is {n}") };
            Err(format!("{what} (steps {first}..={})", state.step))
        } else {
            Ok(())
        }
    };
    // With ranks, a stop is agreed in the step's all-reduce, so every rank
    // stops after the same step.
    let mut stop_agreed = false;

    while state.step < tc.steps {
        let stop = if group.is_some() { stop_agreed } else { interrupted() };
        if stop {
            if pending_steps > 0 {
                if let Err(reason) = flush(&mut state, &mut pending_loss, &mut pending_norm, &mut pending_steps) {
                    bar.abandon();
                    return Err(GdaError::Diverged { step: state.step, reason, checkpoint: last_ckpt });
                }
            }
            bar.abandon();
            let ckpt = match &last_ckpt {
                Some(c) if saved_step == Some(state.step) => c.clone(),
                _ if !writer => checkpoint::dir(&run_dir).join(format!("step-{:08}", state.step)),
                _ => checkpoint::save(&run_dir, &vs, &opt, &state, tc.keep_checkpoints)?,
            };
            if out::closed() {
                errln!("standard output was closed (its reader went away): stopping as for Ctrl-C");
            }
            return Err(GdaError::Interrupted { step: state.step, checkpoint: ckpt, run_dir });
        }
        let step_start = Instant::now();
        let reads_before = device::host_reads();
        let step = state.step;
        let lr = learning_rate(tc, step);

        let mut loss_sum = accumulate_gradients(&model, &data, spec, step, rows.clone(), device);
        if let Some(g) = group.as_mut() {
            let (mean_loss, stop) = g.average_gradients(&opt, &loss_sum, interrupted())?;
            loss_sum = mean_loss;
            stop_agreed = stop;
        }
        let grad_norm = opt.clip_grad_norm(tc.grad_clip);
        pending_loss += loss_sum.to_kind(Kind::Double);
        pending_norm += grad_norm.to_kind(Kind::Double);
        pending_steps += 1;
        opt.step(lr);
        opt.zero_grad();

        state.step += 1;
        state.tokens_seen += tokens_per_step;
        window_tokens += tokens_per_step;
        train_tokens_now += tokens_per_step;
        let s = state.step;
        let eval_due = s % tc.eval_every == 0 || s == tc.steps;
        let log_due = s % tc.log_every == 0 || eval_due;
        let checkpoint_due = s % checkpoint_every == 0 || s == tc.steps;
        let mut norm = f64::NAN;
        if log_due || checkpoint_due {
            norm = device::host_f64(&grad_norm);
            if let Err(reason) = flush(&mut state, &mut pending_loss, &mut pending_norm, &mut pending_steps) {
                bar.abandon();
                return Err(GdaError::Diverged { step: s, reason, checkpoint: last_ckpt });
            }
        }
        let step_time = step_start.elapsed().as_secs_f64();
        train_time += step_time;
        window_time += step_time;
        bar.set_position(state.step as u64);
        if log_due {
            let loss = state.loss_sum / state.loss_count.max(1) as f64;
            bar.set_message(progress_message(loss, train_tokens_now as f64 / train_time.max(1e-9)));
        }

        let score = (eval_due && writer).then(|| evaluate(&model));
        if let Some(sc) = score {
            state.record(sc);
        }
        state.elapsed_s = start_elapsed + clock.elapsed().as_secs_f64();
        if log_due {
            let tps = window_tokens as f64 / window_time.max(1e-9);
            let train_loss = state.loss_sum / state.loss_count as f64;
            let speed = Speed { tokens_per_s: tps, mfu: tps * flops_per_token / peak };
            if let Some(log) = log.as_mut() {
                write_row(
                    log,
                    &model,
                    s,
                    state.tokens_seen,
                    Some(train_loss),
                    score,
                    lr,
                    Some(norm),
                    Some(speed),
                    state.elapsed_s,
                    &bar,
                )?;
            }
            state.loss_sum = 0.0;
            state.loss_count = 0;
            window_tokens = 0;
            window_time = 0.0;
        }
        if !(log_due || checkpoint_due) {
            unlogged_host_reads += device::host_reads() - reads_before;
        }
        if checkpoint_due {
            if !params_finite(&vs) {
                bar.abandon();
                return Err(GdaError::Diverged {
                    step: s,
                    reason: "parameters became non-finite after the update".into(),
                    checkpoint: last_ckpt,
                });
            }
            if writer {
                last_ckpt = Some(checkpoint::save(&run_dir, &vs, &opt, &state, tc.keep_checkpoints)?);
            }
            saved_step = Some(s);
        }
    }
    bar.finish_and_clear();
    if let Some(g) = group.as_mut() {
        g.finish();
        errln!("{}", g.report(train_time));
    }

    let summary = RunSummary {
        name: spec.name.clone(),
        steps: state.step,
        tokens_seen: state.tokens_seen,
        parameters: start.parameters,
        val_loss: state.val_loss.unwrap_or(f64::NAN),
        val_bpb: state.val_bpb,
        val_acc: state.val_acc,
        elapsed_s: state.elapsed_s,
        tokens_per_s: if train_time > 0.0 { train_tokens_now as f64 / train_time } else { 0.0 },
        run_dir: run_dir.clone(),
        unlogged_host_reads,
    };
    if writer {
        let summary_path = run_dir.join(SUMMARY_FILE);
        atomic_write(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises"))
            .map_err(io("cannot write", &summary_path))?;
        draw_loss_curve(&run_dir)?;
    }
    Ok(summary)
}

/// Everything a rank settles before it meets the others: device, threads,
/// data, the run directory (rank 0 locks it), model, optimizer and the
/// checkpoint to continue from.
struct Setup {
    device: tch::Device,
    threads: usize,
    data: Dataset,
    run_dir: PathBuf,
    lock: Option<std::fs::File>,
    vs: VarStore,
    model: Model,
    opt: AdamW,
    state: TrainState,
    last_ckpt: Option<PathBuf>,
}

impl Setup {
    fn new(spec: &Spec, opts: &TrainOptions, ranks: &Ranks) -> Result<Setup, GdaError> {
        let tc = &spec.train;
        if !tc.batch_size.is_multiple_of(ranks.world) {
            return Err(spec.error(
                "train.batch_size",
                format!(
                    "{} is not a multiple of the {} ranks: each rank takes an equal slice of every micro-batch (batch_size is the global micro-batch)",
                    tc.batch_size, ranks.world
                ),
            ));
        }
        let device = ranks.device(device::select(&tc.device).map_err(|m| spec.error("train.device", m))?);
        device::check_threads(tc.threads).map_err(|m| spec.error("train.threads", m))?;
        check_memory(spec, device, tc.batch_size / ranks.world)?;
        let threads = device::set_threads(ranks.threads(tc.threads)).map_err(|m| spec.error("train.threads", m))?;
        let data = Dataset::load(spec)?;
        let run_dir = run_dir_for(spec, opts);
        // Verified before the run directory is touched: a damaged
        // checkpoint leaves it as it was.
        let last_ckpt = match opts.resume {
            true => checkpoint::resume_point(&run_dir, opts.resume_from.as_deref())?,
            false => None,
        };
        let lock = if ranks.rank == 0 { prepare_run_dir(spec, &run_dir, opts.resume)? } else { None };
        if let (Some(ckpt), Some(_), 0) = (&last_ckpt, &opts.resume_from, ranks.rank) {
            for moved in checkpoint::rewind(ckpt)? {
                errln!(
                    "--resume-from: set aside {moved} (after the checkpoint resumed from) in {}",
                    checkpoint::dir(&run_dir).join(checkpoint::SET_ASIDE_DIR).display()
                );
            }
        }

        // Model and optimizer, from the seed; a checkpoint then overwrites both.
        tch::manual_seed(spec.seed as i64);
        let (vs, model) = Model::build(&spec.model, device);
        let mut opt = AdamW::new(&vs, tc);
        let state = match &last_ckpt {
            Some(ckpt) => checkpoint::restore(ckpt, &vs, &mut opt)?,
            None => {
                if !tc.init.is_empty() {
                    checkpoint::load_weights(&vs, Path::new(&tc.init))?;
                }
                TrainState { spec_hash: spec.hash(), ..TrainState::default() }
            }
        };
        Ok(Setup { device, threads, data, run_dir, lock, vs, model, opt, state, last_ckpt })
    }
}

/// Forward and backward over the micro-batches of `step`, this rank's rows
/// `rows` of each; returns the step's mean loss as a 0-dim tensor (no host
/// sync).
fn accumulate_gradients(
    model: &Model,
    data: &Dataset,
    spec: &Spec,
    step: usize,
    rows: Range<usize>,
    device: tch::Device,
) -> Tensor {
    let tc = &spec.train;
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    for micro in 0..tc.grad_accum {
        let first = micro * tc.batch_size;
        let (x, y) = data.batch(spec, step, first + rows.start..first + rows.end, device);
        let loss = Model::loss(&model.forward(&x), &y) / tc.grad_accum as f64;
        loss.backward();
        loss_sum += loss.detach();
    }
    loss_sum
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
        let loss = accumulate_gradients(&self.model, self.data, self.spec, self.steps, 0..rows, self.device);
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

/// The bar's template: at most 77 columns with a million steps, a loss of
/// 10 or more, a 6-character tok/s and indicatif's longest ETA ("59 minutes"),
/// so it fits an 80-column terminal without wrapping.
pub const PROGRESS_TEMPLATE: &str = "{bar:16} {pos}/{len} | {msg} | ETA {eta}";

/// The progress bar's message: "loss 2.3456 | 12.3K tok/s".
pub fn progress_message(loss: f64, tokens_per_s: f64) -> String {
    format!("loss {loss:.4} | {} tok/s", human_count(tokens_per_s as usize))
}

fn progress_bar(steps: usize, at: usize, shown: bool) -> ProgressBar {
    let bar =
        if shown && std::io::stdout().is_terminal() { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template(PROGRESS_TEMPLATE).expect("valid template"));
    bar.set_position(at as u64);
    bar
}

/// Training throughput over the steps since the previous metrics row.
#[derive(Clone, Copy)]
struct Speed {
    tokens_per_s: f64,
    /// Model FLOP/s over the device's measured matmul peak.
    mfu: f64,
}

/// One metrics row, echoed as a log line when stdout is not a terminal.
#[allow(clippy::too_many_arguments)]
fn write_row(
    log: &mut MetricsLog,
    model: &Model,
    step: usize,
    tokens: u64,
    train_loss: Option<f64>,
    score: Option<Score>,
    lr: f64,
    grad_norm: Option<f64>,
    speed: Option<Speed>,
    elapsed_s: f64,
    bar: &ProgressBar,
) -> Result<(), GdaError> {
    let lambdas = model.lambdas();
    let mut row = vec![
        step.to_string(),
        tokens.to_string(),
        cell(train_loss),
        cell(score.map(|s| s.loss)),
        cell(score.and_then(|s| s.bpb.or(s.acc))),
        format!("{lr}"),
        cell(grad_norm),
    ];
    if !lambdas.is_empty() {
        row.push(format!("{}", lambdas.iter().sum::<f64>() / lambdas.len() as f64));
        row.extend(lambdas.iter().map(|l| format!("{l}")));
    }
    row.push(cell(speed.map(|s| s.tokens_per_s.round())));
    row.push(speed.map(|s| format!("{:.4}", s.mfu)).unwrap_or_default());
    row.push(format!("{elapsed_s:.3}"));
    log.row(&row)?;
    let mut line = format!("step {step}");
    if let Some(l) = train_loss {
        line += &format!(" | train {l:.4}");
    }
    if let Some(s) = score {
        line += &format!(" | val {:.4}", s.loss);
        if let Some(b) = s.bpb {
            line += &format!(" ({b:.4} bpb)");
        }
        if let Some(a) = s.acc {
            line += &format!(" (acc {a:.4})");
        }
    }
    if let Some(s) = speed {
        line += &format!(" | lr {lr:.2e} | {:.0} tok/s | MFU {:.1}%", s.tokens_per_s, 100.0 * s.mfu);
    }
    line += &format!(" | {elapsed_s:.1}s");
    // A failed write closes stdout for good; the loop then stops as for
    // Ctrl-C (`interrupted`).
    if bar.is_hidden() {
        outln!("{line}");
    } else {
        bar.suspend(|| outln!("{line}"));
    }
    Ok(())
}

//! `gda train`: one model, one run directory, the whole loop on one screen
//! ([`train`]); its parts are in `trainer.rs` (a step, its evaluation and
//! checkpoint, the stop), `step.rs` and `progress.rs`.
//!
//! Run directory layout (see docs/run-directory.md):
//! `spec.toml` (resolved), `manifest.json`, `metrics.csv`,
//! `checkpoints/`, and `summary.json` once the run has finished.

pub mod checkpoint;
pub mod dist;
pub mod metrics;
pub mod optim;
mod progress;
pub mod run_dir;
mod step;
mod trainer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use tch::nn::VarStore;

use self::checkpoint::TrainState;
use self::dist::{Collective, Ranks};
use self::optim::AdamW;
pub use self::progress::{progress_message, PROGRESS_TEMPLATE};
pub use self::run_dir::{draw_loss_curve, LOSS_CURVE_FILE};
pub use self::run_dir::{finished, Manifest, RunSummary};
use self::run_dir::{prepare_run_dir, run_dir_for};
pub use self::step::{estimate_rows, estimate_seconds, StepTimer};
use self::trainer::Trainer;
use crate::config::Spec;
use crate::data::Dataset;
use crate::device;
use crate::error::GdaError;
use crate::model::{self, Model};
use crate::util::host::fmt_bytes;
use crate::util::out::{self, errln};

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

/// Trains `spec`'s model in its run directory, as the only process or as
/// one rank of a distributed run: set up and meet the other ranks, then
/// step, evaluate and checkpoint until the last step or a stop.
pub fn train(spec: &Spec, opts: &TrainOptions) -> Result<RunSummary, GdaError> {
    let ranks = Ranks::of(opts.dist.as_ref());
    let (group, setup) = meet(spec, opts, &ranks)?;
    if setup.state.step >= spec.train.steps {
        if let Some(done) = finished(&setup.run_dir) {
            return Ok(done);
        }
    }
    let mut run = Trainer::begin(spec, opts, &ranks, setup, group)?;
    run.score_untrained()?;
    while run.state.step < spec.train.steps {
        if run.stop_due() {
            return Err(run.stop());
        }
        let done = run.step()?;
        run.evaluate_and_log(&done)?;
        run.checkpoint(&done)?;
    }
    run.finish()
}

/// Every rank sets up, then all meet (a rank that failed its setup tells
/// the others why), so no rank trains alone or waits for one that quit.
/// Returns the process group (None for a run of one process) and this
/// rank's setup.
fn meet(spec: &Spec, opts: &TrainOptions, ranks: &Ranks) -> Result<(Option<Collective>, Setup), GdaError> {
    let setup = Setup::new(spec, opts, ranks);
    let group = opts.dist.as_ref().map(|launch| {
        let set_up = setup.as_ref().map(|s| s.state.step).map_err(|e| e.to_string());
        let nccl = setup.as_ref().is_ok_and(|s| s.device.is_cuda());
        Collective::join(launch, spec, set_up, nccl, opts.dist_timeout)
    });
    // This rank's own error first: the others report it from the handshake.
    let setup = setup?;
    let group = group.transpose()?;
    Ok((group, setup))
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

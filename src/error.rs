//! Errors that carry a meaning for the user, each mapped to a documented exit
//! code (docs/exit-codes.md has the table).

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GdaError {
    /// The spec (or an override of it) is wrong.
    #[error("{file}: {}{msg}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Spec { file: String, key: Option<String>, msg: String },

    /// Input other than the spec is wrong: data, run directory, checkpoint.
    #[error("{0}")]
    Input(String),

    /// Reading or writing a file failed (disk full, permission, a vanished
    /// directory): not the user's input, so not exit code 2.
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },

    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: {reason}; {}", match checkpoint {
        Some(p) => format!("the last good checkpoint is kept at {}", p.display()),
        None => "no checkpoint had been written yet".to_string(),
    })]
    Diverged { step: usize, reason: String, checkpoint: Option<PathBuf> },

    /// `gda grow` built a model that does not compute its source's function.
    #[error("the grown model does not compute the source's function: max |logit difference| = {max_logit_diff:e} > tolerance {tolerance:e} (val loss: source {source_loss:.6}, grown {grown_loss:.6}); nothing was written")]
    NotPreserved { max_logit_diff: f64, tolerance: f64, source_loss: f64, grown_loss: f64 },

    /// A sweep or ablation finished, but some of its points failed.
    #[error("{failed} of {total} points failed (reasons in the summary); {}", dir.display())]
    PointsFailed { failed: usize, total: usize, dir: PathBuf },

    /// The cluster scheduler refused a submission; nothing was submitted.
    #[error("Slurm refused the submission (nothing was submitted; the batch script is {}); sbatch said:\n{stderr}", script.display())]
    Rejected { stderr: String, script: PathBuf },

    /// Another process holds the run directory's lock.
    #[error("run directory {} is in use: another gda train ({holder}) is training it; this one stops without training", run_dir.display())]
    Busy { run_dir: PathBuf, holder: String },

    /// Ctrl-C / SIGTERM / SIGHUP, or a closed stdout: a checkpoint was
    /// written, `--resume` continues.
    #[error("interrupted at step {step}; checkpoint written to {}; continue with the same command plus --resume in {}", checkpoint.display(), run_dir.display())]
    Interrupted { step: usize, checkpoint: PathBuf, run_dir: PathBuf },

    /// A sweep, ablation or growth comparison stopped by Ctrl-C / SIGTERM:
    /// each point in training was stopped (`stopped` says at which step it
    /// has a checkpoint); rerunning the command resumes.
    #[error("interrupted: {}; rerun the same command to resume {}", stopped.join("; "), dir.display())]
    ExperimentInterrupted { dir: PathBuf, stopped: Vec<String> },

    /// Trainers of an experiment were killed by a signal they could not
    /// handle (the OOM killer, kill -9): not failed points, unfinished ones;
    /// the other points were trained.
    #[error("{} of {total} points did not finish: {}; their checkpoints are kept: rerun the same command to resume them in {}", killed.len(), killed.join("; "), dir.display())]
    PointsKilled { dir: PathBuf, killed: Vec<String>, total: usize },

    /// Distributed training: a peer rank died, was killed or stopped
    /// answering (at the rendezvous or in a collective). The last
    /// checkpoint is kept; `--resume` continues, on any world size.
    #[error("rank {rank}: {msg}; the last checkpoint is kept: resume with --resume (on any number of ranks)")]
    PeerLost { rank: usize, msg: String },

    /// `gda train --nproc N`: some of the ranks it started failed (each has
    /// said why); the exit code is the first failing rank's own.
    #[error("{summary}")]
    RanksFailed { code: i32, summary: String },
}

/// Every exit code gda uses, with a one-line meaning for `--help` (the
/// table in docs/exit-codes.md says more; tests/docs.rs checks the two agree).
pub const EXIT_CODES: &[(i32, &str)] = &[
    (0, "success"),
    (1, "unexpected failure (a libtorch error, a bug)"),
    (2, "bad input (spec, data, arguments, run directory); nothing trained, written or submitted"),
    (3, "training diverged; the message gives the step; the last good checkpoint is kept"),
    (4, "some points of the experiment failed (reasons in the summary)"),
    (5, "grow: the grown model does not compute its source's function; nothing written"),
    (6, "Slurm refused the submission; nothing recorded as submitted"),
    (7, "the run directory is in use by another gda train"),
    (8, "I/O error reading or writing a file (named in the message)"),
    (9, "trainers of some points were killed by a signal; rerun to resume them"),
    (10, "distributed training: a peer rank died, stopped answering or timed out, or the store could not be met; the last checkpoint is kept"),
    (130, "interrupted (Ctrl-C, SIGTERM, SIGHUP, closed stdout); checkpointed, resumable"),
];

impl GdaError {
    pub fn exit_code(&self) -> i32 {
        match self {
            GdaError::Spec { .. } | GdaError::Input(_) => 2,
            GdaError::Diverged { .. } => 3,
            GdaError::PointsFailed { .. } => 4,
            GdaError::NotPreserved { .. } => 5,
            GdaError::Rejected { .. } => 6,
            GdaError::Busy { .. } => 7,
            GdaError::Io { .. } => 8,
            GdaError::PointsKilled { .. } => 9,
            GdaError::PeerLost { .. } => 10,
            GdaError::RanksFailed { code, .. } => *code,
            GdaError::Interrupted { .. } | GdaError::ExperimentInterrupted { .. } => 130,
        }
    }
}

pub fn input(msg: impl Into<String>) -> GdaError {
    GdaError::Input(msg.into())
}

/// A closure mapping an `io::Error` on `path` to [`GdaError::Io`], for
/// `map_err`: `what` is the verb phrase, e.g. "cannot write".
pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GdaError + 'a {
    move |source| GdaError::Io { what, path: path.to_path_buf(), source }
}

/// [`io`] for libtorch's file errors (safetensors reads and writes).
pub fn tch_io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(tch::TchError) -> GdaError + 'a {
    move |e| {
        let source = match e {
            tch::TchError::Io(e) => e,
            // tch keeps safetensors' io::Error inside a type gda cannot name
            // (safetensors is not a dependency); its text holds the OS error
            // code ("IoError(Os { code: 28, ...") that makes the message plain.
            other => {
                let text = other.to_string();
                let code = text.split("IoError(Os { code: ").nth(1).and_then(|t| t.split(',').next()?.parse().ok());
                code.map(std::io::Error::from_raw_os_error).unwrap_or_else(|| std::io::Error::other(text))
            }
        };
        GdaError::Io { what, path: path.to_path_buf(), source }
    }
}

//! gda: an experiment runner for Grouped Differential Attention transformers.
//!
//! The modules are layers, listed here from the bottom up; a module uses
//! only the ones above it in this list, never one below (tests/layers.rs
//! checks every `crate::` path, so no import circle can come back):
//!
//! 1. `util`, `error`: files written atomically, host facts; typed errors
//!    with their exit codes.
//! 2. `device`: device choice, CPU threads, compute dtype.
//! 3. `dist`: libtorch's c10d engine (Gloo, NCCL) through a small C++ shim:
//!    ranks from the launch environment, the rendezvous and handshake,
//!    bucketed all-reduce.
//! 4. `config`: the experiment spec (TOML schema, overrides, validation).
//! 5. `report`: presentation without domain knowledge: statistics, CSV
//!    tables, SVG charts, the rendering of eval tables.
//! 6. `model`: layers, attention, the language model, FLOPs.
//! 7. `data`: corpora and tokenizers, retrieval tasks, the batch order.
//! 8. `eval`: scoring a model (held-out loss, retrieval, attention analysis)
//!    and sampling from it.
//! 9. `train`: the training loop, optimizer, checkpoints, metrics, the run
//!    directory.
//! 10. `grow`: function-preserving growth of a trained model.
//! 11. `export`: a trained run in other tools' formats (Hugging Face
//!     transformers), one file per format.
//! 12. `experiment`: grids of runs (sweeps, ablations, growth comparisons),
//!     the local and Slurm launchers, summaries.
//! 13. `study`: the paper's whole study (`gda reproduce`): its stages as
//!     experiments, the verdict per claim, the report.
//! 14. `commands`: the command line, one file per subcommand; the only
//!     module that knows clap.

pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod grow;
pub mod model;
pub mod report;
pub mod study;
pub mod train;
pub mod util;

/// The layer order above, bottom first (read by tests/layers.rs).
pub const LAYERS: &[&str] = &[
    "util",
    "error",
    "device",
    "dist",
    "config",
    "report",
    "model",
    "data",
    "eval",
    "train",
    "grow",
    "export",
    "experiment",
    "study",
    "commands",
];

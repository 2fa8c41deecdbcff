//! gda: an experiment runner for Grouped Differential Attention transformers.
//!
//! The modules are layers, listed here from the bottom up; a module uses
//! only the ones above it in this list, never one below (tests/layers.rs
//! checks every `crate::` path, so no import circle can come back):
//!
//! 1. `util`, `error`: files written atomically, host facts; typed errors
//!    with their exit codes.
//! 2. `device`: device choice, CPU threads, compute dtype.
//! 3. `config`: the experiment spec (TOML schema, overrides, validation).
//! 4. `report`: presentation without domain knowledge: statistics, CSV
//!    tables, SVG charts, the rendering of eval tables.
//! 5. `model`: layers, attention, the language model, FLOPs.
//! 6. `data`: corpora and tokenizers, retrieval tasks, the batch order.
//! 7. `eval`: scoring a model (held-out loss, retrieval, attention analysis).
//! 8. `train`: the training loop, optimizer, checkpoints, metrics, the run
//!    directory.
//! 9. `grow`: function-preserving growth of a trained model.
//! 10. `export`: a trained run in other tools' formats (Hugging Face
//!     transformers), one file per format.
//! 11. `experiment`: grids of runs (sweeps, ablations, growth comparisons),
//!     the local and Slurm launchers, summaries.
//! 12. `commands`: the command line, one file per subcommand; the only
//!     module that knows clap.

pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod grow;
pub mod model;
pub mod report;
pub mod train;
pub mod util;

/// The layer order above, bottom first (read by tests/layers.rs).
pub const LAYERS: &[&str] = &[
    "util",
    "error",
    "device",
    "config",
    "report",
    "model",
    "data",
    "eval",
    "train",
    "grow",
    "export",
    "experiment",
    "commands",
];

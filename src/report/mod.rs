//! Presentation without domain knowledge: statistics over seeds, SVG
//! charts, TensorBoard event files, and the rendering of `gda eval`'s tables.

pub mod eval;
pub mod plot;
pub mod stats;
pub mod table;
pub mod tfevents;
pub mod units;

pub use stats::mean_std;

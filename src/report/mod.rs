//! Presentation without domain knowledge: statistics over seeds, SVG
//! charts, TensorBoard event files, and the rendering of `gda eval`'s tables.

pub mod eval;
pub mod plot;
pub mod table;
pub mod tfevents;

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

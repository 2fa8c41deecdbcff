//! Before a grid trains: the checks that refuse it before anything is
//! written, and the dry run's table of points, FLOPs and estimated time.

use super::{cost, Point};
use crate::config::{grid_value_text, AttentionKind, Spec};
use crate::data::Dataset;
use crate::error::GdaError;
use crate::report::units::{fmt_duration, human_count, si_flops};
use crate::{device, train};

/// What a dry run estimated for one grid.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate {
    pub points: usize,
    /// Training FLOPs of every point together.
    pub flops: f64,
    /// Wall time at the dry run's concurrency.
    pub seconds: f64,
}

/// Refuses threads, a device and (on a CPU) a model or batch this machine
/// cannot hold, before the experiment directory exists (each trainer would
/// refuse them later, after the earlier points trained). A GPU is checked by
/// each trainer itself (device::check_memory allocates on it). `local`:
/// the points train here (not on Slurm's nodes).
pub fn preflight(spec: &Spec, points: &[Point], dry_run: bool, local: bool) -> Result<(), GdaError> {
    if !(dry_run || local) {
        return Ok(());
    }
    device::check_threads(spec.train.threads).map_err(|m| spec.error("train.threads", m))?;
    let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    if !device.is_cuda() {
        for p in points {
            // A dry run times steps on smaller batches than training.
            let rows = if dry_run { train::estimate_rows(&p.spec) } else { p.spec.train.batch_size };
            train::check_memory(&p.spec, device, rows)?;
        }
    }
    Ok(())
}

pub fn seeds_of(spec: &Spec) -> usize {
    spec.sweep.seeds.len().max(1)
}

/// `model.d_model = 32, 64 × train.lr = 0.001, 0.003`.
pub fn describe_grid(spec: &Spec) -> String {
    spec.sweep
        .grid
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.iter().map(grid_value_text).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(" × ")
}

/// Prints the grid with each point's allocation and cost, and a time
/// estimate from a few timed steps per architecture (or, with `rate`, from
/// its FLOPs at that many FLOP/s: points that train on other machines);
/// trains nothing.
pub fn dry_run(
    spec: &Spec,
    points: &[Point],
    corpus: &Dataset,
    jobs: usize,
    rate: Option<f64>,
) -> Result<Estimate, GdaError> {
    let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    let threads = |n| device::set_threads(n).map_err(|m| spec.error("train.threads", m));
    let cores = threads(spec.train.threads)?;
    if !device.is_cuda() {
        threads((cores / jobs.max(1)).max(1))?;
    }
    println!("| point | variant | ratio | H_s | H_n | K/V | K2 | heads | head_dim | params | attn MFLOP/tok | train FLOP | est. time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut cache: Vec<(String, f64)> = Vec::new();
    let mut total = 0.0;
    for p in points {
        let arch = serde_json::to_string(&p.spec.model).expect("config serialises");
        let secs = match cache.iter().find(|c| c.0 == arch) {
            _ if rate.is_some() => cost(p).2 / rate.unwrap_or(1.0),
            Some(c) => c.1,
            None => {
                let s = train::estimate_seconds(&p.spec, corpus, device);
                cache.push((arch, s));
                s
            }
        };
        total += secs;
        println!("{}", point_row(p, secs));
    }
    let flops: f64 = points.iter().map(|p| cost(p).2).sum();
    println!("\n{}{} points | {} training compute in all", product(spec, points), points.len(), si_flops(flops));
    match rate {
        Some(r) => println!(
            "{} points | estimated {} at {} per point in training FLOPs alone (concurrency {})",
            points.len(),
            fmt_duration(total / jobs.max(1) as f64),
            si_flops(r).replace("FLOP", "FLOP/s"),
            jobs.max(1)
        ),
        None => println!(
            "{} points on {} | estimated {} with --jobs {} (from timed steps, evaluation included)",
            points.len(),
            device::describe(device),
            fmt_duration(total / jobs.max(1) as f64),
            jobs.max(1)
        ),
    }
    Ok(Estimate { points: points.len(), flops, seconds: total / jobs.max(1) as f64 })
}

/// A point's line in the dry run's table: its allocation, cost and
/// estimated time.
fn point_row(p: &Point, secs: f64) -> String {
    let m = &p.spec.model;
    let (params, attn, flops) = cost(p);
    let gda = m.attention == AttentionKind::Gda;
    let o = |b: bool, v: usize| if b { v.to_string() } else { "–".into() };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
        p.name,
        p.variant.label(),
        p.ratio().map(|r| format!("{r}:1")).unwrap_or_else(|| "–".into()),
        o(gda, m.signal_heads),
        o(gda, m.noise_heads),
        m.kv_heads,
        o(gda, m.noise_kv_heads),
        o(!gda, m.heads),
        m.head_dim,
        human_count(params),
        attn / 1e6,
        si_flops(flops),
        fmt_duration(secs)
    )
}

/// How the axes make the points (`3 ratios × 2 seeds + 2 baseline = `);
/// empty for points not made from ratios (grown models), which are not a
/// product of axes.
fn product(spec: &Spec, points: &[Point]) -> String {
    let sw = &spec.sweep;
    let cells = spec.grid_cells().len();
    let variants =
        points.iter().filter(|p| p.requested.is_some()).count() / (cells * sw.ratios.len() * seeds_of(spec)).max(1);
    let baseline = if sw.baseline { format!(" + {} baseline", cells * seeds_of(spec)) } else { String::new() };
    let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    let (ratios, seeds) = (n(sw.ratios.len(), "ratio"), n(seeds_of(spec), "seed"));
    let product = if sw.grid.is_empty() {
        format!("{ratios} × {seeds}")
    } else {
        format!("{} ({}) × {ratios} × {seeds}", n(cells, "grid cell"), describe_grid(spec))
    };
    let variants = if variants > 1 { format!(" × {variants} variants") } else { String::new() };
    if points.iter().any(|p| p.requested.is_some()) {
        format!("{product}{variants}{baseline} = ")
    } else {
        String::new()
    }
}

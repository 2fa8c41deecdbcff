//! `gda bench`: time training steps of a spec (scripts/bench.sh compares
//! the result against PyTorch).

use std::path::PathBuf;

use clap::Args;

use super::args::SpecArgs;
use crate::data::Dataset;
use crate::error::io;
use crate::model::{self, flops};
use crate::util::host::peak_rss_mb;
use crate::{device, train};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Optimizer steps per timed repetition.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also write the resolved spec here (the PyTorch side reads it).
    #[arg(long)]
    pub write_spec: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let spec = args.spec.load(None)?;
    if let Some(p) = &args.write_spec {
        std::fs::write(p, spec.to_toml()).map_err(io("cannot write", p))?;
    }
    let device = device::select(&spec.train.device).map_err(|m| spec.error("train.device", m))?;
    let threads = device::set_threads(spec.train.threads).map_err(|m| spec.error("train.threads", m))?;
    let corpus = Dataset::load(&spec)?;
    let tc = &spec.train;
    let mut timer = train::StepTimer::new(&spec, &corpus, device);
    for _ in 0..args.warmup {
        timer.step(tc.batch_size);
    }
    let tokens = (args.steps * tc.batch_size * tc.context * tc.grad_accum) as f64;
    let mut rates: Vec<f64> = (0..args.repeats.max(1))
        .map(|_| tokens / (0..args.steps.max(1)).map(|_| timer.step(tc.batch_size)).sum::<f64>())
        .collect();
    let all = rates.clone();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let out = serde_json::json!({
        "impl": "gda",
        "device": device::describe(device),
        "threads": threads,
        "parameters": model::param_count(&spec.model),
        "train_flops_per_token": flops::train_flops_per_token(&spec.model, tc.context),
        "tokens_per_s": all,
        "median_tokens_per_s": median,
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{out}");
    Ok(())
}

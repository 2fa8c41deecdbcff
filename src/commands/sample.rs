//! `gda sample`: what a trained text run writes after a prompt.

use std::path::PathBuf;

use clap::Args;

use crate::eval::sample::Sampling;
use crate::experiment::sample::{sample, SampleOptions};

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A text run directory (its newest checkpoint) or one of its checkpoint directories.
    #[arg(value_name = "DIR")]
    pub run: PathBuf,
    /// The text to continue (encoded with the run's tokenizer).
    #[arg(long, allow_hyphen_values = true)]
    pub prompt: String,
    /// Tokens to generate after the prompt.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy (the most likely token every step).
    #[arg(long, default_value_t = 0.8, value_name = "T", allow_negative_numbers = true)]
    pub temperature: f64,
    /// Draw only from the K most likely tokens (default: all).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Seed of the draws: the same seed, run and options write the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: auto, cpu, cuda, cuda:N (default: the run's train.device).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads, 0 = all cores (default: the run's train.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// End the text at the first occurrence of TEXT in what is generated
    /// (kept, as Hugging Face generate's stop strings keep it); may be given
    /// more than once, the earliest wins.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub stop: Vec<String>,
    /// Recompute the whole window at every step instead of using the KV
    /// cache (for scripts/bench_sample.sh and the tests).
    #[arg(long, hide = true)]
    pub no_cache: bool,
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    let sampling = Sampling { temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    let opts = SampleOptions {
        run: args.run,
        prompt: args.prompt,
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop: args.stop,
        device: args.device,
        threads: args.threads,
        no_cache: args.no_cache,
    };
    Ok(sample(&opts)?)
}

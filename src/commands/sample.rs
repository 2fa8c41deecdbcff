//! `gda sample`: what a trained text run writes after a prompt.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::config::TaskKind;
use crate::data::Tokenizer;
use crate::device;
use crate::error::{input, GdaError};
use crate::eval::sample::{generate, Sampling};
use crate::model::Model;
use crate::train::checkpoint;
use crate::train::run_dir::find_source;
use crate::util::out::errln;

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
    /// Recompute the whole window at every step instead of using the KV
    /// cache (for scripts/bench_sample.sh and the tests).
    #[arg(long, hide = true)]
    pub no_cache: bool,
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    sample(&args)?;
    Ok(())
}

fn sample(args: &SampleArgs) -> Result<(), GdaError> {
    if !args.temperature.is_finite() || args.temperature < 0.0 {
        return Err(input(format!("--temperature {}: allowed: 0 (greedy) or a positive number", args.temperature)));
    }
    if args.top_k == Some(0) {
        return Err(input("--top-k 0 would leave no token to draw; allowed: a positive count"));
    }
    if args.prompt.is_empty() {
        return Err(input("--prompt is empty; allowed: text of at least one token for the model to continue"));
    }
    let src = find_source(&args.run)?;
    let dir = args.run.display();
    let spec = &src.spec;
    if spec.data.task != TaskKind::Text {
        return Err(input(format!(
            "run {dir} was trained on the {} task, not on text; allowed: a run with data.task = \"text\"",
            spec.data.task.name()
        )));
    }
    let tok = Tokenizer::new(&spec.data.tokenizer)?;
    let prompt = tok.encode(args.prompt.as_bytes());
    let context = spec.train.context;
    if prompt.is_empty() {
        // A tokenizer.json may normalise some text away entirely (a
        // whitespace-only prompt through a stripping normalizer).
        return Err(input(format!(
            "--prompt {:?} encodes to no tokens with {}; allowed: text the tokenizer keeps",
            args.prompt,
            tok.name()
        )));
    }
    if prompt.len() > context {
        return Err(input(format!(
            "--prompt is {} tokens, longer than the context of run {dir} (train.context = {context}); allowed: at most {context} tokens",
            prompt.len()
        )));
    }
    let dev = args.device.clone().unwrap_or_else(|| spec.train.device.clone());
    let device = device::select(&dev).map_err(|m| input(format!("device {dev}: {m}")))?;
    let threads = args.threads.unwrap_or(spec.train.threads);
    device::set_threads(threads).map_err(|m| input(format!("threads {threads}: {m}")))?;
    let (vs, model) = Model::build(&spec.model, device);
    checkpoint::load_weights(&vs, &src.checkpoint.join(checkpoint::MODEL_FILE))?;
    // Ids past the tokenizer's vocabulary (a model may have more) are never drawn.
    let vocab = tok.vocab_size().min(spec.model.vocab_size);
    let sampling = Sampling { temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    let out = generate(&model, &prompt, args.max_new_tokens, context, vocab, &sampling, !args.no_cache, device, |_| {});
    let mut text = args.prompt.as_bytes().to_vec();
    text.extend(tok.decode_bytes(&out.tokens));
    text.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    // A reader that went away (`| head`) ends the process by SIGPIPE (main.rs).
    let _ = stdout.write_all(&text).and_then(|_| stdout.flush());
    let restarts = match out.restarts {
        0 => String::new(),
        n => format!(" | window restarted {n}× (context {context})"),
    };
    errln!(
        "sample: {} tokens in {:.2} s ({:.1} tokens/s, {}) | prompt {} tokens | {} | step {} of {dir}{restarts}",
        out.tokens.len(),
        out.secs,
        out.tokens.len() as f64 / out.secs.max(1e-9),
        if args.no_cache { "no cache" } else { "KV cache" },
        prompt.len(),
        device::describe(device),
        src.step,
    );
    Ok(())
}

//! `gda sample`: what a trained text run writes after a prompt, on stdout,
//! with one line of speed and context on stderr.

use std::io::Write;
use std::path::PathBuf;

use crate::config::TaskKind;
use crate::data::Tokenizer;
use crate::device;
use crate::error::{input, GdaError};
use crate::eval::sample::{generate, stop_end, Generated, Sampling};
use crate::model::Model;
use crate::train::checkpoint;
use crate::train::run_dir::{find_source, Source};
use crate::util::out::errln;

/// What `gda sample` was asked (its options, without clap).
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// A run directory or one of its checkpoint directories.
    pub run: PathBuf,
    pub prompt: String,
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Texts that end the generation at their first occurrence (kept).
    pub stop: Vec<String>,
    /// None: the run's own `train.device` and `train.threads`.
    pub device: Option<String>,
    pub threads: Option<usize>,
    /// Recompute the whole window at every step (for the benchmarks and tests).
    pub no_cache: bool,
}

/// Samples from the run's newest (or the named) checkpoint and writes the
/// prompt with its continuation to stdout.
pub fn sample(opts: &SampleOptions) -> Result<(), GdaError> {
    check_options(opts)?;
    let src = find_source(&opts.run)?;
    let tok = Tokenizer::new(&src.spec.data.tokenizer)?;
    let prompt = encode_prompt(opts, &src, &tok)?;
    let dev = opts.device.clone().unwrap_or_else(|| src.spec.train.device.clone());
    let device = device::select(&dev).map_err(|m| input(format!("device {dev}: {m}")))?;
    let threads = opts.threads.unwrap_or(src.spec.train.threads);
    device::set_threads(threads).map_err(|m| input(format!("threads {threads}: {m}")))?;
    let (vs, model) = Model::build(&src.spec.model, device);
    checkpoint::load_weights(&vs, &src.checkpoint.join(checkpoint::MODEL_FILE))?;
    // Ids past the tokenizer's vocabulary (a model may have more) are never drawn.
    let vocab = tok.vocab_size().min(src.spec.model.vocab_size);
    let context = src.spec.train.context;
    // A stop string may span tokens, so the text so far is decoded whole.
    let (mut so_far, mut stopped) = (Vec::new(), None);
    let on_token = |t: u32| {
        if opts.stop.is_empty() {
            return true;
        }
        so_far.push(t);
        stopped = stop_end(&tok.decode_bytes(&so_far), &opts.stop);
        stopped.is_none()
    };
    let out = generate(
        &model,
        &prompt,
        opts.max_new_tokens,
        context,
        vocab,
        &opts.sampling,
        !opts.no_cache,
        device,
        on_token,
    );
    let mut text = opts.prompt.as_bytes().to_vec();
    let mut new = tok.decode_bytes(&out.tokens);
    new.truncate(stopped.unwrap_or(new.len()));
    text.extend(new);
    text.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    // A reader that went away (`| head`) ends the process by SIGPIPE (main.rs).
    let _ = stdout.write_all(&text).and_then(|_| stdout.flush());
    summarise(opts, &src, &out, prompt.len(), device, stopped.is_some());
    Ok(())
}

fn check_options(opts: &SampleOptions) -> Result<(), GdaError> {
    let t = opts.sampling.temperature;
    if !t.is_finite() || t < 0.0 {
        return Err(input(format!("--temperature {t}: allowed: 0 (greedy) or a positive number")));
    }
    if opts.sampling.top_k == Some(0) {
        return Err(input("--top-k 0 would leave no token to draw; allowed: a positive count"));
    }
    if opts.stop.iter().any(String::is_empty) {
        return Err(input("--stop is empty; allowed: text of at least one byte to stop at"));
    }
    if opts.prompt.is_empty() {
        return Err(input("--prompt is empty; allowed: text of at least one token for the model to continue"));
    }
    Ok(())
}

/// The prompt's ids: a text run's, at least one, within its context.
fn encode_prompt(opts: &SampleOptions, src: &Source, tok: &Tokenizer) -> Result<Vec<u32>, GdaError> {
    let (spec, dir) = (&src.spec, opts.run.display());
    if spec.data.task != TaskKind::Text {
        return Err(input(format!(
            "run {dir} was trained on the {} task, not on text; allowed: a run with data.task = \"text\"",
            spec.data.task.name()
        )));
    }
    let prompt = tok.encode(opts.prompt.as_bytes());
    let context = spec.train.context;
    if prompt.is_empty() {
        // A tokenizer.json may normalise some text away entirely (a
        // whitespace-only prompt through a stripping normalizer).
        return Err(input(format!(
            "--prompt {:?} encodes to no tokens with {}; allowed: text the tokenizer keeps",
            opts.prompt,
            tok.name()
        )));
    }
    if prompt.len() > context {
        return Err(input(format!(
            "--prompt is {} tokens, longer than the context of run {dir} (train.context = {context}); allowed: at most {context} tokens",
            prompt.len()
        )));
    }
    Ok(prompt)
}

/// The stderr line: speed, decoder, prompt, device, checkpoint, and why
/// the text ended where it did.
fn summarise(opts: &SampleOptions, src: &Source, out: &Generated, prompt: usize, device: tch::Device, stopped: bool) {
    let mut notes = match out.restarts {
        0 => String::new(),
        n => format!(" | window restarted {n}× (context {})", src.spec.train.context),
    };
    if stopped {
        notes.push_str(" | ended at --stop");
    }
    errln!(
        "sample: {} tokens in {:.2} s ({:.1} tokens/s, {}) | prompt {prompt} tokens | {} | step {} of {}{notes}",
        out.tokens.len(),
        out.secs,
        out.tokens.len() as f64 / out.secs.max(1e-9),
        if opts.no_cache { "no cache" } else { "KV cache" },
        device::describe(device),
        src.step,
        opts.run.display(),
    );
}

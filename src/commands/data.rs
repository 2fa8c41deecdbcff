//! `gda data`: prepare raw text into token shards, train a BPE tokenizer,
//! inspect a data directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::SpecArgs;
use crate::config::TokenizerKind;
use crate::data::{corpus, detect, made, prepare, tokenizer, Tokenizer};
use crate::error::{input, io};
use crate::util::fs::atomic_write;

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Tokenize raw text (a file or a directory) once into gda token shards.
    Prepare(PrepareArgs),
    /// Train a byte-level BPE tokenizer (Hugging Face tokenizers) on the
    /// training split of a text and write its tokenizer.json.
    TrainTokenizer(TrainTokenizerArgs),
    /// Show what a data directory holds: format, tokenizer, tokens per split,
    /// shards, and a decoded sample.
    Inspect(InspectArgs),
    /// Build two four-way benchmark tasks from the held-out split of a
    /// spec's corpus (a last-word cloze and a choice of continuation), as
    /// generic JSONL for `gda eval --suite bench --tasks DIR`.
    MakeTasks(MakeTasksArgs),
}

#[derive(Debug, Args)]
pub struct MakeTasksArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The directory to write corpus_cloze.jsonl and corpus_choice.jsonl into.
    #[arg(long)]
    pub out: PathBuf,
    /// Items per task (fewer when the held-out split is too short).
    #[arg(long, default_value_t = 500)]
    pub items: usize,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Text file or directory ("shakespeare": the default corpus).
    #[arg(long)]
    pub data: PathBuf,
    /// bytes, gpt2, or a path to a Hugging Face tokenizer.json.
    #[arg(long, default_value = "bytes", value_parser = parse_tokenizer)]
    pub tokenizer: TokenizerKind,
    /// The new directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Share held out for validation (whole files of a directory; the end of a single file).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Tokenizer threads, 0 = all cores (the output does not depend on it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct TrainTokenizerArgs {
    /// Text file or directory; its training split is learned from.
    #[arg(long)]
    pub data: PathBuf,
    /// Vocabulary size (at least 256).
    #[arg(long)]
    pub vocab: usize,
    /// The tokenizer.json to write (name ending in .json).
    #[arg(long)]
    pub out: PathBuf,
    /// Share held out for validation, as in prepare (not learned from).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A prepared directory, a directory of nanoGPT or llm.c shards, or raw text.
    pub dir: PathBuf,
    /// Tokenizer of nanoGPT/llm.c shards (default gpt2) or raw text (default bytes).
    #[arg(long, value_parser = parse_tokenizer)]
    pub tokenizer: Option<TokenizerKind>,
}

fn parse_tokenizer(s: &str) -> Result<TokenizerKind, String> {
    TokenizerKind::parse(s)
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Prepare(a) => {
            let start = std::time::Instant::now();
            let meta = prepare::prepare_dir(&a.data, &a.tokenizer, &a.out, a.val_fraction, a.threads)?;
            let secs = start.elapsed().as_secs_f64();
            let bytes = meta.train.text_bytes + meta.val.text_bytes;
            println!(
                "prepared {}: tokenizer {} (vocab {}), train {} tokens, val {} tokens, {:.1} MB in {secs:.1}s ({:.1} MB/s)",
                a.out.display(),
                meta.tokenizer,
                meta.vocab_size,
                meta.train.tokens,
                meta.val.tokens,
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / secs.max(1e-9)
            );
            Ok(())
        }
        DataCommand::TrainTokenizer(a) => {
            if a.out.extension().is_none_or(|e| e != "json") {
                return Err(input(format!("--out {}: allowed: a file name ending in .json", a.out.display())).into());
            }
            if a.out.exists() {
                return Err(input(format!("{} already exists; allowed: a new file for --out", a.out.display())).into());
            }
            let path = crate::data::corpus_path(&a.data.to_string_lossy())?;
            if !matches!(detect::detect(&path)?, detect::Detected::Text) {
                return Err(input(format!("{} holds token shards; allowed: raw text", path.display())).into());
            }
            let plan = prepare::TextPlan::new(&path, a.val_fraction)?;
            let json = tokenizer::train_bpe(plan.train_texts(), a.vocab)?;
            atomic_write(&a.out, json.as_bytes()).map_err(io("cannot write", &a.out))?;
            let tok = Tokenizer::new(&TokenizerKind::Json(a.out.display().to_string()))?;
            println!("wrote {} (byte-level BPE, vocab {})", a.out.display(), tok.vocab_size());
            Ok(())
        }
        DataCommand::Inspect(a) => {
            print!("{}", corpus::inspect(&a.dir, a.tokenizer.as_ref())?);
            Ok(())
        }
        DataCommand::MakeTasks(a) => {
            if a.items == 0 {
                return Err(input("--items 0 would write empty tasks; allowed: a positive count").into());
            }
            let spec = a.spec.load(None)?;
            if spec.data.task != crate::config::TaskKind::Text {
                return Err(input(
                    "gda data make-tasks builds tasks from text; allowed: a spec with data.task = \"text\"",
                )
                .into());
            }
            let text = made::held_out_text(&spec.data, spec.train.threads)?;
            for p in made::write_tasks(&a.out, &text, a.items, spec.seed, made::Sizes::for_context(spec.train.context))?
            {
                let n = std::fs::read_to_string(&p).map_err(io("cannot read", &p))?.lines().count();
                println!("wrote {} ({n} items)", p.display());
            }
            Ok(())
        }
    }
}

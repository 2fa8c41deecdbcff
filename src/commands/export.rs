//! `gda export`: a trained run in a format other tools load (`--format hf`:
//! Hugging Face transformers).

use std::path::PathBuf;

use clap::Args;

use crate::export::{self, ExportOptions, Format};
use crate::util::out::outln;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run directory (its newest checkpoint) or checkpoint directory to export.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Output format; allowed: hf (a transformers folder: config.json,
    /// model.safetensors, modeling code, tokenizer, model card).
    #[arg(long, default_value = "hf")]
    pub format: String,
    /// Folder to write (must be new or empty unless --force).
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Replace OUT if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let opts = ExportOptions { from: args.dir, format: Format::parse(&args.format)?, out: args.out, force: args.force };
    let done = export::export(&opts)?;
    outln!(
        "export {} (step {}) → {} ({}): {} files, {:.1} MB: {}",
        done.source.run_dir.display(),
        done.source.step,
        done.out.display(),
        args.format,
        done.files.len(),
        done.bytes as f64 / 1e6,
        done.files.join(", ")
    );
    outln!(
        "load it with AutoModelForCausalLM.from_pretrained(\"{}\", trust_remote_code=True) and AutoTokenizer.from_pretrained(\"{}\")",
        done.out.display(),
        done.out.display()
    );
    Ok(())
}

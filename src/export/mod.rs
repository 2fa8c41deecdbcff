//! Exporting a trained run to the formats other tools load, one file per
//! format: `hf` (Hugging Face transformers, `hf.rs`).
//!
//! An export is written into `<OUT>.partial` beside OUT and renamed into
//! place at the end, so a failed export leaves no half-written folder at OUT.

pub mod hf;

use std::path::{Path, PathBuf};

use crate::error::{input, io, GdaError};
use crate::train::run_dir::{find_source, Source};
use crate::util::fs::sync_dir;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A folder `transformers` loads with `AutoModelForCausalLM` and
    /// `AutoTokenizer` (`trust_remote_code=True`).
    Hf,
}

impl Format {
    pub const ALLOWED: &'static str = "hf";

    pub fn parse(s: &str) -> Result<Format, GdaError> {
        match s {
            "hf" => Ok(Format::Hf),
            other => Err(input(format!("unknown export format `{other}`; allowed: {}", Format::ALLOWED))),
        }
    }
}

pub struct ExportOptions {
    /// A run directory (its newest checkpoint) or a checkpoint directory.
    pub from: PathBuf,
    pub format: Format,
    pub out: PathBuf,
    /// Replace an OUT that exists and is not empty.
    pub force: bool,
}

/// What an export wrote.
pub struct Exported {
    pub source: Source,
    pub out: PathBuf,
    /// File names inside `out`, sorted.
    pub files: Vec<String>,
    pub bytes: u64,
}

/// Exports `opts.from` into `opts.out`; bad input (not a run, no checkpoint,
/// an OUT in the way) is refused before anything is written.
pub fn export(opts: &ExportOptions) -> Result<Exported, GdaError> {
    let source = find_source(&opts.from)?;
    check_out(&opts.out, &source, opts.force)?;
    let name = opts.out.file_name().ok_or_else(|| {
        input(format!("--out {} names no directory; allowed: a path ending in a directory name", opts.out.display()))
    })?;
    let partial = opts.out.with_file_name(format!("{}.partial", name.to_string_lossy()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io("cannot remove", &partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io("cannot create", &partial))?;
    let written = match opts.format {
        Format::Hf => hf::write(&source, &partial),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out).map_err(io("cannot replace", &opts.out))?;
    }
    std::fs::rename(&partial, &opts.out).map_err(io("cannot rename into place", &opts.out))?;
    sync_dir(&opts.out).map_err(io("cannot sync", &opts.out))?;
    let mut files = Vec::new();
    let mut bytes = 0;
    for entry in std::fs::read_dir(&opts.out).map_err(io("cannot read", &opts.out))? {
        let entry = entry.map_err(io("cannot read", &opts.out))?;
        bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(entry.file_name().to_string_lossy().into_owned());
    }
    files.sort();
    Ok(Exported { source, out: opts.out.clone(), files, bytes })
}

/// OUT may be missing or an empty directory; with `force`, any directory
/// except one that holds the run being exported (replacing it would delete
/// the weights being read).
fn check_out(out: &Path, source: &Source, force: bool) -> Result<(), GdaError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(input(format!(
            "--out {} exists and is not a directory; allowed: a new or empty directory",
            out.display()
        )));
    }
    let empty = std::fs::read_dir(out).map_err(io("cannot read", out))?.next().is_none();
    if empty {
        return Ok(());
    }
    if !force {
        return Err(input(format!(
            "--out {} exists and is not empty; allowed: a new or empty directory, or --force to replace it",
            out.display()
        )));
    }
    let abs_out = crate::util::fs::absolute(out).map_err(io("cannot resolve", out))?;
    if source.run_dir.starts_with(&abs_out) || source.checkpoint.starts_with(&abs_out) {
        return Err(input(format!(
            "--out {} holds the run being exported ({}); --force would delete it; allowed: a directory outside the run",
            out.display(),
            source.run_dir.display()
        )));
    }
    Ok(())
}

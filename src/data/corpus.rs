//! Text corpora and token shards (detected by format, raw text prepared into
//! the cache once), the deterministic training batch order and the fixed
//! evaluation windows.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::detect::{corpus_path, detect, Detected};
use super::prepare::{self, Meta, TextPlan};
use super::rng::splitmix64;
use super::shards::{self, Format, Split};
use super::tokenizer::Tokenizer;
use crate::config::{DataConfig, Spec, TokenizerKind};
use crate::error::{input, io, GdaError};

/// Where the setup keeps libtorch and corpora (`util::host::cache_dir`).
pub use crate::util::host::cache_dir;

/// How a corpus was found and read, for the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// What `data.corpus` named: text, gda, nanogpt or llmc.
    pub format: Format,
    pub path: String,
    /// The prepared directory read (raw text: its cache entry).
    pub shards: String,
    pub tokenizer: String,
    pub tokenizer_hash: String,
    pub vocab_size: usize,
    /// Said when the shards carry no tokenizer identity and one is assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_note: Option<String>,
}

pub struct Corpus {
    pub train: Split,
    pub val: Split,
    /// Files (or the one file) each split came from, for the run manifest.
    pub train_sources: Vec<String>,
    pub val_sources: Vec<String>,
    pub info: DataInfo,
}

/// The shards of a gda directory, by split.
fn gda_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>, GdaError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&format!("{split}_")) && n.ends_with(".bin")
            })
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(input(format!("{}: a gda directory without {split}_*.bin shards", dir.display())));
    }
    Ok(v)
}

/// The byte table of the gda directory `dir`, which must name `tok`.
fn checked_table(
    dir: &Path,
    tok: &Tokenizer,
    spec_tokenizer: &str,
) -> Result<(shards::Header, Arc<Vec<u16>>), GdaError> {
    let table_path = dir.join(shards::BYTE_TABLE);
    if !table_path.is_file() {
        return Err(input(format!(
            "{}: gda shards without their byte-length table {}; prepare the directory again with `gda data prepare`",
            dir.display(),
            shards::BYTE_TABLE
        )));
    }
    let (header, table) = shards::read_byte_table(&table_path)?;
    if header.tokenizer_hash != tok.hash() {
        return Err(input(format!(
            "{} was prepared with tokenizer {} (vocab {}), but data.tokenizer is {spec_tokenizer} ({}, vocab {}); set data.tokenizer to the directory's tokenizer or prepare the text again",
            dir.display(),
            header.tokenizer,
            header.vocab,
            tok.name(),
            tok.vocab_size()
        )));
    }
    Ok((header, Arc::new(table)))
}

/// Opens a gda directory for `tok`: its byte table must name the same tokenizer.
pub fn open_gda_dir(
    dir: &Path,
    tok: &Tokenizer,
    spec_tokenizer: &str,
) -> Result<(Split, Split, Option<Meta>), GdaError> {
    let (header, table) = checked_table(dir, tok, spec_tokenizer)?;
    let train = shards::open_gda(&gda_files(dir, "train")?, table.clone(), &header)?;
    let val = shards::open_gda(&gda_files(dir, "val")?, table, &header)?;
    let meta_path = dir.join(shards::META);
    let meta = match std::fs::read(&meta_path) {
        Ok(b) => Some(
            serde_json::from_slice::<Meta>(&b)
                .map_err(|e| input(format!("{}: not a gda meta.json: {e}", meta_path.display())))?,
        ),
        Err(_) => None,
    };
    Ok((train, val, meta))
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect()
}

impl Corpus {
    /// Opens the corpus `cfg` names: raw text is prepared into the cache
    /// once (with `threads` tokenizer threads, 0 = all cores) and read from
    /// there like any prepared directory.
    pub fn load(cfg: &DataConfig, threads: usize) -> Result<Corpus, GdaError> {
        let path = corpus_path(&cfg.corpus)?;
        let tok = Tokenizer::new(&cfg.tokenizer)?;
        let mut info = DataInfo {
            format: Format::Text,
            path: path.display().to_string(),
            shards: path.display().to_string(),
            tokenizer: tok.name(),
            tokenizer_hash: shards::hex(&tok.hash()),
            vocab_size: tok.vocab_size(),
            tokenizer_note: None,
        };
        let corpus = match detect(&path)? {
            Detected::Text => {
                let plan = TextPlan::new(&path, cfg.val_fraction)?;
                let dir = prepare::cached(&plan, &tok, threads)?;
                let (train, val, _) = open_gda_dir(&dir, &tok, cfg.tokenizer.as_str())?;
                info.shards = dir.display().to_string();
                Corpus { train, val, train_sources: plan.train_sources, val_sources: plan.val_sources, info }
            }
            Detected::Gda => {
                let (train, val, meta) = open_gda_dir(&path, &tok, cfg.tokenizer.as_str())?;
                info.format = Format::Gda;
                let (train_sources, val_sources) = match meta {
                    Some(m) => (m.train.sources, m.val.sources),
                    None => (vec![], vec![]),
                };
                Corpus { train, val, train_sources, val_sources, info }
            }
            Detected::Shards(format, train_files, val_files) => {
                let (train, val) = open_foreign(format, &train_files, &val_files, &tok, &cfg.tokenizer, &mut info)?;
                Corpus { train, val, train_sources: names(&train_files), val_sources: names(&val_files), info }
            }
        };
        if corpus.train.len < 2 || corpus.val.len < 2 {
            return Err(input(format!(
                "data at {} is too small to split into training and validation text",
                path.display()
            )));
        }
        Ok(corpus)
    }

    /// What `gda eval --data` scores: all of a text (a file or a
    /// directory), or the validation split of a prepared or shard directory.
    /// Text is read through the cache as training does (`cfg`'s tokenizer
    /// and split, `threads` tokenizer threads): prepared once, its training
    /// split then its validation split.
    pub fn whole(path: &Path, cfg: &DataConfig, threads: usize) -> Result<Split, GdaError> {
        let path = corpus_path(&path.to_string_lossy())?;
        let tokenizer = &cfg.tokenizer;
        let tok = Tokenizer::new(tokenizer)?;
        match detect(&path)? {
            Detected::Text => {
                let plan = TextPlan::new(&path, cfg.val_fraction)?;
                let dir = prepare::cached(&plan, &tok, threads)?;
                let (header, table) = checked_table(&dir, &tok, tokenizer.as_str())?;
                let files = [gda_files(&dir, "train")?, gda_files(&dir, "val")?].concat();
                shards::open_gda(&files, table, &header)
            }
            Detected::Gda => Ok(open_gda_dir(&path, &tok, tokenizer.as_str())?.1),
            Detected::Shards(format, _, val) => {
                let mut info = DataInfo {
                    format,
                    path: path.display().to_string(),
                    shards: path.display().to_string(),
                    tokenizer: tok.name(),
                    tokenizer_hash: String::new(),
                    vocab_size: tok.vocab_size(),
                    tokenizer_note: None,
                };
                Ok(open_foreign(format, &[], &val, &tok, tokenizer, &mut info)?.1)
            }
        }
    }

    /// Checks that one training window (context + 1 tokens) fits in each split.
    pub fn check_context(&self, spec: &Spec) -> Result<(), GdaError> {
        let context = spec.train.context;
        let shortest = self.train.len.min(self.val.len);
        if context + 1 > shortest {
            let split = if self.train.len < self.val.len { "training" } else { "validation" };
            return Err(spec.error(
                "train.context",
                format!(
                    "{context} is longer than the data: the {split} split has {shortest} tokens; allowed: at most {}",
                    shortest - 1
                ),
            ));
        }
        Ok(())
    }
}

/// The tokenizer a gda directory was prepared with, from its byte table
/// (a tokenizer.json is read from the copy kept in the directory).
pub fn prepared_tokenizer(dir: &Path) -> Result<TokenizerKind, GdaError> {
    let (h, _) = shards::read_byte_table(&dir.join(shards::BYTE_TABLE))?;
    Ok(match h.tokenizer.as_str() {
        "bytes" => TokenizerKind::Bytes,
        "gpt2" => TokenizerKind::Gpt2,
        _ => TokenizerKind::Json(dir.join(shards::TOKENIZER_JSON).display().to_string()),
    })
}

/// `gda data inspect`: what a data directory holds, its shards checked,
/// with a decoded sample. `tokenizer` names the tokenizer of nanoGPT/llm.c
/// shards (default gpt2) and of raw text (default bytes).
pub fn inspect(path: &Path, tokenizer: Option<&TokenizerKind>) -> Result<String, GdaError> {
    use std::fmt::Write;
    let mut out = String::new();
    let (kind, format) = match detect(path)? {
        Detected::Gda => {
            let k = prepared_tokenizer(path)?;
            if let Some(t) = tokenizer.filter(|t| **t != k) {
                return Err(input(format!("{} was prepared with tokenizer {k}, not {t}", path.display())));
            }
            (k, Format::Gda)
        }
        Detected::Shards(f, ..) => (tokenizer.cloned().unwrap_or(TokenizerKind::Gpt2), f),
        Detected::Text => (tokenizer.cloned().unwrap_or(TokenizerKind::Bytes), Format::Text),
    };
    let cfg = DataConfig { corpus: path.display().to_string(), tokenizer: kind.clone(), ..DataConfig::default() };
    let c = Corpus::load(&cfg, 0)?;
    let tok = Tokenizer::new(&kind)?;
    let _ = writeln!(
        out,
        "{}: {} ({})",
        path.display(),
        format.name(),
        match format {
            Format::Gda => "prepared by gda data prepare",
            Format::Nanogpt => "nanoGPT uint16 train.bin/val.bin",
            Format::Llmc => "llm.c shards, header version 1",
            Format::Text => "raw text, read through the cache",
        }
    );
    let _ = writeln!(out, "tokenizer: {} (vocab {}, hash {})", tok.name(), tok.vocab_size(), &c.info.tokenizer_hash);
    if let Some(n) = &c.info.tokenizer_note {
        let _ = writeln!(out, "note: {n}");
    }
    if format == Format::Gda || format == Format::Text {
        let dir = PathBuf::from(&c.info.shards);
        if let Ok(b) = std::fs::read(dir.join(shards::META)) {
            if let Ok(m) = serde_json::from_slice::<Meta>(&b) {
                for (name, s) in [("train", &m.train), ("val", &m.val)] {
                    let _ = writeln!(
                        out,
                        "{name}: {} tokens in {} shard(s), {} text bytes ({} covered by tokens), {} source(s)",
                        s.tokens,
                        s.shards.len(),
                        s.text_bytes,
                        s.token_bytes,
                        s.sources.len()
                    );
                    for (f, n) in &s.shards {
                        let _ = writeln!(out, "  {f}: {n} tokens");
                    }
                }
            }
        }
    } else {
        let _ = writeln!(out, "train: {} tokens in {} shard(s)", c.train.len, c.train_sources.len());
        let _ = writeln!(out, "val: {} tokens in {} shard(s)", c.val.len, c.val_sources.len());
    }
    let mut ids = Vec::new();
    let n = c.val.len.min(48);
    c.val.read(0, n, &mut ids);
    let ids: Vec<u32> = ids.into_iter().map(|i| i as u32).collect();
    let _ = writeln!(out, "sample (first {n} validation tokens): {:?}", tok.decode(&ids));
    Ok(out)
}

/// nanoGPT or llm.c shards under the spec's tokenizer (they carry none).
fn open_foreign(
    format: Format,
    train: &[PathBuf],
    val: &[PathBuf],
    tok: &Tokenizer,
    kind: &TokenizerKind,
    info: &mut DataInfo,
) -> Result<(Split, Split), GdaError> {
    info.format = format;
    if format == Format::Llmc && *kind == TokenizerKind::Bytes {
        let dir = val.first().or(train.first()).and_then(|p| p.parent()).unwrap_or(Path::new("."));
        return Err(input(format!(
            "{}: llm.c version 1 shards hold GPT-2 tokens, but data.tokenizer is \"bytes\"; allowed: data.tokenizer = \"gpt2\" (or a tokenizer.json of the same vocabulary)",
            dir.display()
        )));
    }
    info.tokenizer_note = Some(match format {
        Format::Llmc if *kind == TokenizerKind::Gpt2 => {
            "llm.c shards carry no tokenizer identity; version 1 holds GPT-2 tokens, so GPT-2 is assumed".into()
        }
        _ => format!("{} shards carry no tokenizer identity; data.tokenizer ({kind}) is assumed", format.name()),
    });
    let table = Arc::new(tok.byte_table());
    let vocab = tok.vocab_size();
    let train = shards::open_u16(train, format, vocab, table.clone())?;
    let val = shards::open_u16(val, format, vocab, table)?;
    Ok((train, val))
}

/// Start offsets of the training windows `rows` (indices into the step's
/// global batch) at `step`.
pub fn batch_offsets(seed: u64, step: usize, rows: Range<usize>, context: usize, len: usize) -> Vec<i64> {
    let span = (len - context - 1) as u64 + 1;
    let base = splitmix64(seed ^ 0x6764_615f_6461_7461) ^ splitmix64((step as u64) << 20);
    rows.map(|r| (splitmix64(base.wrapping_add(r as u64)) % span) as i64).collect()
}

/// Gathers windows of `context + 1` tokens starting at `offsets` (read from
/// the shards on demand); returns inputs and next-token targets, each
/// (rows, context), on `device`.
pub fn windows(split: &Split, offsets: &[i64], context: usize, device: Device) -> (Tensor, Tensor) {
    let rows = offsets.len() as i64;
    let t = context as i64;
    let mut ids = Vec::with_capacity(offsets.len() * (context + 1));
    for &o in offsets {
        split.read(o as usize, context + 1, &mut ids);
    }
    let w = Tensor::from_slice(&ids).view([rows, t + 1]).to_device(device);
    (w.narrow(1, 0, t), w.narrow(1, 1, t))
}

/// The fixed evaluation set: consecutive non-overlapping windows from the
/// start of the validation split, enough to cover `eval_tokens` targets
/// (fewer when the split is shorter). Every run with the same data, context
/// and budget scores exactly the same tokens.
pub fn eval_offsets(val_len: usize, context: usize, eval_tokens: usize) -> Vec<i64> {
    let available = (val_len - 1) / context;
    let wanted = eval_tokens.div_ceil(context);
    (0..available.min(wanted).max(1)).map(|i| (i * context) as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepare::{split_point, val_indices};

    #[test]
    fn val_files_are_spread_and_deterministic() {
        let v = val_indices(42, 0.1);
        assert_eq!(v, vec![9, 19, 29, 39]);
        assert_eq!(val_indices(3, 0.1), vec![2]);
    }

    #[test]
    fn batch_offsets_depend_only_on_seed_step_and_row() {
        let a = batch_offsets(1, 5, 0..8, 16, 1000);
        assert_eq!(a, batch_offsets(1, 5, 0..8, 16, 1000));
        assert_ne!(a, batch_offsets(1, 6, 0..8, 16, 1000));
        assert_ne!(a, batch_offsets(2, 5, 0..8, 16, 1000));
        // A slice of the global batch is the same rows as in the whole.
        assert_eq!(a[3..6], batch_offsets(1, 5, 3..6, 16, 1000)[..]);
        assert!(a.iter().all(|&o| o >= 0 && o as usize + 17 <= 1000));
    }

    #[test]
    fn split_point_cuts_at_a_line_break() {
        let text = b"aaaa\nbbbb\ncccc\ndddd\n";
        let cut = split_point(text, 0.3);
        assert!(cut < text.len());
        assert_eq!(text[cut - 1], b'\n');
    }

    #[test]
    fn windows_read_across_shard_boundaries() {
        let ids: Vec<u32> = (0..100).collect();
        let split = Split::from_ids(&ids, Arc::new(vec![1; 100]));
        let (x, y) = windows(&split, &[3, 90], 8, Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(x.reshape([-1])).unwrap()[..3], [3, 4, 5]);
        assert_eq!(Vec::<i64>::try_from(y.reshape([-1])).unwrap()[8..11], [91, 92, 93]);
    }
}

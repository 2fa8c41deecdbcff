//! Raw text into gda shards: the split rules (whole files of a directory,
//! or the last `val_fraction` of a single file), parallel tokenization in
//! chunks whose boundaries do not depend on the thread count, and the
//! content-addressed cache that `gda train`/`sweep`/`eval` prepare raw text
//! into once.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::detect::{corpus_path, detect, Detected};
use super::shards::{self, Header, ShardWriter, BYTE_TABLE, META, TOKENIZER_JSON};
use super::tokenizer::Tokenizer;
use crate::error::{input, io, GdaError};
use crate::util::out::errln;

/// Tokens per shard file (llm.c uses 10^8 too: a few hundred MB each).
pub const SHARD_TOKENS: usize = 100_000_000;
/// Text bytes per tokenization chunk (cut at the next safe point after it).
const CHUNK: usize = 256 << 10;

/// A text file of the corpus, mapped (empty files are held as an empty buffer:
/// a zero-length map is refused by the kernel).
struct TextFile {
    name: String,
    map: Option<Mmap>,
}

impl TextFile {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// Which bytes of which files make up each split.
pub struct TextPlan {
    pub root: PathBuf,
    files: Vec<TextFile>,
    /// (file, start, end) per split, in stream order.
    train: Vec<(usize, usize, usize)>,
    val: Vec<(usize, usize, usize)>,
    pub train_sources: Vec<String>,
    pub val_sources: Vec<String>,
    pub val_fraction: f64,
}

impl TextPlan {
    /// The split of the text at `path` (as `Corpus::load` always did): a
    /// directory with several files holds whole files out (see
    /// `val_indices`), a single file its last `val_fraction`, cut at a line break.
    pub fn new(path: &Path, val_fraction: f64) -> Result<TextPlan, GdaError> {
        let paths = if path.is_dir() { text_files(path)? } else { vec![path.to_path_buf()] };
        let mut files = Vec::new();
        for p in &paths {
            let f = File::open(p).map_err(io("cannot open", p))?;
            let len = f.metadata().map_err(io("cannot read", p))?.len();
            // SAFETY: the text is only read; a file changed while it is
            // being prepared gives a cache entry keyed by its old hash at
            // worst, as reading it whole would.
            let map = if len == 0 { None } else { Some(unsafe { Mmap::map(&f) }.map_err(io("cannot map", p))?) };
            let name = if paths.len() > 1 {
                p.strip_prefix(path).unwrap_or(p).display().to_string()
            } else {
                p.display().to_string()
            };
            files.push(TextFile { name, map });
        }
        if files.iter().all(|f| f.bytes().is_empty()) {
            return Err(input(format!("empty corpus: {} holds no text", path.display())));
        }
        let mut plan = TextPlan {
            root: path.to_path_buf(),
            files,
            train: vec![],
            val: vec![],
            train_sources: vec![],
            val_sources: vec![],
            val_fraction,
        };
        if plan.files.len() == 1 {
            let bytes = plan.files[0].bytes();
            let cut = split_point(bytes, val_fraction);
            plan.train.push((0, 0, cut));
            plan.val.push((0, cut, bytes.len()));
            plan.train_sources.push(plan.files[0].name.clone());
            plan.val_sources.push(plan.files[0].name.clone());
        } else {
            let val = val_indices(plan.files.len(), val_fraction);
            for (i, f) in plan.files.iter().enumerate() {
                let piece = (i, 0, f.bytes().len());
                if val.contains(&i) {
                    plan.val.push(piece);
                    plan.val_sources.push(f.name.clone());
                } else {
                    plan.train.push(piece);
                    plan.train_sources.push(f.name.clone());
                }
            }
        }
        Ok(plan)
    }

    pub fn text_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes().len() as u64).sum()
    }

    /// SHA-256 of the files' names, lengths and contents, in order.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"gda text v1");
        h.update((self.files.len() as u64).to_le_bytes());
        for f in &self.files {
            // Only a directory's relative names matter: a single file is the
            // same corpus wherever it lies.
            let name = if self.files.len() > 1 { f.name.as_bytes() } else { b"" };
            h.update((name.len() as u64).to_le_bytes());
            h.update(name);
            h.update((f.bytes().len() as u64).to_le_bytes());
            h.update(f.bytes());
        }
        h.finalize().into()
    }

    /// Chunks of `split` that tokenize independently (`Tokenizer::can_cut`).
    fn chunks(&self, split: &[(usize, usize, usize)], tok: &Tokenizer) -> Vec<&[u8]> {
        let mut out = Vec::new();
        for &(f, start, end) in split {
            let text = &self.files[f].bytes()[..end];
            let mut at = start;
            while at < end {
                let mut cut = (at + CHUNK).min(end);
                while cut < end && !tok.can_cut(text, cut) {
                    cut += 1;
                }
                out.push(&text[at..cut]);
                at = cut;
            }
        }
        out
    }
}

/// Where a single file is cut: `val_fraction` from its end, moved forward to
/// just after the next line break so no line is torn between the splits.
pub fn split_point(bytes: &[u8], fraction: f64) -> usize {
    let cut = ((bytes.len() as f64) * (1.0 - fraction)) as usize;
    let cut = bytes[cut..].iter().position(|&b| b == b'\n').map(|p| cut + p + 1).unwrap_or(cut);
    cut.min(bytes.len())
}

/// Indices of the files held out for validation: spread evenly over the
/// sorted list, so the split is deterministic and no whole-corpus region is
/// missing from training.
pub fn val_indices(n: usize, fraction: f64) -> Vec<usize> {
    let picked: Vec<usize> =
        (0..n).filter(|&i| ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor()).collect();
    if picked.is_empty() {
        vec![n - 1]
    } else {
        picked
    }
}

/// The files of a data directory, recursively, sorted, hidden ones skipped.
pub fn text_files(dir: &Path) -> Result<Vec<PathBuf>, GdaError> {
    let mut files = Vec::new();
    list_files(dir, &mut files).map_err(io("cannot list", dir))?;
    files.sort();
    if files.is_empty() {
        return Err(input(format!("empty corpus: data directory {} holds no files", dir.display())));
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

/// What `meta.json` of a prepared directory says (informational: the shard
/// headers and the byte table are what gda checks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub version: u32,
    pub tokenizer: String,
    pub tokenizer_hash: String,
    pub vocab_size: usize,
    pub val_fraction: f64,
    pub content_hash: String,
    pub train: SplitMeta,
    pub val: SplitMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMeta {
    pub tokens: u64,
    /// Bytes of text the split came from, and the sum of the byte table over
    /// its tokens: equal for byte-exact tokenizers.
    pub text_bytes: u64,
    pub token_bytes: u64,
    pub shards: Vec<(String, u64)>,
    pub sources: Vec<String>,
}

pub fn threads_or_all(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        threads
    }
}

/// Tokenizes `plan` into a new gda directory `out` (written in a temporary
/// sibling, then renamed, so `out` is complete or absent). The bytes written
/// do not depend on `threads`.
pub fn prepare(plan: &TextPlan, tok: &Tokenizer, out: &Path, threads: usize, quiet: bool) -> Result<Meta, GdaError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "prepared".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("cannot remove", &tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io("cannot create", &tmp))?;
    let result = write_prepared(plan, tok, &tmp, threads, quiet).and_then(|meta| {
        std::fs::rename(&tmp, out).map_err(io("cannot rename into", out))?;
        crate::util::fs::sync_dir(parent).map_err(io("cannot sync", parent))?;
        Ok(meta)
    });
    if result.is_err() {
        // The error being returned is what matters; a leftover temporary
        // directory is only clutter (and is named as such).
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_prepared(plan: &TextPlan, tok: &Tokenizer, dir: &Path, threads: usize, quiet: bool) -> Result<Meta, GdaError> {
    let vocab = tok.vocab_size();
    let table = tok.byte_table();
    let template = Header {
        width: if vocab <= 1 << 16 { 2 } else { 4 },
        vocab: vocab as u64,
        count: 0,
        max_id: 0,
        tokenizer_hash: tok.hash(),
        tokenizer: tok.name(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads_or_all(threads))
        .build()
        .map_err(|e| input(format!("cannot start {threads} tokenizer threads: {e}")))?;
    let total = plan.text_bytes();
    let progress = Progress::new(total, quiet);
    let mut splits = Vec::new();
    for (split, pieces, sources) in [("train", &plan.train, &plan.train_sources), ("val", &plan.val, &plan.val_sources)]
    {
        let chunks = plan.chunks(pieces, tok);
        let mut w = ShardWriter::new(dir, split, template.clone(), SHARD_TOKENS);
        let (mut text_bytes, mut token_bytes) = (0u64, 0u64);
        let group = pool.current_num_threads() * 4;
        for batch in chunks.chunks(group) {
            let ids: Vec<Vec<u32>> = pool.install(|| batch.par_iter().map(|c| tok.encode(c)).collect());
            for (c, ids) in batch.iter().zip(&ids) {
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                    return Err(input(format!(
                        "tokenizer {} produced id {bad}, outside its vocabulary of {vocab}",
                        tok.name()
                    )));
                }
                token_bytes += ids.iter().map(|&i| table[i as usize] as u64).sum::<u64>();
                text_bytes += c.len() as u64;
                w.write(ids)?;
            }
            progress.add(batch.iter().map(|c| c.len() as u64).sum());
        }
        let tokens = w.total;
        let shards = w.finish()?;
        if tokens < 2 {
            return Err(input(format!(
                "data at {} is too small to split into training and validation text: the {split} split has {tokens} tokens",
                plan.root.display()
            )));
        }
        if text_bytes != token_bytes && !quiet {
            errln!(
                "note: tokenizer {}: the {split} split's tokens stand for {token_bytes} bytes of its {text_bytes} (the tokenizer normalises text); bits per byte use the tokens' bytes",
                tok.name()
            );
        }
        splits.push(SplitMeta { tokens, text_bytes, token_bytes, shards, sources: sources.clone() });
    }
    progress.finish();
    shards::write_byte_table(&dir.join(BYTE_TABLE), &template, &table)?;
    if let Some(json) = tok.json() {
        let p = dir.join(TOKENIZER_JSON);
        crate::util::fs::atomic_write(&p, json).map_err(io("cannot write", &p))?;
    }
    let val = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    let meta = Meta {
        format: "gda-tokens".into(),
        version: shards::VERSION,
        tokenizer: tok.name(),
        tokenizer_hash: shards::hex(&tok.hash()),
        vocab_size: vocab,
        val_fraction: plan.val_fraction,
        content_hash: shards::hex(&plan.content_hash()),
        train,
        val,
    };
    let p = dir.join(META);
    let mut text = serde_json::to_vec_pretty(&meta).expect("meta serialises");
    text.push(b'\n');
    crate::util::fs::atomic_write(&p, &text).map_err(io("cannot write", &p))?;
    Ok(meta)
}

/// Progress of a long preparation on stderr (a bar on a terminal, a line
/// every few seconds otherwise).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
    last: std::cell::Cell<f64>,
    done: std::cell::Cell<u64>,
    total: u64,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (!quiet && tty).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "tokenizing {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a valid template"),
            );
            b
        });
        let last = std::cell::Cell::new(if quiet || tty { f64::INFINITY } else { 0.0 });
        Progress { bar, start: std::time::Instant::now(), last, done: 0.into(), total }
    }

    fn add(&self, n: u64) {
        self.done.set(self.done.get() + n);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        let t = self.start.elapsed().as_secs_f64();
        if t - self.last.get() >= 5.0 {
            self.last.set(t);
            errln!(
                "tokenizing: {:.0} of {:.0} MB ({:.1} MB/s)",
                self.done.get() as f64 / 1e6,
                self.total as f64 / 1e6,
                self.done.get() as f64 / 1e6 / t.max(1e-9)
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The cache entry of `plan` under `tok`: prepared on first use, reused
/// after. A second process preparing the same entry waits on the entry's
/// lock and then reuses it.
pub fn cached(plan: &TextPlan, tok: &Tokenizer, threads: usize) -> Result<PathBuf, GdaError> {
    let root = super::cache_dir().join("prepared");
    let mut h = Sha256::new();
    h.update(b"gda prepared v1");
    h.update(plan.content_hash());
    h.update(tok.hash());
    h.update(plan.val_fraction.to_bits().to_le_bytes());
    let key = shards::hex(&h.finalize()[..16]);
    let dir = root.join(&key);
    if dir.join(META).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).map_err(io("cannot create", &root))?;
    let lock_path = root.join(format!("{key}.lock"));
    let lock = File::create(&lock_path).map_err(io("cannot create", &lock_path))?;
    lock_exclusive(&lock, &lock_path, &plan.root)?;
    if dir.join(META).is_file() {
        return Ok(dir);
    }
    // Small texts take well under a second: say nothing (stderr stays the
    // error alone when the run is then refused).
    let quiet = plan.text_bytes() < 16 << 20;
    if !quiet {
        errln!(
            "preparing {} ({:.1} MB, tokenizer {}) into {} (once; later runs reuse it)",
            plan.root.display(),
            plan.text_bytes() as f64 / 1e6,
            tok.name(),
            dir.display()
        );
    }
    prepare(plan, tok, &dir, threads, quiet)?;
    Ok(dir)
}

fn lock_exclusive(f: &File, path: &Path, what: &Path) -> Result<(), GdaError> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; released when it closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        // No flock on this filesystem: prepare unguarded (the rename still
        // keeps a half-written entry from ever being seen).
        return Ok(());
    }
    errln!("waiting for another gda that is preparing {} ({})", what.display(), path.display());
    // SAFETY: as above.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("cannot lock", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl TextPlan {
    /// The training split's text, piece by piece (what `gda data
    /// train-tokenizer` learns from: validation text stays unseen).
    pub fn train_texts(&self) -> impl Iterator<Item = &[u8]> + Send {
        self.train.iter().map(|&(f, a, b)| &self.files[f].bytes()[a..b])
    }
}

/// `gda data prepare`: tokenizes the text at `data` into a new directory
/// `out` (refused when `out` exists, or when `data` holds shards already).
pub fn prepare_dir(
    data: &Path,
    tokenizer: &crate::config::TokenizerKind,
    out: &Path,
    val_fraction: f64,
    threads: usize,
) -> Result<Meta, GdaError> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(input(format!("--val-fraction {val_fraction}; allowed: 0 < fraction < 1")));
    }
    if out.exists() {
        return Err(input(format!("{} already exists; allowed: a new directory for --out", out.display())));
    }
    let tok = Tokenizer::new(tokenizer)?;
    let path = corpus_path(&data.to_string_lossy())?;
    if !matches!(detect(&path)?, Detected::Text) {
        return Err(input(format!("{} holds token shards already; allowed: raw text to prepare", path.display())));
    }
    let plan = TextPlan::new(&path, val_fraction)?;
    prepare(&plan, &tok, out, threads, false)
}

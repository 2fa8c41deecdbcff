//! Token shards on disk, memory-mapped: gda's own format (docs/data.md),
//! nanoGPT's raw uint16 `train.bin`/`val.bin` and llm.c's headered shards.
//! A [`Split`] is the concatenation of one split's shards; windows are
//! copied out of the maps on demand, so nothing proportional to the corpus
//! is held in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{input, io, GdaError};

/// gda's shard header (256 bytes, little-endian): magic, version, token
/// width, vocab size, token count, largest id, tokenizer hash and name.
pub const MAGIC: &[u8; 8] = b"GDATOKEN";
/// The byte-length table: same header, one u16 per id.
pub const BYTES_MAGIC: &[u8; 8] = b"GDABYTES";
pub const VERSION: u32 = 1;
pub const HEADER: usize = 256;
pub const BYTE_TABLE: &str = "token_bytes.bin";
pub const META: &str = "meta.json";
pub const TOKENIZER_JSON: &str = "tokenizer.json";

/// llm.c: 256 int32 header, magic 20240520, version 1 = GPT-2 uint16 tokens.
pub const LLMC_MAGIC: i32 = 20240520;
pub const LLMC_HEADER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Raw text, prepared into the cache on first use.
    Text,
    /// A directory written by `gda data prepare`.
    Gda,
    /// nanoGPT's `train.bin`/`val.bin`: uint16 tokens, no header.
    Nanogpt,
    /// llm.c's `*_train_*.bin`/`*_val_*.bin`: 1024-byte header, uint16 tokens.
    Llmc,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Gda => "gda",
            Format::Nanogpt => "nanogpt",
            Format::Llmc => "llmc",
        }
    }
}

/// The parsed header of a gda shard or byte table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub vocab: u64,
    pub count: u64,
    pub max_id: u64,
    pub tokenizer_hash: [u8; 32],
    pub tokenizer: String,
}

impl Header {
    pub fn encode(&self, magic: &[u8; 8]) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..8].copy_from_slice(magic);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.width.to_le_bytes());
        h[16..24].copy_from_slice(&self.vocab.to_le_bytes());
        h[24..32].copy_from_slice(&self.count.to_le_bytes());
        h[32..40].copy_from_slice(&self.max_id.to_le_bytes());
        h[40..72].copy_from_slice(&self.tokenizer_hash);
        let name = self.tokenizer.as_bytes();
        let n = name.len().min(64);
        h[72..72 + n].copy_from_slice(&name[..n]);
        h
    }

    /// Parses and checks a header against the file's size.
    pub fn decode(h: &[u8], magic: &[u8; 8], file_len: u64, path: &Path) -> Result<Header, GdaError> {
        let bad = |what: String| input(format!("{}: {what}", path.display()));
        if h.len() < HEADER || &h[0..8] != magic {
            return Err(bad(format!(
                "wrong magic: not a gda {} file (expected it to start with {:?})",
                if magic == MAGIC { "token shard" } else { "byte-length table" },
                String::from_utf8_lossy(magic)
            )));
        }
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!("unknown version {version}; this gda reads version {VERSION}")));
        }
        let width = u32_at(12);
        if width != 2 && width != 4 {
            return Err(bad(format!("token width {width} bytes; allowed: 2 or 4")));
        }
        let name_bytes = &h[72..136];
        let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
        let header = Header {
            width,
            vocab: u64_at(16),
            count: u64_at(24),
            max_id: u64_at(32),
            tokenizer_hash: h[40..72].try_into().expect("32 bytes"),
            tokenizer: std::str::from_utf8(&name_bytes[..end])
                .map_err(|_| {
                    bad(format!("the tokenizer name (bytes 72..136) is not UTF-8: {}", hex(&name_bytes[..end])))
                })?
                .to_string(),
        };
        check_size(path, HEADER as u64, header.count, width, file_len)?;
        Ok(header)
    }
}

/// A header's token count must account for the file exactly.
fn check_size(path: &Path, header: u64, count: u64, width: u32, file_len: u64) -> Result<(), GdaError> {
    let want = header + count * width as u64;
    if file_len < want {
        return Err(input(format!(
            "{}: truncated shard: the header says {count} tokens ({want} bytes) but the file has {file_len} bytes",
            path.display()
        )));
    }
    if file_len > want {
        return Err(input(format!(
            "{}: the header's token count ({count}, {want} bytes) disagrees with the file size ({file_len} bytes)",
            path.display()
        )));
    }
    Ok(())
}

enum Store {
    Map(Mmap),
    Owned(Vec<u8>),
}

/// One file (or in-memory buffer) of little-endian tokens.
struct Shard {
    store: Store,
    offset: usize,
    width: usize,
    len: usize,
}

impl Shard {
    fn bytes(&self) -> &[u8] {
        match &self.store {
            Store::Map(m) => &m[self.offset..],
            Store::Owned(v) => &v[self.offset..],
        }
    }

    fn get(&self, i: usize) -> u32 {
        let b = self.bytes();
        if self.width == 2 {
            u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32
        } else {
            u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        }
    }
}

/// One split: its shards read as one stream, and the bytes of text each
/// token id stands for.
pub struct Split {
    shards: Vec<Shard>,
    /// Start of each shard in the stream.
    starts: Vec<usize>,
    pub len: usize,
    /// Bytes of text per token id (indexed by id): bits per byte divides by
    /// the sum of these over the scored targets.
    pub id_bytes: Arc<Vec<u16>>,
}

impl Split {
    /// Tokens already in memory (a text `gda eval --data` scores whole).
    pub fn from_ids(ids: &[u32], id_bytes: Arc<Vec<u16>>) -> Split {
        let bytes = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let shard = Shard { store: Store::Owned(bytes), offset: 0, width: 4, len: ids.len() };
        Split { len: ids.len(), shards: vec![shard], starts: vec![0], id_bytes }
    }

    fn from_shards(shards: Vec<Shard>, id_bytes: Arc<Vec<u16>>) -> Split {
        let mut starts = Vec::with_capacity(shards.len());
        let mut len = 0;
        for s in &shards {
            starts.push(len);
            len += s.len;
        }
        Split { shards, starts, len, id_bytes }
    }

    /// Token `i` of the stream.
    pub fn get(&self, i: usize) -> u32 {
        let s = self.starts.partition_point(|&st| st <= i) - 1;
        self.shards[s].get(i - self.starts[s])
    }

    /// Appends tokens `start..start + n` of the stream to `out`.
    pub fn read(&self, start: usize, n: usize, out: &mut Vec<i64>) {
        let mut s = self.starts.partition_point(|&st| st <= start) - 1;
        let mut i = start - self.starts[s];
        for _ in 0..n {
            while i >= self.shards[s].len {
                s += 1;
                i = 0;
            }
            out.push(self.shards[s].get(i) as i64);
            i += 1;
        }
    }

    /// Bytes of text covered by tokens `start..start + n`.
    pub fn text_bytes(&self, start: usize, n: usize) -> u64 {
        let mut ids = Vec::with_capacity(n);
        self.read(start, n, &mut ids);
        ids.iter().map(|&id| self.id_bytes.get(id as usize).copied().unwrap_or(0) as u64).sum()
    }
}

/// Maps `path` read-only; windows are read at random, so read-ahead is off.
fn map(path: &Path) -> Result<Mmap, GdaError> {
    let f = File::open(path).map_err(io("cannot open", path))?;
    // SAFETY: the shards are read-only inputs; gda never writes a file it
    // has mapped, and a prepared directory is only ever replaced by rename.
    let m = unsafe { Mmap::map(&f) }.map_err(io("cannot map", path))?;
    #[cfg(unix)]
    {
        // Advice only changes paging; a kernel that refuses it is harmless.
        let _ = m.advise(memmap2::Advice::Random);
    }
    Ok(m)
}

/// Opens gda shards, checking each header; returns the split and the
/// (common) header of its shards.
pub fn open_gda(paths: &[PathBuf], id_bytes: Arc<Vec<u16>>, want: &Header) -> Result<Split, GdaError> {
    let mut shards = Vec::new();
    for p in paths {
        let m = map(p)?;
        let h = Header::decode(&m[..m.len().min(HEADER)], MAGIC, m.len() as u64, p)?;
        check_same_tokenizer(p, &h, want)?;
        if h.max_id >= want.vocab {
            return Err(input(format!(
                "{}: token id {} is not in the tokenizer's vocabulary of {} ids",
                p.display(),
                h.max_id,
                want.vocab
            )));
        }
        // The header's largest id is a claim: an id past it (a damaged or
        // hand-made shard) would reach the embedding and abort inside libtorch.
        let range = format!("the range 0..={} its header states", h.max_id);
        scan_ids(p, HEADER, h.width as usize, h.max_id as usize + 1, &range)?;
        shards.push(Shard { len: h.count as usize, width: h.width as usize, offset: HEADER, store: Store::Map(m) });
    }
    Ok(Split::from_shards(shards, id_bytes))
}

pub fn check_same_tokenizer(p: &Path, h: &Header, want: &Header) -> Result<(), GdaError> {
    if h.tokenizer_hash != want.tokenizer_hash || h.vocab != want.vocab || h.tokenizer != want.tokenizer {
        return Err(input(format!(
            "{}: mixed tokenizers in one directory: this shard was written by tokenizer {} (vocab {}, hash {}), the directory's byte table by {} (vocab {}, hash {})",
            p.display(),
            h.tokenizer,
            h.vocab,
            hex(&h.tokenizer_hash[..8]),
            want.tokenizer,
            want.vocab,
            hex(&want.tokenizer_hash[..8])
        )));
    }
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens nanoGPT or llm.c shards (uint16 tokens) and checks every id
/// against `vocab` by streaming the file (not through the map: a scan
/// through the map would leave the whole corpus resident).
pub fn open_u16(paths: &[PathBuf], format: Format, vocab: usize, id_bytes: Arc<Vec<u16>>) -> Result<Split, GdaError> {
    let mut shards = Vec::new();
    for p in paths {
        let offset = if format == Format::Llmc { check_llmc(p)? } else { check_nanogpt(p)? };
        scan_ids(p, offset, 2, vocab, &format!("the vocabulary of {vocab} ids (check data.tokenizer)"))?;
        let m = map(p)?;
        let len = (m.len() - offset) / 2;
        shards.push(Shard { len, width: 2, offset, store: Store::Map(m) });
    }
    Ok(Split::from_shards(shards, id_bytes))
}

fn file_len(p: &Path) -> Result<u64, GdaError> {
    Ok(std::fs::metadata(p).map_err(io("cannot read", p))?.len())
}

/// Checks an llm.c header; returns where its tokens start.
pub fn check_llmc(p: &Path) -> Result<usize, GdaError> {
    let len = file_len(p)?;
    let mut h = [0u8; LLMC_HEADER];
    if len < LLMC_HEADER as u64 {
        return Err(input(format!(
            "{}: truncated shard: {len} bytes, shorter than llm.c's {LLMC_HEADER}-byte header",
            p.display()
        )));
    }
    File::open(p).and_then(|mut f| f.read_exact(&mut h)).map_err(io("cannot read", p))?;
    let int = |i: usize| i32::from_le_bytes(h[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if int(0) != LLMC_MAGIC {
        return Err(input(format!(
            "{}: wrong magic {} (an llm.c shard starts with {LLMC_MAGIC})",
            p.display(),
            int(0)
        )));
    }
    if int(1) != 1 {
        return Err(input(format!(
            "{}: unknown llm.c version {}; gda reads version 1 (GPT-2 tokens as uint16)",
            p.display(),
            int(1)
        )));
    }
    if int(2) < 0 {
        return Err(input(format!("{}: negative token count {} in the header", p.display(), int(2))));
    }
    check_size(p, LLMC_HEADER as u64, int(2) as u64, 2, len)?;
    Ok(LLMC_HEADER)
}

fn check_nanogpt(p: &Path) -> Result<usize, GdaError> {
    let len = file_len(p)?;
    if len % 2 != 0 {
        return Err(input(format!(
            "{}: truncated shard: {len} bytes is not a whole number of uint16 tokens",
            p.display()
        )));
    }
    Ok(0)
}

/// Streams the `width`-byte tokens of `p` and refuses the first id ≥
/// `limit` (`what` says where the limit comes from).
fn scan_ids(p: &Path, offset: usize, width: usize, limit: usize, what: &str) -> Result<(), GdaError> {
    let mut f = File::open(p).map_err(io("cannot open", p))?;
    f.seek(SeekFrom::Start(offset as u64)).map_err(io("cannot read", p))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = read_full(&mut f, &mut buf).map_err(io("cannot read", p))?;
        if n == 0 {
            return Ok(());
        }
        for (i, c) in buf[..n - n % width].chunks_exact(width).enumerate() {
            let id = if width == 2 {
                u16::from_le_bytes([c[0], c[1]]) as usize
            } else {
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize
            };
            if id >= limit {
                return Err(input(format!(
                    "{}: token id {id} at position {} is not in {what}",
                    p.display(),
                    at + i as u64
                )));
            }
        }
        at += (n / width) as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads a gda byte-length table.
pub fn read_byte_table(p: &Path) -> Result<(Header, Vec<u16>), GdaError> {
    let bytes = std::fs::read(p).map_err(io("cannot read", p))?;
    let h = Header::decode(&bytes, BYTES_MAGIC, bytes.len() as u64, p)?;
    if h.width != 2 || h.count != h.vocab {
        return Err(input(format!(
            "{}: a byte-length table holds one u16 per id: width {} count {} vocab {}",
            p.display(),
            h.width,
            h.count,
            h.vocab
        )));
    }
    let table = bytes[HEADER..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    Ok((h, table))
}

/// Writes tokens into numbered shards `<dir>/<split>_NNNNNN.bin`, starting
/// a new shard every `per_shard` tokens; each header is filled in when its
/// shard is closed.
pub struct ShardWriter {
    dir: PathBuf,
    split: &'static str,
    template: Header,
    per_shard: usize,
    file: Option<(std::io::BufWriter<File>, PathBuf)>,
    count: u64,
    max_id: u64,
    pub files: Vec<(String, u64)>,
    pub total: u64,
}

impl ShardWriter {
    pub fn new(dir: &Path, split: &'static str, template: Header, per_shard: usize) -> ShardWriter {
        ShardWriter {
            dir: dir.to_path_buf(),
            split,
            template,
            per_shard,
            file: None,
            count: 0,
            max_id: 0,
            files: vec![],
            total: 0,
        }
    }

    pub fn write(&mut self, ids: &[u32]) -> Result<(), GdaError> {
        let mut rest = ids;
        while !rest.is_empty() {
            if self.file.is_none() {
                let p = self.dir.join(format!("{}_{:06}.bin", self.split, self.files.len()));
                let f = File::create(&p).map_err(io("cannot write", &p))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                w.write_all(&[0u8; HEADER]).map_err(io("cannot write", &p))?;
                self.file = Some((w, p));
                self.count = 0;
                self.max_id = 0;
            }
            let take = rest.len().min(self.per_shard - self.count as usize);
            let (now, later) = rest.split_at(take);
            let (w, p) = self.file.as_mut().expect("open shard");
            let mut buf = Vec::with_capacity(now.len() * self.template.width as usize);
            for &id in now {
                self.max_id = self.max_id.max(id as u64);
                if self.template.width == 2 {
                    buf.extend_from_slice(&(id as u16).to_le_bytes());
                } else {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
            }
            w.write_all(&buf).map_err(io("cannot write", p))?;
            self.count += take as u64;
            self.total += take as u64;
            rest = later;
            if self.count as usize == self.per_shard {
                self.close()?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), GdaError> {
        if let Some((w, p)) = self.file.take() {
            let mut f = w.into_inner().map_err(|e| GdaError::Io {
                what: "cannot write",
                path: p.clone(),
                source: e.into_error(),
            })?;
            let h = Header { count: self.count, max_id: self.max_id, ..self.template.clone() };
            f.seek(SeekFrom::Start(0)).map_err(io("cannot write", &p))?;
            f.write_all(&h.encode(MAGIC)).map_err(io("cannot write", &p))?;
            f.sync_all().map_err(io("cannot write", &p))?;
            let name = p.file_name().expect("shard name").to_string_lossy().into_owned();
            self.files.push((name, self.count));
        }
        Ok(())
    }

    /// Closes the last shard; returns the shards written with their token counts.
    pub fn finish(mut self) -> Result<Vec<(String, u64)>, GdaError> {
        self.close()?;
        Ok(self.files)
    }
}

/// Writes the byte-length table of a tokenizer.
pub fn write_byte_table(p: &Path, template: &Header, table: &[u16]) -> Result<(), GdaError> {
    let h = Header {
        width: 2,
        count: table.len() as u64,
        vocab: table.len() as u64,
        max_id: table.iter().copied().max().unwrap_or(0) as u64,
        ..template.clone()
    };
    let mut bytes = h.encode(BYTES_MAGIC).to_vec();
    bytes.extend(table.iter().flat_map(|l| l.to_le_bytes()));
    crate::util::fs::atomic_write(p, &bytes).map_err(io("cannot write", p))
}

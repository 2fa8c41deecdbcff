//! Tokenizers: raw bytes, GPT-2 BPE (`r50k_base`, compiled in) and any
//! Hugging Face `tokenizer.json`; each with an identity (name + hash) that
//! prepared shards record, and a per-id byte-length table that makes bits
//! per byte exact without a per-token sidecar.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::gpt2::Gpt2;
use crate::config::TokenizerKind;
use crate::error::{input, io, GdaError};

pub enum Tokenizer {
    Bytes,
    Gpt2(Box<Gpt2>),
    Hf { tok: Box<tokenizers::Tokenizer>, json: Vec<u8>, path: String },
}

impl Tokenizer {
    /// Loads the tokenizer `kind` names; a tokenizer.json that cannot be
    /// read or parsed is bad input naming its path.
    pub fn new(kind: &TokenizerKind) -> Result<Tokenizer, GdaError> {
        Ok(match kind {
            TokenizerKind::Bytes => Tokenizer::Bytes,
            TokenizerKind::Gpt2 => Tokenizer::Gpt2(Box::default()),
            TokenizerKind::Json(p) => {
                let path = Path::new(p);
                if !path.is_file() {
                    return Err(input(format!("tokenizer {p} does not exist; allowed: {}", TokenizerKind::ALLOWED)));
                }
                let json = std::fs::read(path).map_err(io("cannot read", path))?;
                let bad = |why: String| {
                    input(format!("tokenizer {p} is not a Hugging Face tokenizer.json that gda can load: {why}"))
                };
                let tok = contained(|| tokenizers::Tokenizer::from_bytes(&json))
                    .map_err(&bad)?
                    .map_err(|e| bad(e.to_string()))?;
                check_json_tokenizer(&tok).map_err(&bad)?;
                // Normalizers and pre-tokenizers run only when text is
                // encoded: one probe here turns a panic inside them into
                // this error instead of a crash mid-preparation.
                contained(|| tok.encode("gda probe: Hello, world! 123", false))
                    .map_err(&bad)?
                    .map_err(|e| bad(e.to_string()))?;
                Tokenizer::Hf { tok: Box::new(tok), json, path: p.clone() }
            }
        })
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Gpt2(_) => crate::config::GPT2_VOCAB,
            Tokenizer::Hf { tok, .. } => tok.get_vocab_size(true),
        }
    }

    /// How shards name this tokenizer: `bytes`, `gpt2`, or `json:<file name>`.
    pub fn name(&self) -> String {
        match self {
            Tokenizer::Bytes => "bytes".into(),
            Tokenizer::Gpt2(_) => "gpt2".into(),
            Tokenizer::Hf { path, .. } => {
                format!("json:{}", Path::new(path).file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
            }
        }
    }

    /// SHA-256 identifying the tokenizer: of its name for the built-in
    /// ones, of the file's bytes for a tokenizer.json (so a renamed copy of
    /// the same file is the same tokenizer, and an edited one is not).
    pub fn hash(&self) -> [u8; 32] {
        let digest = match self {
            Tokenizer::Bytes => Sha256::digest(b"gda tokenizer bytes"),
            Tokenizer::Gpt2(_) => Sha256::digest(b"gda tokenizer gpt2 r50k_base"),
            Tokenizer::Hf { json, .. } => Sha256::digest(json),
        };
        digest.into()
    }

    /// The tokenizer.json's bytes, kept with prepared shards so `gda data
    /// inspect` can decode them.
    pub fn json(&self) -> Option<&[u8]> {
        match self {
            Tokenizer::Hf { json, .. } => Some(json),
            _ => None,
        }
    }

    /// Token ids of `bytes` (no special tokens added around them).
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => bytes.iter().map(|&b| b as u32).collect(),
            Tokenizer::Gpt2(g) => g.encode(&String::from_utf8_lossy(bytes)),
            Tokenizer::Hf { tok, .. } => tok
                .encode(String::from_utf8_lossy(bytes).as_ref(), false)
                .map(|e| e.get_ids().to_vec())
                // A loaded tokenizer fails only on text it cannot represent
                // at all; say so rather than train on a silently shorter split.
                .unwrap_or_else(|e| panic!("tokenizer {} failed on the text: {e}", self.name())),
        }
    }

    /// Text of `ids`, lossy where they cut a character (for `gda data inspect`).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Hf { tok, .. } => tok.decode(ids, false).unwrap_or_default(),
            _ => String::from_utf8_lossy(&self.decode_bytes(ids)).into(),
        }
    }

    /// The bytes `ids` stand for (for `gda sample`, which writes a character
    /// cut by the last token as its bytes, not as U+FFFD). Exact for bytes,
    /// GPT-2 and byte-level BPE tokenizer.json files (each piece's characters
    /// map back to bytes through GPT-2's byte-to-character table; an added
    /// token gives its text); other tokenizer.json files give their
    /// decoder's text.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        match self {
            Tokenizer::Bytes => ids.iter().map(|&i| i as u8).collect(),
            Tokenizer::Gpt2(g) => g.decode(ids),
            Tokenizer::Hf { tok, json, .. } if byte_level(json) => ids
                .iter()
                .flat_map(|&id| {
                    let piece = tok.id_to_token(id).unwrap_or_default();
                    piece.chars().map(byte_of_char).collect::<Option<Vec<u8>>>().unwrap_or_else(|| piece.into_bytes())
                })
                .collect(),
            Tokenizer::Hf { tok, .. } => tok.decode(ids, false).unwrap_or_default().into_bytes(),
        }
    }

    /// Bytes of text each id stands for, indexed by id. Exact for bytes,
    /// GPT-2 and byte-level BPE tokenizer.json files (each vocabulary
    /// character is one byte); for other tokenizer.json files the UTF-8
    /// length of the id decoded alone (byte-fallback `<0xNN>` pieces count 1).
    pub fn byte_table(&self) -> Vec<u16> {
        match self {
            Tokenizer::Bytes => vec![1; 256],
            Tokenizer::Gpt2(g) => g.byte_table(),
            Tokenizer::Hf { tok, json, .. } => {
                let byte_level = byte_level(json);
                let added: std::collections::HashMap<u32, String> =
                    tok.get_added_tokens_decoder().into_iter().map(|(id, t)| (id, t.content)).collect();
                (0..tok.get_vocab_size(true) as u32)
                    .map(|id| {
                        if let Some(content) = added.get(&id) {
                            return content.len() as u16;
                        }
                        let Some(piece) = tok.id_to_token(id) else { return 0 };
                        if byte_level {
                            return piece.chars().count() as u16;
                        }
                        if piece.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>') {
                            return 1;
                        }
                        tok.decode(&[id], false).map(|s| s.len()).unwrap_or(piece.len()) as u16
                    })
                    .collect()
            }
        }
    }

    /// Where a text may be cut into pieces that tokenize independently to
    /// the same ids as the whole: after a newline that follows a printable
    /// ASCII character and precedes an ASCII letter or digit. The GPT-2
    /// pre-tokenizer (and byte-level BPE ones, which share its pattern)
    /// never joins across such a point, so chunked preparation equals
    /// whole-file encoding. Bytes may be cut anywhere.
    pub fn can_cut(&self, text: &[u8], at: usize) -> bool {
        if matches!(self, Tokenizer::Bytes) {
            return true;
        }
        at >= 2
            && at < text.len()
            && text[at - 1] == b'\n'
            && (0x21..0x7f).contains(&text[at - 2])
            && text[at].is_ascii_alphanumeric()
    }
}

/// Whether a tokenizer.json decodes byte-level (GPT-2's byte-to-character
/// table: every vocabulary character stands for one byte).
/// What gda needs of a tokenizer.json: no padding or truncation (gda
/// feeds one unpadded stream; a `Fixed` padding of 10^8 would allocate it
/// per call) and every id of the vocabulary used once and below the size the
/// embedding gets.
fn check_json_tokenizer(tok: &tokenizers::Tokenizer) -> Result<(), String> {
    if tok.get_padding().is_some() {
        return Err("it sets \"padding\"; allowed: \"padding\": null (gda reads one unpadded stream)".into());
    }
    if tok.get_truncation().is_some() {
        return Err("it sets \"truncation\"; allowed: \"truncation\": null (gda cuts its own windows)".into());
    }
    let vocab = tok.get_vocab(true);
    let size = tok.get_vocab_size(true);
    let mut seen: std::collections::HashMap<u32, &str> = std::collections::HashMap::with_capacity(vocab.len());
    for (token, &id) in &vocab {
        if id as usize >= size {
            return Err(format!(
                "token {token:?} has id {id}, past its vocabulary size {size}; allowed: ids 0 to {}",
                size - 1
            ));
        }
        if let Some(other) = seen.insert(id, token) {
            return Err(format!("id {id} is given to two tokens, {other:?} and {token:?}; allowed: each id once"));
        }
    }
    Ok(())
}

/// Runs `f`, turning a panic inside a dependency into an error with its
/// message (and no panic report on stderr: the caller names the file).
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        format!("the tokenizers library failed on it ({msg})")
    })
}

fn byte_level(json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("decoder").map(|d| d.to_string().contains("\"ByteLevel\"")))
        .unwrap_or(false)
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`): printable bytes
/// stand for themselves, the others for 256, 257, … in byte order, so every
/// byte string is a printable string of the same length.
pub fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256;
    for (b, c) in out.iter_mut().enumerate() {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *c = char::from_u32(code).expect("below 0x200: a valid char");
    }
    out
}

/// The byte a character of a byte-level vocabulary stands for: the
/// inverse of [`byte_chars`].
fn byte_of_char(c: char) -> Option<u8> {
    byte_chars().iter().position(|&b| b == c).map(|b| b as u8)
}

/// Trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer pattern, no
/// prefix space, no special tokens) of `vocab` ids on `texts`, and returns
/// its tokenizer.json. Every id stands for whole bytes, so bits per byte
/// stay exact.
pub fn train_bpe<'a>(texts: impl Iterator<Item = &'a [u8]> + Send, vocab: usize) -> Result<String, GdaError> {
    use tokenizers::models::bpe::{BpeTrainer, BPE};
    use tokenizers::models::TrainerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    if vocab < 256 {
        return Err(input(format!(
            "--vocab {vocab} is below the 256 byte ids a byte-level BPE starts from; allowed: at least 256"
        )));
    }
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    // Lines, so no sequence is larger than the text between two line breaks.
    let lines = texts.flat_map(|t| t.split_inclusive(|&b| b == b'\n')).map(|l| String::from_utf8_lossy(l).into_owned());
    tok.train(&mut trainer, lines).map_err(|e| input(format!("training the BPE tokenizer failed: {e}")))?;
    tok.to_string(true).map_err(|e| input(format!("cannot serialise the trained tokenizer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_matches_per_token_lengths() {
        let tok = Tokenizer::new(&TokenizerKind::Gpt2).unwrap();
        let table = tok.byte_table();
        let text = "To be, or not to be, that is the question.\n\nWhether 'tis nobler — in the mind";
        let ids = tok.encode(text.as_bytes());
        assert!(ids.len() < text.len());
        assert_eq!(ids.iter().map(|&i| table[i as usize] as usize).sum::<usize>(), text.len());
    }

    #[test]
    fn byte_level_characters_stand_for_every_byte_once() {
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        let alphabet = ByteLevel::alphabet();
        assert_eq!(alphabet.len(), 256);
        let bytes: std::collections::BTreeSet<u8> = alphabet.iter().map(|&c| byte_of_char(c).unwrap()).collect();
        assert_eq!(bytes.len(), 256);
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('a'), Some(b'a'));
        assert_eq!(byte_of_char('€'), None);
    }

    #[test]
    fn decode_bytes_gives_back_the_text_and_a_cut_character_as_its_bytes() {
        let text = "Schöne Grüße — naïve café, 東京. ".repeat(20);
        // Trained on ASCII only, so the BPE keeps the non-ASCII characters
        // of `text` in single-byte ids, which cut them.
        let json = train_bpe(std::iter::once("the cat sat on the mat. ".repeat(20).as_bytes()), 270).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok.json");
        std::fs::write(&path, json).unwrap();
        let hf = Tokenizer::new(&TokenizerKind::Json(path.display().to_string())).unwrap();
        for tok in [Tokenizer::Bytes, Tokenizer::Gpt2(Box::default()), hf] {
            let ids = tok.encode(text.as_bytes());
            assert_eq!(tok.decode_bytes(&ids), text.as_bytes(), "{}", tok.name());
            // The first id that ends inside a character: its bytes, not U+FFFD.
            let mut end = 0;
            let cut = ids.iter().position(|&i| {
                end += tok.decode_bytes(&[i]).len();
                !text.is_char_boundary(end)
            });
            let cut = cut.unwrap_or_else(|| panic!("{}: no id cuts a character", tok.name()));
            assert_eq!(tok.decode_bytes(&ids[..=cut]), text.as_bytes()[..end], "{}", tok.name());
        }
    }

    #[test]
    fn gpt2_chunks_cut_at_safe_points_encode_like_the_whole() {
        let tok = Tokenizer::new(&TokenizerKind::Gpt2).unwrap();
        let text = b"First line.\nSecond  line\n\n\nThird\n  fourth\nfifth.\nSixth\n";
        let whole = tok.encode(text);
        let cuts: Vec<usize> = (0..text.len()).filter(|&i| tok.can_cut(text, i)).collect();
        assert!(!cuts.is_empty());
        let mut pieces = Vec::new();
        let mut start = 0;
        for &c in &cuts {
            pieces.extend(tok.encode(&text[start..c]));
            start = c;
        }
        pieces.extend(tok.encode(&text[start..]));
        assert_eq!(pieces, whole);
    }
}

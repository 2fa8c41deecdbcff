//! GPT-2's byte-level BPE (`r50k_base`), exactly as tiktoken encodes it,
//! with its pre-tokenizer written out by hand. tiktoken splits text with the
//! regex
//!
//! `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`
//!
//! and spends most of its time there (its own notes say so); a scanner
//! over character classes finds the same pieces several times faster. The
//! classes come from the regex crate's own Unicode tables (`regex-syntax`),
//! and each piece is merged by tiktoken's `byte_pair_split` with tiktoken's
//! ranks, so the ids are tiktoken's (tested on the whole default corpus and
//! on random Unicode text).

use regex_syntax::hir::{Class, HirKind};
use rustc_hash::FxHashMap;
use tiktoken_rs::{byte_pair_split, CoreBPE, Rank};

/// The regex classes a piece is made of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s`
    Space,
    /// `[^\s\p{L}\p{N}]`
    Other,
}

/// Sorted, disjoint inclusive ranges of one Unicode class.
struct Ranges(Vec<(char, char)>);

impl Ranges {
    /// The ranges of a regex class such as `\p{L}`, as the regex crate reads it.
    fn of(class: &str) -> Ranges {
        let hir = regex_syntax::parse(class).expect("a Unicode class the regex crate knows");
        match hir.kind() {
            HirKind::Class(Class::Unicode(c)) => Ranges(c.ranges().iter().map(|r| (r.start(), r.end())).collect()),
            k => unreachable!("{class} parsed as {k:?}"),
        }
    }

    fn contains(&self, c: char) -> bool {
        self.0
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

pub struct Gpt2 {
    /// The bytes of each id (the special token's too), decoded from
    /// tiktoken's encoder once: for decoding and the byte table.
    bytes: Vec<Vec<u8>>,
    ranks: FxHashMap<Vec<u8>, Rank>,
    ascii: [Kind; 128],
    letter: Ranges,
    number: Ranges,
    space: Ranges,
}

impl Default for Gpt2 {
    fn default() -> Gpt2 {
        Gpt2::new()
    }
}

impl Gpt2 {
    pub fn new() -> Gpt2 {
        let bpe: CoreBPE = tiktoken_rs::r50k_base().expect("r50k_base is compiled in");
        let bytes: Vec<Vec<u8>> = (0..crate::config::GPT2_VOCAB as Rank)
            .map(|id| bpe._decode_native_and_split(vec![id]).flatten().collect())
            .collect();
        // The ranks of the ordinary ids (the special token, 50256, is never
        // produced by ordinary encoding).
        let ranks = bytes[..bytes.len() - 1].iter().zip(0..).map(|(b, id)| (b.clone(), id)).collect();
        let (letter, number, space) = (Ranges::of(r"\p{L}"), Ranges::of(r"\p{N}"), Ranges::of(r"\s"));
        let mut g = Gpt2 { bytes, ranks, ascii: [Kind::Other; 128], letter, number, space };
        for b in 0..128u8 {
            g.ascii[b as usize] = g.classify(b as char);
        }
        g
    }

    fn classify(&self, c: char) -> Kind {
        if self.letter.contains(c) {
            Kind::Letter
        } else if self.number.contains(c) {
            Kind::Number
        } else if self.space.contains(c) {
            Kind::Space
        } else {
            Kind::Other
        }
    }

    fn kind(&self, c: char) -> Kind {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            self.classify(c)
        }
    }

    /// Where the piece starting at byte `i` of `s` ends: the regex's match
    /// there, alternative by alternative.
    fn piece_end(&self, s: &str, i: usize) -> usize {
        let b = s.as_bytes();
        let mut chars = s[i..].chars();
        let c = chars.next().expect("i is inside s");
        // '(?:[sdmt]|ll|ve|re)
        if c == '\'' {
            match b.get(i + 1..i + 3) {
                Some(b"ll" | b"ve" | b"re") => return i + 3,
                _ if matches!(b.get(i + 1), Some(b's' | b'd' | b'm' | b't')) => return i + 2,
                _ => {}
            }
        }
        // ` ?\p{L}++`, ` ?\p{N}++`, ` ?[^\s\p{L}\p{N}]++`: an optional space,
        // then the longest run of one class.
        let (start, first) = match (c, chars.next()) {
            (' ', Some(n)) if self.kind(n) != Kind::Space => (i + 1, n),
            _ => (i, c),
        };
        let class = self.kind(first);
        if class != Kind::Space {
            let run = s[start..].char_indices().find(|&(_, ch)| self.kind(ch) != class);
            return run.map_or(s.len(), |(k, _)| start + k);
        }
        // `\s++$`, `\s+(?!\S)`, `\s`: a run of spaces to the end of the text
        // is one piece; otherwise the run but its last character (which goes
        // with what follows), or a single one.
        let mut last = i;
        for (count, (k, ch)) in s[i..].char_indices().enumerate() {
            if self.kind(ch) != Kind::Space {
                return if count >= 2 { last } else { i + c.len_utf8() };
            }
            last = i + k;
        }
        s.len()
    }

    /// The bytes `ids` stand for.
    pub fn decode(&self, ids: &[Rank]) -> Vec<u8> {
        ids.iter().flat_map(|&id| self.bytes[id as usize].iter().copied()).collect()
    }

    /// The bytes of every id, indexed by id (the special token's too).
    pub fn id_bytes(&self) -> &[Vec<u8>] {
        &self.bytes
    }

    /// The merges that rebuild the ranks, in rank order: for each id of two
    /// or more bytes, the two pieces that byte-pair merging with the lower
    /// ranks alone leaves of it (as Hugging Face's tiktoken converter derives
    /// GPT-2's `merges.txt`). Returns (id, left, right).
    pub fn merges(&self) -> Vec<(Rank, &[u8], &[u8])> {
        let ordinary = &self.bytes[..self.bytes.len() - 1];
        let mut out = Vec::with_capacity(ordinary.len());
        for (id, token) in ordinary.iter().enumerate() {
            let id = id as Rank;
            if token.len() < 2 {
                continue;
            }
            // Piece boundaries (start offsets); merge the lowest-ranked
            // adjacent pair below `id` until none is left.
            let mut cuts: Vec<usize> = (0..=token.len()).collect();
            loop {
                let best = (0..cuts.len() - 2)
                    .filter_map(|i| self.ranks.get(&token[cuts[i]..cuts[i + 2]]).map(|&r| (r, i)))
                    .filter(|&(r, _)| r < id)
                    .min();
                match best {
                    Some((_, i)) => {
                        cuts.remove(i + 1);
                    }
                    None => break,
                }
            }
            assert_eq!(cuts.len(), 3, "GPT-2 id {id} is not one merge of two lower-ranked ids");
            out.push((id, &token[..cuts[1]], &token[cuts[1]..]));
        }
        out
    }

    /// Bytes of text each id stands for, indexed by id.
    pub fn byte_table(&self) -> Vec<u16> {
        self.bytes.iter().map(|b| b.len() as u16).collect()
    }

    /// tiktoken's `encode_ordinary(text)`.
    pub fn encode(&self, text: &str) -> Vec<Rank> {
        let mut out = Vec::with_capacity(text.len() / 4);
        let mut i = 0;
        while i < text.len() {
            let end = self.piece_end(text, i);
            let piece = &text.as_bytes()[i..end];
            match self.ranks.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(byte_pair_split(piece, &self.ranks).into_iter().map(|p| self.ranks[p])),
            }
            i = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;

    /// Characters where the classes are easy to get wrong: letters of
    /// several scripts, combining marks (not \p{L}), numbers that are not
    /// digits (\p{N}), Unicode spaces, apostrophes and punctuation.
    const TRICKY: &[char] = &[
        'a', 'Z', 's', 't', 'l', 'v', 'e', 'r', 'd', 'm', '\'', '’', ' ', ' ', ' ', '\n', '\n', '\r', '\t', '\u{a0}',
        '\u{2009}', '\u{3000}', '\u{85}', '\u{b}', '\u{c}', '0', '9', '½', '٣', 'Ⅻ', '²', 'é', 'ß', 'Ж', 'λ', '中',
        'あ', 'ا', '\u{301}', '\u{93f}', 'ǅ', 'ʰ', '!', '?', '.', ',', '-', '—', '"', '(', '😀', '\u{200d}', '_', '#',
    ];

    #[test]
    fn random_unicode_text_encodes_as_tiktoken_does() {
        let (g, tiktoken) = (Gpt2::new(), tiktoken_rs::r50k_base().unwrap());
        let mut rng = Rng::new(7);
        for _ in 0..3000 {
            let len = 1 + (rng.next_u64() % 40) as usize;
            let text: String = (0..len).map(|_| TRICKY[(rng.next_u64() % TRICKY.len() as u64) as usize]).collect();
            assert_eq!(g.encode(&text), tiktoken.encode_ordinary(&text), "{text:?}");
        }
    }

    #[test]
    fn every_regex_alternative_splits_as_tiktoken() {
        let (g, tiktoken) = (Gpt2::new(), tiktoken_rs::r50k_base().unwrap());
        for text in [
            "it's we'll they've you're I'd I'm 'tis '' 'x",
            "a  b   c\n\n\nd \n e\t\tf  ",
            "   ",
            " ",
            "x ",
            "12 345 ½ apples!!! ?? ...and — then",
            "\u{a0}word \u{3000}字 e\u{301}te",
        ] {
            assert_eq!(g.encode(text), tiktoken.encode_ordinary(text), "{text:?}");
        }
    }
}

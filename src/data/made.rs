//! Benchmark tasks built from a corpus's held-out split, for when no public
//! task files are at hand (`gda data make-tasks`, and `gda reproduce`
//! without `--tasks`). Both are four-way choices in the generic JSONL layout
//! (`{"context", "choices", "gold"}`, docs/bench.md), so any tool that reads
//! that layout scores the same items:
//!
//! - `corpus_cloze` (LAMBADA-style): the last word of a passage, against
//!   three words drawn from elsewhere in the split;
//! - `corpus_choice` (HellaSwag-style): the true next words after a
//!   passage, against three spans of as many words drawn from elsewhere in
//!   the split.
//!
//! Passages and endings are sized to the context the models are scored at
//! ([`Sizes::for_context`]): an item whose choice would not fit in half of
//! it (in bytes, which no tokenizer exceeds in tokens) is skipped.
//!
//! Passages are consecutive and non-overlapping from the start of the split;
//! the draws and the gold's position come from [`Rng`] seeded by `seed`, so
//! the same text and seed give the same files. They measure the same skill as
//! their namesakes on the user's own text; they are not those benchmarks.

use std::path::{Path, PathBuf};

use super::{Corpus, Rng, Tokenizer};
use crate::config::DataConfig;
use crate::error::{input, io, GdaError};
use crate::util::fs::atomic_write;

/// How long the items are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizes {
    /// Words of a passage (a cloze's includes its answer).
    pub passage_words: usize,
    /// Words of each ending of the choice task.
    pub ending_words: usize,
    /// Longest choice, in bytes.
    pub max_choice_bytes: usize,
}

impl Sizes {
    /// Items for models scored at `context` tokens: choices within half of
    /// it, passages about the other half (at ~6 bytes a word), at most 30
    /// words of passage and 10 of ending.
    pub fn for_context(context: usize) -> Sizes {
        let half = (context / 2).max(1);
        Sizes { passage_words: (half / 6).clamp(3, 30), ending_words: (half / 7).clamp(1, 10), max_choice_bytes: half }
    }
}
/// The tasks' names (their files are `NAME.jsonl`).
pub const CLOZE: &str = "corpus_cloze";
pub const CHOICE: &str = "corpus_choice";
/// Fewest items a task may have: fewer cannot tell models apart.
pub const MIN_ITEMS: usize = 20;

/// The held-out split of `data` as text (its tokens decoded): what the
/// tasks are built from, text no run of the spec trains on.
pub fn held_out_text(data: &DataConfig, threads: usize) -> Result<String, GdaError> {
    let val = Corpus::load(data, threads)?.val;
    let mut ids = Vec::with_capacity(val.len);
    val.read(0, val.len, &mut ids);
    let ids: Vec<u32> = ids.into_iter().map(|i| i as u32).collect();
    let tok = Tokenizer::new(&data.tokenizer)?;
    Ok(String::from_utf8_lossy(&tok.decode_bytes(&ids)).into_owned())
}

/// One generic-layout item.
fn item(context: String, gold_text: String, distractors: Vec<String>, rng: &mut Rng) -> serde_json::Value {
    let gold = rng.below(distractors.len() + 1);
    let mut choices = distractors;
    choices.insert(gold, gold_text);
    serde_json::json!({ "context": context, "choices": choices, "gold": gold })
}

/// Three distinct words of `words`, none equal to `gold`.
fn other_words(words: &[&str], gold: &str, rng: &mut Rng) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Bounded: a text of one repeated word has no distractors to give.
    for _ in 0..1000 {
        let w = words[rng.below(words.len())];
        if w != gold && !out.iter().any(|o| o == w) {
            out.push(w.to_string());
            if out.len() == 3 {
                break;
            }
        }
    }
    out
}

/// Three spans of `len` words starting at least `len` words away from
/// `start` (so none is the true ending or overlaps it), distinct from `gold`.
fn other_spans(words: &[&str], start: usize, len: usize, gold: &str, rng: &mut Rng) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..1000 {
        let s = rng.below(words.len() - len);
        if s.abs_diff(start) < len {
            continue;
        }
        let span = words[s..s + len].join(" ");
        if span != gold && !out.contains(&span) {
            out.push(span);
            if out.len() == 3 {
                break;
            }
        }
    }
    out
}

/// The two tasks' JSONL text (cloze, choice), at most `n` items each.
pub fn make_tasks(text: &str, n: usize, seed: u64, sizes: Sizes) -> Result<(String, String), GdaError> {
    let Sizes { passage_words, ending_words, max_choice_bytes } = sizes;
    let fits = |choices: &[String]| choices.iter().all(|c| c.len() < max_choice_bytes);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut rng = Rng::new(seed);
    let mut lines = |passage: usize, make: &mut dyn FnMut(usize, &mut Rng) -> Option<serde_json::Value>| {
        let mut out = String::new();
        let mut count = 0;
        let mut start = 0;
        while count < n && start + passage <= words.len() {
            if let Some(v) = make(start, &mut rng) {
                out += &v.to_string();
                out.push('\n');
                count += 1;
            }
            start += passage;
        }
        (out, count)
    };
    let (cloze, nc) = lines(passage_words, &mut |s, rng| {
        let gold = words[s + passage_words - 1];
        let others = other_words(&words, gold, rng);
        let ok = others.len() == 3 && fits(&others) && gold.len() < max_choice_bytes;
        ok.then(|| item(words[s..s + passage_words - 1].join(" "), gold.to_string(), others, rng))
    });
    let span = passage_words + ending_words;
    let (choice, nh) = lines(span, &mut |s, rng| {
        let end = s + passage_words;
        let gold = words[end..end + ending_words].join(" ");
        let others = other_spans(&words, end, ending_words, &gold, rng);
        let ok = others.len() == 3 && fits(&others) && gold.len() < max_choice_bytes;
        ok.then(|| item(words[s..end].join(" "), gold, others, rng))
    });
    if nc.min(nh) < MIN_ITEMS.min(n) {
        return Err(input(format!(
            "the held-out split has {} words: enough for {nc} cloze and {nh} choice items, fewer than the {} each needs; allowed: a larger corpus or data.val_fraction",
            words.len(),
            MIN_ITEMS.min(n)
        )));
    }
    Ok((cloze, choice))
}

/// Writes `corpus_cloze.jsonl` and `corpus_choice.jsonl` into `dir`
/// (each atomically); returns their paths.
pub fn write_tasks(dir: &Path, text: &str, n: usize, seed: u64, sizes: Sizes) -> Result<Vec<PathBuf>, GdaError> {
    let (cloze, choice) = make_tasks(text, n, seed, sizes)?;
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let mut paths = Vec::new();
    for (name, body) in [(CLOZE, cloze), (CHOICE, choice)] {
        let p = dir.join(format!("{name}.jsonl"));
        atomic_write(&p, body.as_bytes()).map_err(io("cannot write", &p))?;
        paths.push(p);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: usize) -> String {
        (0..words).map(|i| format!("w{}", i % 997)).collect::<Vec<_>>().join(" ")
    }

    /// Each item's gold choice is the text's own continuation, the others
    /// are not, and the same seed gives the same files.
    #[test]
    fn the_gold_choice_continues_the_passage() {
        let t = text(20_000);
        let sizes = Sizes::for_context(128);
        let (cloze, choice) = make_tasks(&t, 50, 7, sizes).unwrap();
        assert_eq!(make_tasks(&t, 50, 7, sizes).unwrap(), (cloze.clone(), choice.clone()));
        for (body, sep) in [(&cloze, " "), (&choice, " ")] {
            let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), 50);
            let mut golds = std::collections::BTreeSet::new();
            for v in &lines {
                let ctx = v["context"].as_str().unwrap();
                let choices: Vec<&str> = v["choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
                let gold = v["gold"].as_u64().unwrap() as usize;
                golds.insert(gold);
                assert_eq!(choices.len(), 4);
                assert!(choices.iter().all(|c| c.len() < sizes.max_choice_bytes), "{choices:?}");
                let right = format!("{ctx}{sep}{}", choices[gold]);
                assert!(t.contains(&right), "{right}");
                for (i, c) in choices.iter().enumerate().filter(|(i, _)| *i != gold) {
                    assert!(!t.contains(&format!("{ctx}{sep}{c}")), "choice {i} {c} also continues the passage");
                }
            }
            assert!(golds.len() > 1, "the gold is not always in one position");
        }
        assert!(make_tasks(&text(100), 50, 7, sizes).is_err(), "a split too small for the items is refused");
        // A short context gets short items: every choice fits in half of it.
        let (_, short) = make_tasks(&t, 50, 7, Sizes::for_context(32)).unwrap();
        assert!(short.lines().all(|l| l.len() < 400), "{}", short.lines().next().unwrap());
    }
}

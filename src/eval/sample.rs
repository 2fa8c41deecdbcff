//! What a model writes: autoregressive sampling, with a KV cache or by
//! recomputing the whole prefix at every step.
//!
//! Both ways see the same window of tokens at every step, so they pick the
//! same tokens (up to float rounding of the logits). The window: the model
//! reads at most `context` tokens (its training context). When the sequence
//! outgrows it, the window restarts at the last `context / 2` tokens
//! (rounded up); the cached decoder then rebuilds its cache from them in one
//! forward, so the recompute costs one half-context forward per
//! `context / 2` new tokens, and the model always reads between
//! `context / 2` and `context` tokens.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::data::rng::Rng;
use crate::model::attention::Path;
use crate::model::{KvCache, Model};

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 = greedy (argmax; ties to the lower id); otherwise the logits are
    /// divided by it before the softmax.
    pub temperature: f64,
    /// Only the `k` most likely ids are drawn from (ties to the lower id);
    /// `None` = all.
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// What [`generate`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The new ids, in order.
    pub tokens: Vec<u32>,
    /// Seconds of decoding (the prompt's forward included, model loading not).
    pub secs: f64,
    /// Times the window restarted because the sequence outgrew the context.
    pub restarts: usize,
}

/// Picks the next id from one position's logits over the ids that may be
/// drawn. One uniform draw from `rng` per call when sampling; none when greedy.
pub fn pick(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    // Higher logit first, then the lower id: a total order, so ties never
    // depend on the sort.
    let better = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if s.temperature == 0.0 {
        return (0..logits.len()).min_by(better).expect("a non-empty vocabulary") as u32;
    }
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = s.top_k.filter(|&k| k < ids.len()) {
        ids.select_nth_unstable_by(k - 1, better);
        ids.truncate(k);
        ids.sort_unstable();
    }
    let top = ids.iter().map(|&i| logits[i] as f64).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = ids.iter().map(|&i| ((logits[i] as f64 - top) / s.temperature).exp()).collect();
    let mut u = rng.unit() * weights.iter().sum::<f64>();
    for (&id, w) in ids.iter().zip(&weights) {
        if u < *w {
            return id as u32;
        }
        u -= w;
    }
    // Rounding left u at the very top of the last interval.
    *ids.last().expect("a non-empty candidate set") as u32
}

/// Generates `new_tokens` ids after `prompt` (1..=`context` ids): with
/// `cache`, each step runs only the newest token against the cached keys
/// and values; without, the whole window again. Only ids below `vocab` are
/// drawn (a model's vocabulary may be larger than its tokenizer's).
/// `on_token` sees each id as it is picked and returns whether to go on
/// (false ends the generation after that id, as a stop string does).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &Model,
    prompt: &[u32],
    new_tokens: usize,
    context: usize,
    vocab: usize,
    sampling: &Sampling,
    cache: bool,
    device: Device,
    mut on_token: impl FnMut(u32) -> bool,
) -> Generated {
    assert!(!prompt.is_empty() && prompt.len() <= context, "the caller checks the prompt's length");
    let keep = context.div_ceil(2);
    let started = Instant::now();
    let mut rng = Rng::new(sampling.seed);
    let mut seq: Vec<u32> = prompt.to_vec();
    let mut tokens = Vec::with_capacity(new_tokens);
    let mut kv = cache.then(|| KvCache::new(model));
    // The window is seq[start..]; the cache holds seq[start..fed].
    let (mut start, mut fed, mut restarts) = (0, 0, 0);
    tch::no_grad(|| {
        for _ in 0..new_tokens {
            if seq.len() - start > context {
                start = seq.len() - keep;
                restarts += 1;
                if let Some(kv) = &mut kv {
                    *kv = KvCache::new(model);
                    fed = start;
                }
            }
            let ids = |from: usize| {
                let ids: Vec<i64> = seq[from..].iter().map(|&t| t as i64).collect();
                Tensor::from_slice(&ids).view([1, -1]).to_device(device)
            };
            let logits = match &mut kv {
                Some(kv) => {
                    let x = ids(fed);
                    fed = seq.len();
                    model.forward_cached(&x, Path::Fused, Some(kv)).0
                }
                None => model.forward(&ids(start)),
            };
            let last = logits.select(1, -1).narrow(1, 0, vocab as i64).to_kind(Kind::Float).to_device(Device::Cpu);
            let last: Vec<f32> = Vec::try_from(last.reshape([-1])).expect("fp32 logits");
            let next = pick(&last, sampling, &mut rng);
            seq.push(next);
            tokens.push(next);
            if !on_token(next) {
                break;
            }
        }
    });
    Generated { tokens, secs: started.elapsed().as_secs_f64(), restarts }
}

/// Where the earliest first occurrence of any of `stops` in `text` ends:
/// the text to keep when generation stops at a stop string (it is kept, as
/// Hugging Face `generate(stop_strings=…)` keeps it; what the same token
/// wrote past it is not).
pub fn stop_end(text: &[u8], stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = s.as_bytes();
            text.windows(s.len()).position(|w| w == s).map(|i| i + s.len())
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(logits: &[f32], temperature: f64, top_k: Option<usize>, n: usize) -> Vec<u32> {
        let mut rng = Rng::new(3);
        (0..n).map(|_| pick(logits, &Sampling { temperature, top_k, seed: 3 }, &mut rng)).collect()
    }

    #[test]
    fn greedy_takes_the_first_of_tied_maxima() {
        assert_eq!(draw(&[0.5, 2.0, -1.0, 2.0], 0.0, None, 1), [1]);
        assert_eq!(draw(&[0.5, 2.0, -1.0, 2.0], 0.0, Some(3), 1), [1]);
    }

    #[test]
    fn top_k_draws_only_the_k_most_likely() {
        let logits = [0.0, 3.0, 1.0, 2.9, -2.0, 2.95];
        let seen: std::collections::BTreeSet<u32> = draw(&logits, 5.0, Some(3), 400).into_iter().collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 3, 5]);
        assert!(draw(&logits, 5.0, Some(1), 50).iter().all(|&t| t == 1));
    }

    #[test]
    fn draws_follow_the_softmax() {
        // p = softmax(logits / T): 1/7, 2/7, 4/7 at T = 1.
        let logits = [0.0, 2f32.ln(), 4f32.ln()];
        let n = 20_000;
        let ids = draw(&logits, 1.0, None, n);
        for (id, p) in [(0u32, 1.0 / 7.0), (1, 2.0 / 7.0), (2, 4.0 / 7.0)] {
            let f = ids.iter().filter(|&&t| t == id).count() as f64 / n as f64;
            // Four standard errors of a binomial share.
            assert!((f - p).abs() < 4.0 * (p * (1.0 - p) / n as f64).sqrt(), "id {id}: {f} vs {p}");
        }
        // A high temperature flattens the distribution.
        let hot = draw(&logits, 100.0, None, n);
        let f0 = hot.iter().filter(|&&t| t == 0).count() as f64 / n as f64;
        assert!((f0 - 1.0 / 3.0).abs() < 0.02, "{f0}");
    }

    #[test]
    fn the_earliest_stop_string_ends_the_text() {
        let stops = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(stop_end(b"to be or not to be", &stops(&["be"])), Some(5));
        assert_eq!(stop_end(b"to be or not to be", &stops(&["not", "or"])), Some(8));
        assert_eq!(stop_end(b"to be", &stops(&["bee", ""])), None);
        assert_eq!(stop_end(b"", &stops(&["a"])), None);
    }
}

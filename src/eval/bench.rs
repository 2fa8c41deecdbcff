//! Zero-shot benchmark scoring (`gda eval --suite bench`): the summed
//! log-likelihood of each request's continuation, and the task metrics
//! lm-evaluation-harness 0.4 computes from them (acc, acc_norm, their
//! standard errors; last-word accuracy and perplexity for a cloze).

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::data::bench::{encode_pair, Format, Item, Task};
use crate::data::Tokenizer;
use crate::error::{input, GdaError};
use crate::model::{KvCache, Model};
use crate::report::mean_std;

/// One request's score, as lm-eval's `loglikelihood` returns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Sum over the continuation's tokens of log p(token | everything before).
    pub loglik: f64,
    /// Every continuation token is the model's argmax.
    pub greedy: bool,
    /// Context + continuation did not fit: tokens were dropped on the left.
    pub truncated: bool,
}

/// Rows of head logits computed at once: bounds the (rows × vocab) buffer.
const HEAD_ROWS: i64 = 256;

/// Scores (context ids, continuation ids) pairs as lm-eval's causal HF model
/// does: the model reads the last `max_len + 1` tokens of context +
/// continuation but the final one, and the continuation's tokens are scored
/// at the positions that predict them (the context's last token's and the
/// continuation's but its last).
///
/// Each row's input is split there: a prefix that is run once into a KV
/// cache for all the rows that share it (every choice of an item), and a
/// suffix of the scored positions, which the rows run as one right-padded
/// batch attending to their copy of the cache. Positions stay those of the
/// whole row (the suffix follows the cache), padding lies after a row's
/// real positions in a causal model (it changes nothing they see), and
/// prefixes are batched only with prefixes of the same length, so no
/// padding ever sits inside a cache. A truncated row's prefix is its own
/// cut context, shared only with rows cut the same way. Batches hold about
/// `batch_tokens` positions of cache + suffix; the LM head runs only at the
/// scored positions.
pub fn score(
    model: &Model,
    pairs: &[(Vec<u32>, Vec<u32>)],
    max_len: usize,
    batch_tokens: usize,
    device: Device,
) -> Vec<Scored> {
    let (rows, groups) = split_rows(pairs, max_len);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| std::cmp::Reverse(groups[g].prefix.len()));
    let mut out = vec![Scored { loglik: 0.0, greedy: false, truncated: false }; rows.len()];
    tch::no_grad(|| {
        let mut start = 0;
        while start < order.len() {
            let (end, width) = next_batch(&rows, &groups, &order, start, batch_tokens);
            let chunk: Vec<&Group> = order[start..end].iter().map(|&g| &groups[g]).collect();
            start = end;
            score_batch(model, &rows, &chunk, width, device, &mut out);
        }
    });
    out
}

/// One request as the model reads it.
struct Row {
    /// Scored positions' inputs: the context's last token, then the
    /// continuation but its last.
    suffix: Vec<i64>,
    cont: Vec<i64>,
    truncated: bool,
}

/// The rows that share one prefix.
struct Group {
    prefix: Vec<i64>,
    members: Vec<usize>,
}

/// Each pair's row, and the rows by shared prefix, in order of first
/// appearance.
fn split_rows(pairs: &[(Vec<u32>, Vec<u32>)], max_len: usize) -> (Vec<Row>, Vec<Group>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: HashMap<Vec<i64>, usize> = HashMap::new();
    let rows: Vec<Row> = pairs
        .iter()
        .enumerate()
        .map(|(i, (ctx, cont))| {
            let whole: Vec<i64> = ctx.iter().chain(cont).map(|&t| t as i64).collect();
            let from = whole.len().saturating_sub(max_len + 1);
            let kept = &whole[from..];
            let input = &kept[..kept.len() - 1];
            let split = input.len() - cont.len();
            let g = *group_of.entry(input[..split].to_vec()).or_insert_with(|| {
                groups.push(Group { prefix: input[..split].to_vec(), members: Vec::new() });
                groups.len() - 1
            });
            groups[g].members.push(i);
            Row { suffix: input[split..].to_vec(), cont: cont.iter().map(|&t| t as i64).collect(), truncated: from > 0 }
        })
        .collect();
    (rows, groups)
}

/// The end in `order` of the batch that starts at `start`, and its suffix
/// width: groups with one prefix length, while rows × (prefix + widest
/// suffix) fits the budget (always at least one group).
fn next_batch(rows: &[Row], groups: &[Group], order: &[usize], start: usize, batch_tokens: usize) -> (usize, usize) {
    let len = groups[order[start]].prefix.len();
    let (mut end, mut n_rows, mut width) = (start, 0, 0);
    while end < order.len() && groups[order[end]].prefix.len() == len {
        let members = &groups[order[end]].members;
        let w = members.iter().map(|&i| rows[i].suffix.len()).max().unwrap_or(0).max(width);
        if end > start && (n_rows + members.len()) * (len + w) > batch_tokens {
            break;
        }
        (n_rows, width) = (n_rows + members.len(), w);
        end += 1;
    }
    (end, width)
}

/// Scores the rows of `chunk`'s groups (one prefix length): their prefixes
/// into a KV cache, copied to each member row, then the right-padded
/// suffixes of `width` positions; writes each row's score into `out`.
fn score_batch(model: &Model, rows: &[Row], chunk: &[&Group], width: usize, device: Device, out: &mut [Scored]) {
    let len = chunk[0].prefix.len();
    let mut cache = KvCache::new(model);
    if len > 0 {
        let prefixes: Vec<i64> = chunk.iter().flat_map(|g| g.prefix.iter().copied()).collect();
        let x = Tensor::from_slice(&prefixes).view([chunk.len() as i64, len as i64]).to_device(device);
        let _ = model.hidden(&x, Some(&mut cache));
    }
    let batch: Vec<usize> = chunk.iter().flat_map(|g| g.members.iter().copied()).collect();
    let copies: Vec<i64> =
        chunk.iter().enumerate().flat_map(|(k, g)| std::iter::repeat_n(k as i64, g.members.len())).collect();
    let mut cache = cache.select_rows(&Tensor::from_slice(&copies).to_device(device));
    let mut tokens = vec![0i64; batch.len() * width];
    let (mut at, mut targets) = (Vec::new(), Vec::new());
    for (b, &i) in batch.iter().enumerate() {
        let r = &rows[i];
        tokens[b * width..b * width + r.suffix.len()].copy_from_slice(&r.suffix);
        at.extend((0..r.cont.len()).map(|p| (b * width + p) as i64));
        targets.extend_from_slice(&r.cont);
    }
    let x = Tensor::from_slice(&tokens).view([batch.len() as i64, width as i64]).to_device(device);
    let hidden = model.hidden(&x, Some(&mut cache));
    let d = hidden.size()[2];
    let (lp, hit) = head_scores(model, &hidden.reshape([-1, d]), &at, &targets, device);
    let mut k = 0;
    for &i in &batch {
        let c = rows[i].cont.len();
        out[i] = Scored {
            loglik: lp[k..k + c].iter().map(|&v| v as f64).sum(),
            greedy: hit[k..k + c].iter().all(|&h| h == 1),
            truncated: rows[i].truncated,
        };
        k += c;
    }
}

/// The log-probability of each target at its position `at` of the flat
/// `hidden` states, and whether it is the argmax (1) or not (0); the head
/// runs only at those positions, [`HEAD_ROWS`] at a time.
fn head_scores(model: &Model, hidden: &Tensor, at: &[i64], targets: &[i64], device: Device) -> (Vec<f32>, Vec<i64>) {
    let (mut lp, mut hit) = (Vec::<f32>::with_capacity(at.len()), Vec::<i64>::with_capacity(at.len()));
    for (pos, tgt) in at.chunks(HEAD_ROWS as usize).zip(targets.chunks(HEAD_ROWS as usize)) {
        let idx = Tensor::from_slice(pos).to_device(device);
        let tgt = Tensor::from_slice(tgt).to_device(device);
        let logits = model.head(&hidden.index_select(0, &idx));
        let logp = logits.log_softmax(-1, Kind::Float).gather(1, &tgt.unsqueeze(1), false).squeeze_dim(1);
        let greedy = logits.argmax(-1, false).eq_tensor(&tgt).to_kind(Kind::Int64);
        lp.extend(Vec::<f32>::try_from(logp.to_device(Device::Cpu)).expect("fp32 log-probs"));
        hit.extend(Vec::<i64>::try_from(greedy.to_device(Device::Cpu)).expect("int64 flags"));
    }
    (lp, hit)
}

/// One item's scores: a log-likelihood per choice and the predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScore {
    /// 1-based line of the task file.
    pub line: usize,
    pub gold: usize,
    pub lls: Vec<f64>,
    pub greedy: Vec<bool>,
    /// First argmax of `lls` (lm-eval's np.argmax: ties go to the first).
    pub pred: usize,
    /// First argmax of `lls` / choice length in characters; None where
    /// lm-eval reports no acc_norm.
    pub pred_norm: Option<usize>,
    pub truncated: bool,
}

/// A task's metrics over its items (lm-eval's names).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScore {
    pub n: usize,
    /// Multiple choice: pred == gold; cloze: the continuation is greedy.
    pub acc: f64,
    pub acc_stderr: Option<f64>,
    pub acc_norm: Option<f64>,
    pub acc_norm_stderr: Option<f64>,
    /// Cloze only: exp(−mean log-likelihood of the target).
    pub ppl: Option<f64>,
    /// Items with a request truncated on the left.
    pub truncated: usize,
    pub items: Vec<ItemScore>,
}

/// The first index of the largest value (NaN never wins).
pub fn first_argmax(v: impl IntoIterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.into_iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// lm-eval's `mean_stderr`: sample std / √n (None below two items).
fn mean_and_stderr(v: &[f64]) -> (f64, Option<f64>) {
    let (mean, std) = mean_std(v);
    (mean, (v.len() > 1).then(|| std / (v.len() as f64).sqrt()))
}

/// Tokenizes and scores the items of `task` with contexts of at most
/// `max_len` tokens; a continuation alone longer than that is refused
/// (lm-eval asserts it cannot happen), naming the file and line.
pub fn score_task(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    items: &[Item],
    max_len: usize,
    batch_tokens: usize,
    device: Device,
) -> Result<TaskScore, GdaError> {
    let mut pairs = Vec::new();
    for it in items {
        for r in &it.requests {
            let (ctx, cont) = encode_pair(tok, r);
            if cont.is_empty() || cont.len() > max_len {
                return Err(input(format!(
                    "{}:{}: continuation {:?} is {} tokens; allowed: 1 to {max_len} (the context the model is scored at)",
                    task.path.display(),
                    it.line,
                    r.continuation,
                    cont.len()
                )));
            }
            pairs.push((ctx, cont));
        }
    }
    let scored = score(model, &pairs, max_len, batch_tokens, device);
    let mut at = 0;
    let norm = task.format.has_acc_norm();
    let cloze = task.format == Format::Lambada;
    let scores: Vec<ItemScore> = items
        .iter()
        .map(|it| {
            let s = &scored[at..at + it.requests.len()];
            at += it.requests.len();
            let lls: Vec<f64> = s.iter().map(|x| x.loglik).collect();
            let pred = first_argmax(lls.iter().copied());
            let pred_norm = norm.then(|| first_argmax(lls.iter().zip(&it.choice_chars).map(|(l, &c)| l / c as f64)));
            ItemScore {
                line: it.line,
                gold: it.gold,
                greedy: s.iter().map(|x| x.greedy).collect(),
                pred,
                pred_norm,
                truncated: s.iter().any(|x| x.truncated),
                lls,
            }
        })
        .collect();
    let hit = |b: bool| if b { 1.0 } else { 0.0 };
    let accs: Vec<f64> = scores.iter().map(|s| if cloze { hit(s.greedy[0]) } else { hit(s.pred == s.gold) }).collect();
    let (acc, acc_stderr) = mean_and_stderr(&accs);
    let (acc_norm, acc_norm_stderr) = if norm {
        let v: Vec<f64> = scores.iter().map(|s| hit(s.pred_norm == Some(s.gold))).collect();
        let (m, se) = mean_and_stderr(&v);
        (Some(m), se)
    } else {
        (None, None)
    };
    let ppl = cloze.then(|| (-scores.iter().map(|s| s.lls[0]).sum::<f64>() / scores.len() as f64).exp());
    Ok(TaskScore {
        n: scores.len(),
        acc,
        acc_stderr,
        acc_norm,
        acc_norm_stderr,
        ppl,
        truncated: scores.iter().filter(|s| s.truncated).count(),
        items: scores,
    })
}

#[cfg(test)]
mod tests {
    use super::first_argmax;

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(first_argmax([-2.0, -1.0, -1.0]), 1);
        assert_eq!(first_argmax([-1.0, -1.0]), 0);
        assert_eq!(first_argmax([f64::NAN, -3.0]), 1);
    }
}

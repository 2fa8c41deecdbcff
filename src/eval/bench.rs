//! Zero-shot benchmark scoring (`gda eval --suite bench`): the summed
//! log-likelihood of each request's continuation, and the task metrics
//! lm-evaluation-harness 0.4 computes from them (acc, acc_norm, their
//! standard errors; last-word accuracy and perplexity for a cloze).

use tch::Device;

pub use super::loglik::{batch_lengths, score, Scored};
use crate::data::bench::{encode_pair, Format, Item, Task};
use crate::data::Tokenizer;
use crate::error::{input, GdaError};
use crate::model::Model;
use crate::report::mean_std;

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

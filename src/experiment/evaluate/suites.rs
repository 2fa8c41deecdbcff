//! The suites of `gda eval` on one loaded run, each appending its rows to
//! the tables: lm, bench, the retrieval tasks and the attention analysis of
//! their examples.

use tch::Device;

use super::{EvalOptions, Tables, Target};
use crate::config::{Spec, TaskKind};
use crate::data::bench::{Item, Task};
use crate::data::tasks::{self, Example};
use crate::data::{eval_offsets, Corpus, Split, Tokenizer};
use crate::error::{input, GdaError};
use crate::eval::analysis;
use crate::eval::bench::{score_task, TaskScore};
use crate::eval::{lm_eval, retrieval_eval};
use crate::model::Model;
use crate::report::eval::{average_row, AttentionRow, BenchRow, Identified, LmRow, RetrievalRow};

/// A run with its checkpoint loaded, and the contexts it is scored at.
pub(super) struct Loaded<'a> {
    pub target: &'a Target,
    pub spec: &'a Spec,
    pub model: &'a Model,
    pub device: Device,
    /// The checkpoint's step.
    pub step: usize,
    pub contexts: &'a [usize],
}

impl Loaded<'_> {
    /// Batches of about the training batch's tokens, whatever the context.
    fn rows(&self, c: usize) -> usize {
        (self.spec.train.batch_size * self.spec.train.context / c).max(1)
    }
}

/// The lm suite: loss, perplexity and bits per byte at each context.
pub(super) fn lm(
    run: &Loaded,
    opts: &EvalOptions,
    corpora: &mut Vec<(String, Split)>,
    tables: &mut Tables,
) -> Result<(), GdaError> {
    let spec = run.spec;
    let (val, what) = corpus(spec, opts, corpora)?;
    let budget = opts.tokens.unwrap_or(spec.train.eval_tokens);
    for &c in run.contexts {
        if c + 1 > val.len {
            return Err(input(format!(
                "context {c} of run {} is longer than {what} ({} tokens); allowed: --contexts of at most {}",
                run.target.label,
                val.len,
                val.len.saturating_sub(1)
            )));
        }
        let s = lm_eval(run.model, val, &eval_offsets(val.len, c, budget), c, run.rows(c), run.device);
        let mut row = LmRow {
            run: run.target.label.clone(),
            step: run.step,
            context: c,
            train_context: spec.train.context,
            tokens: s.tokens,
            loss: s.loss,
            ppl: s.loss.exp(),
            bpb: s.bpb,
            ..LmRow::default()
        };
        row.set_id(&run.target.id);
        tables.lm.push(row);
    }
    Ok(())
}

/// The text the lm suite scores, the run's validation split or all of the
/// --data text, loaded once into `corpora` for all the runs that share it;
/// and how an error names it.
fn corpus<'c>(
    spec: &Spec,
    opts: &EvalOptions,
    corpora: &'c mut Vec<(String, Split)>,
) -> Result<(&'c Split, String), GdaError> {
    let mut data_cfg = spec.data.clone();
    data_cfg.task = TaskKind::Text;
    let (key, what) = match &opts.data {
        Some(d) => (format!("whole {} {data_cfg:?}", d.display()), format!("--data {}", d.display())),
        None => (format!("{data_cfg:?}"), "the run's validation split".to_string()),
    };
    let at = match corpora.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let text = match &opts.data {
                Some(d) => Corpus::whole(d, &data_cfg, spec.train.threads)?,
                None => Corpus::load(&data_cfg, spec.train.threads)?.val,
            };
            corpora.push((key, text));
            corpora.len() - 1
        }
    };
    Ok((&corpora[at].1, what))
}

/// The bench suite: each task at each context, the run's average over its
/// tasks, and every item's scores (bench_items.jsonl).
pub(super) fn bench(run: &Loaded, bench: &[(Task, Vec<Item>)], tables: &mut Tables) -> Result<(), GdaError> {
    let tok = Tokenizer::new(&run.spec.data.tokenizer)?;
    // Rows of one batch share this many tokens (padding included).
    let batch_tokens = (run.spec.train.batch_size * run.spec.train.context).max(4096);
    // What scripts/bench_eval.sh compares with lm-eval's evaluation loop:
    // the scoring alone, the model and tokenizer already loaded.
    let start = std::time::Instant::now();
    let (mut n_items, mut n_requests) = (0, 0);
    for &c in run.contexts {
        let mut rows = Vec::new();
        for (task, items) in bench {
            let s = score_task(run.model, &tok, task, items, c, batch_tokens, run.device)?;
            println!(
                "  {} @{c}: {} items, acc {:.4}{}{}",
                task.name,
                s.n,
                s.acc,
                s.acc_norm.map(|a| format!(", acc_norm {a:.4}")).unwrap_or_default(),
                if s.truncated > 0 { format!(", {} truncated", s.truncated) } else { String::new() }
            );
            for (i, it) in s.items.iter().enumerate() {
                let line = serde_json::json!({
                    "run": run.target.label, "task": task.name, "context": c, "doc": i, "line": it.line,
                    "gold": it.gold, "lls": it.lls, "greedy": it.greedy, "pred": it.pred,
                    "pred_norm": it.pred_norm, "truncated": it.truncated,
                });
                tables.bench_items.extend(line.to_string().bytes());
                tables.bench_items.push(b'\n');
            }
            (n_items, n_requests) = (n_items + s.n, n_requests + s.items.iter().map(|i| i.lls.len()).sum::<usize>());
            rows.push(bench_row(run, task, c, &s));
        }
        let average = average_row(&rows);
        tables.bench.extend(rows);
        tables.bench.extend(average);
    }
    println!(
        "  bench: {n_items} items, {n_requests} requests scored in {:.3} s after load",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench_row(run: &Loaded, task: &Task, c: usize, s: &TaskScore) -> BenchRow {
    let mut row = BenchRow {
        run: run.target.label.clone(),
        step: run.step,
        task: task.name.clone(),
        context: c,
        train_context: run.spec.train.context,
        n: s.n,
        acc: s.acc,
        acc_stderr: s.acc_stderr,
        acc_norm: s.acc_norm,
        acc_norm_stderr: s.acc_norm_stderr,
        ppl: s.ppl,
        truncated: s.truncated,
        ..BenchRow::default()
    };
    row.set_id(&run.target.id);
    row
}

/// The retrieval suites: accuracy per task, context and (NIAH) needle
/// depth; with `analyse`, the attention suite on the same examples.
pub(super) fn retrieval(run: &Loaded, tasks: &[TaskKind], analyse: bool, opts: &EvalOptions, tables: &mut Tables) {
    let n = opts.examples.unwrap_or(run.spec.task.eval_examples);
    for &kind in tasks {
        let depths: Vec<Option<f64>> = match kind {
            TaskKind::Niah if opts.depths.is_empty() => [0.0, 0.25, 0.5, 0.75, 1.0].into_iter().map(Some).collect(),
            TaskKind::Niah => opts.depths.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        for &c in run.contexts {
            let mut all = Vec::new();
            for &depth in &depths {
                let examples = tasks::eval_set(&run.spec.task, kind, c, n, depth);
                let s = retrieval_eval(run.model, &examples, run.rows(c), run.device);
                let mut row = RetrievalRow {
                    run: run.target.label.clone(),
                    step: run.step,
                    task: kind.name().into(),
                    context: c,
                    train_context: run.spec.train.context,
                    depth,
                    examples: n,
                    queries: s.queries,
                    loss: s.loss,
                    acc: s.acc,
                    token_acc: s.token_acc,
                    ..RetrievalRow::default()
                };
                row.set_id(&run.target.id);
                tables.retrieval.push(row);
                all.extend(examples);
            }
            if analyse {
                attention(run, kind, c, &all, tables);
            }
        }
    }
}

/// The attention suite's rows for the retrieval examples of `kind` at
/// context `c`: one per layer and head group, and one per layer.
fn attention(run: &Loaded, kind: TaskKind, c: usize, examples: &[Example], tables: &mut Tables) {
    for g in analysis::analyse(run.model, examples, run.device) {
        let mut row = AttentionRow {
            run: run.target.label.clone(),
            step: run.step,
            task: kind.name().into(),
            context: c,
            layer: g.layer,
            head_group: g.group.map(|x| x.to_string()).unwrap_or_else(|| "all".into()),
            heads: g.heads,
            lambda: g.lambda,
            answer_mass: g.stats.answer,
            noise_mass: g.stats.noise,
            entropy: g.stats.entropy,
            sparsity: g.stats.sparsity,
            signal_answer: g.signal_answer,
            noise_answer: g.noise_answer,
            rows: g.rows,
            ..AttentionRow::default()
        };
        row.set_id(&run.target.id);
        tables.attention.push(row);
    }
}

//! The summed log-likelihood of (context, continuation) requests, scored as
//! lm-eval's causal HF model scores them but without its repeated work:
//! each distinct context runs once into a KV cache shared by its requests,
//! contexts of different lengths share a batch, every model state that
//! predicts a scored token gets its LM head once however many requests
//! share it, and the head runs in full chunks pooled across batches.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::model::{KvCache, Model};

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

/// Rows of head logits computed at once: bounds the (rows × vocab) buffer,
/// and keeps it small enough to be read back from cache by the log-softmax.
const HEAD_ROWS: usize = 128;

/// A batch may spend this much more than its requests' own positions (the
/// shorter cache makes longer contexts run their tail once per request):
/// fewer, fuller batches win over exact lengths only up to there.
const SLACK: f64 = 1.25;

/// Scores (context ids, continuation ids) pairs as lm-eval's causal HF model
/// does: the model reads the last `max_len + 1` tokens of context +
/// continuation but the final one, and the continuation's tokens are scored
/// at the positions that predict them (the context's last token's and the
/// continuation's but its last).
///
/// Each row's input splits after its context: the context (as kept) runs
/// once into a KV cache for all the rows that share it, and the rest (the
/// continuation but its last token) runs as one right-padded batch of rows
/// attending to their copy of the cache. Contexts of different lengths
/// share a batch at the cache length of the shortest: a longer context's
/// tail joins each of its rows' suffix. So the cache never holds padding,
/// positions stay those of the whole row (RoPE), and padding lies only
/// after a row's real positions, where a causal model cannot see it. A
/// truncated row's context is its own cut one, shared only with rows cut
/// the same way. Batches hold about `batch_tokens` positions.
pub fn score(
    model: &Model,
    pairs: &[(Vec<u32>, Vec<u32>)],
    max_len: usize,
    batch_tokens: usize,
    device: Device,
) -> Vec<Scored> {
    let plan = Plan::new(pairs, max_len);
    let mut head = Head::new(&plan, device);
    let mut sourced = vec![false; plan.uses.len()];
    tch::no_grad(|| {
        for batch in plan.batches(batch_tokens) {
            let (hidden, states) = plan.run_batch(model, &batch, &mut sourced, device);
            head.push(model, hidden, states);
        }
        head.flush(model, true);
    });
    head.finish()
}

/// The prefix lengths of each batch [`score`] runs, largest first: what
/// shares a batch (for tests and for tuning).
pub fn batch_lengths(pairs: &[(Vec<u32>, Vec<u32>)], max_len: usize, batch_tokens: usize) -> Vec<Vec<usize>> {
    let plan = Plan::new(pairs, max_len);
    plan.batches(batch_tokens).iter().map(|b| b.groups.iter().map(|&g| plan.groups[g].prefix.len()).collect()).collect()
}

/// One request as the model reads it.
struct Row {
    /// The continuation's tokens, its last one only as a target.
    cont: Vec<i64>,
    /// The state that predicts each continuation token.
    states: Vec<usize>,
    truncated: bool,
}

/// The rows that share one context (as kept after truncation).
struct Group {
    prefix: Vec<i64>,
    members: Vec<usize>,
    /// The longest suffix (continuation but its last token) of a member.
    widest: usize,
}

/// A batch: its groups (sorted by prefix length, longest first) and the
/// cache length, the shortest prefix among them.
struct Batch {
    groups: Vec<usize>,
    cache: usize,
}

/// The requests split into rows, groups and states. A state is a position
/// of some row: its group's context followed by `k` continuation tokens,
/// whatever the row; rows that agree on those share it.
struct Plan {
    rows: Vec<Row>,
    groups: Vec<Group>,
    /// Per state, the (row, token index) pairs it predicts.
    uses: Vec<Vec<(usize, usize)>>,
}

impl Plan {
    fn new(pairs: &[(Vec<u32>, Vec<u32>)], max_len: usize) -> Plan {
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: HashMap<Vec<i64>, usize> = HashMap::new();
        let mut child: HashMap<(usize, i64), usize> = HashMap::new();
        let mut uses: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut root: Vec<usize> = Vec::new();
        let mut rows = Vec::with_capacity(pairs.len());
        for (i, (ctx, cont)) in pairs.iter().enumerate() {
            let whole: Vec<i64> = ctx.iter().chain(cont).map(|&t| t as i64).collect();
            let from = whole.len().saturating_sub(max_len + 1);
            // The kept context: at least its last token, as a continuation
            // never exceeds max_len and a context is never empty.
            let prefix = &whole[from..whole.len() - cont.len()];
            let g = *group_of.entry(prefix.to_vec()).or_insert_with(|| {
                groups.push(Group { prefix: prefix.to_vec(), members: Vec::new(), widest: 0 });
                root.push(uses.len());
                uses.push(Vec::new());
                groups.len() - 1
            });
            let cont: Vec<i64> = cont.iter().map(|&t| t as i64).collect();
            groups[g].members.push(i);
            groups[g].widest = groups[g].widest.max(cont.len() - 1);
            let mut states = vec![root[g]];
            for &t in &cont[..cont.len() - 1] {
                let next = uses.len();
                let s = *child.entry((*states.last().unwrap(), t)).or_insert(next);
                if s == next {
                    uses.push(Vec::new());
                }
                states.push(s);
            }
            for (j, &s) in states.iter().enumerate() {
                uses[s].push((i, j));
            }
            rows.push(Row { cont, states, truncated: from > 0 });
        }
        Plan { rows, groups, uses }
    }

    /// Groups longest prefix first, each batch extended with the next group
    /// while its positions (the prefixes at the cache length, then every
    /// row's tail and suffix at the widest) fit `batch_tokens` and stay
    /// within [`SLACK`] of its rows' own positions; at least one group.
    fn batches(&self, batch_tokens: usize) -> Vec<Batch> {
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_key(|&g| std::cmp::Reverse(self.groups[g].prefix.len()));
        let mut out: Vec<Batch> = Vec::new();
        let (mut own, mut rows, mut reach) = (0usize, 0usize, 0usize);
        for g in order {
            let grp = &self.groups[g];
            let len = grp.prefix.len();
            let own_g = len + grp.members.iter().map(|&r| self.rows[r].cont.len() - 1).sum::<usize>();
            if let Some(b) = out.last_mut() {
                let (own2, rows2, reach2) = (own + own_g, rows + grp.members.len(), reach.max(len + grp.widest));
                // Memory: every row's copy of the cache and its suffix. Work:
                // the prefix pass, then each row's tail and padded suffix.
                let work = (b.groups.len() + 1) * len + rows2 * (reach2 - len);
                if rows2 * reach2 <= batch_tokens && work as f64 <= SLACK * own2 as f64 {
                    (own, rows, reach) = (own2, rows2, reach2);
                    b.groups.push(g);
                    b.cache = len;
                    continue;
                }
            }
            (own, rows, reach) = (own_g, grp.members.len(), len + grp.widest);
            out.push(Batch { groups: vec![g], cache: len });
        }
        out
    }

    /// Runs one batch: the prefixes' first `cache` tokens into a KV cache,
    /// then every row that reaches a state not yet computed, with its
    /// context's tail and its suffix, right-padded. Returns the hidden
    /// states (n, d_model) of the states it newly computed, and their ids.
    fn run_batch(&self, model: &Model, b: &Batch, sourced: &mut [bool], device: Device) -> (Tensor, Vec<usize>) {
        let len = b.cache;
        let prefixes: Vec<i64> = b.groups.iter().flat_map(|&g| self.groups[g].prefix[..len].iter().copied()).collect();
        let x = Tensor::from_slice(&prefixes).view([b.groups.len() as i64, len as i64]).to_device(device);
        let mut cache = KvCache::new(model);
        let last = model.hidden(&x, Some(&mut cache)).select(1, len as i64 - 1);
        let (mut from_prefix, mut ids) = (Vec::new(), Vec::new());
        for (k, &g) in b.groups.iter().enumerate() {
            let root = self.rows[self.groups[g].members[0]].states[0];
            if self.groups[g].prefix.len() == len && !std::mem::replace(&mut sourced[root], true) {
                from_prefix.push(k as i64);
                ids.push(root);
            }
        }
        let mut parts = vec![last.index_select(0, &Tensor::from_slice(&from_prefix).to_device(device))];
        let (runs, at, new) = self.suffix_rows(b, sourced);
        if !runs.is_empty() {
            let width = runs.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
            let mut tokens = vec![0i64; runs.len() * width];
            for (r, (_, t)) in runs.iter().enumerate() {
                tokens[r * width..r * width + t.len()].copy_from_slice(t);
            }
            let copies: Vec<i64> = runs.iter().map(|&(k, _)| k as i64).collect();
            let mut cache = cache.select_rows(&Tensor::from_slice(&copies).to_device(device));
            let x = Tensor::from_slice(&tokens).view([runs.len() as i64, width as i64]).to_device(device);
            let hidden = model.hidden(&x, Some(&mut cache));
            let flat: Vec<i64> = at.iter().map(|&(r, p)| (r * width + p) as i64).collect();
            let d = hidden.size()[2];
            parts.push(hidden.reshape([-1, d]).index_select(0, &Tensor::from_slice(&flat).to_device(device)));
            ids.extend(new);
        }
        (Tensor::cat(&parts, 0), ids)
    }

    /// The suffix pass of a batch: (group index in the batch, tokens after
    /// the cache) of each row that reaches a state not computed yet, and for
    /// each such state its (run, position) and id, marked in `sourced`.
    #[allow(clippy::type_complexity)]
    fn suffix_rows(
        &self,
        b: &Batch,
        sourced: &mut [bool],
    ) -> (Vec<(usize, Vec<i64>)>, Vec<(usize, usize)>, Vec<usize>) {
        let (mut runs, mut at, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &g) in b.groups.iter().enumerate() {
            let tail = &self.groups[g].prefix[b.cache..];
            for &i in &self.groups[g].members {
                let row = &self.rows[i];
                let fresh: Vec<usize> = (0..row.states.len())
                    .filter(|&j| (j > 0 || !tail.is_empty()) && !std::mem::replace(&mut sourced[row.states[j]], true))
                    .collect();
                if fresh.is_empty() {
                    continue;
                }
                // State j sits at the position of the j-th token after the context.
                at.extend(fresh.iter().map(|&j| (runs.len(), tail.len() + j - 1)));
                ids.extend(fresh.iter().map(|&j| row.states[j]));
                let cont = &row.cont[..row.cont.len() - 1];
                runs.push((k, tail.iter().chain(cont).copied().collect()));
            }
        }
        (runs, at, ids)
    }
}

/// The LM head over the states, pooled across batches into full chunks.
struct Head<'a> {
    plan: &'a Plan,
    pending: Vec<(Tensor, Vec<usize>)>,
    pending_rows: usize,
    /// Per row, per continuation token: log p and whether it is the argmax.
    lps: Vec<Vec<(f32, bool)>>,
    device: Device,
}

impl<'a> Head<'a> {
    fn new(plan: &'a Plan, device: Device) -> Head<'a> {
        let lps = plan.rows.iter().map(|r| vec![(0.0, false); r.cont.len()]).collect();
        Head { plan, pending: Vec::new(), pending_rows: 0, lps, device }
    }

    fn push(&mut self, model: &Model, hidden: Tensor, states: Vec<usize>) {
        self.pending_rows += states.len();
        self.pending.push((hidden, states));
        if self.pending_rows >= HEAD_ROWS {
            self.flush(model, false);
        }
    }

    /// Runs the head on the pending states in chunks of [`HEAD_ROWS`]; a
    /// last partial chunk waits for the next batch unless `all`.
    fn flush(&mut self, model: &Model, all: bool) {
        if self.pending.is_empty() {
            return;
        }
        let parts: Vec<Tensor> = self.pending.iter().map(|(h, _)| h.shallow_clone()).collect();
        let hidden = Tensor::cat(&parts, 0);
        let ids: Vec<usize> = self.pending.drain(..).flat_map(|(_, s)| s).collect();
        let n = ids.len();
        let full = if all { n } else { n / HEAD_ROWS * HEAD_ROWS };
        for start in (0..full).step_by(HEAD_ROWS) {
            let end = (start + HEAD_ROWS).min(full);
            self.chunk(model, &hidden.narrow(0, start as i64, (end - start) as i64), &ids[start..end]);
        }
        if full < n {
            self.pending.push((hidden.narrow(0, full as i64, (n - full) as i64), ids[full..].to_vec()));
        }
        self.pending_rows = n - full;
    }

    /// The log-probability (fp32 log-softmax, as lm-eval) of every target
    /// the states of `ids` predict, and whether it is the first argmax.
    fn chunk(&mut self, model: &Model, hidden: &Tensor, ids: &[usize]) {
        let logp = model.head(hidden).log_softmax(-1, Kind::Float);
        let v = logp.size()[1];
        let (mut flat, mut who) = (Vec::new(), Vec::new());
        for (k, &s) in ids.iter().enumerate() {
            for &(r, j) in &self.plan.uses[s] {
                flat.push(k as i64 * v + self.plan.rows[r].cont[j]);
                who.push((k, r, j));
            }
        }
        let cpu = |t: Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu)).expect("fp32 log-probs");
        let lp = cpu(logp.view([-1]).index_select(0, &Tensor::from_slice(&flat).to_device(self.device)));
        let max = cpu(logp.amax([-1i64].as_slice(), false));
        // A full argmax only where a target reaches the maximum: on a tie
        // lm-eval's argmax is the first index, which may not be the target.
        let mut cand: Vec<usize> = who.iter().zip(&lp).filter(|((k, _, _), &l)| l == max[*k]).map(|w| w.0 .0).collect();
        cand.dedup();
        let mut first = HashMap::new();
        if !cand.is_empty() {
            let idx: Vec<i64> = cand.iter().map(|&k| k as i64).collect();
            let rows = logp.index_select(0, &Tensor::from_slice(&idx).to_device(self.device));
            let arg = Vec::<i64>::try_from(rows.argmax(-1, false).to_device(Device::Cpu)).expect("int64 argmax");
            first.extend(cand.into_iter().zip(arg));
        }
        for (&(k, r, j), &l) in who.iter().zip(&lp) {
            let hit = first.get(&k) == Some(&self.plan.rows[r].cont[j]);
            self.lps[r][j] = (l, hit);
        }
    }

    fn finish(self) -> Vec<Scored> {
        self.plan
            .rows
            .iter()
            .zip(&self.lps)
            .map(|(r, lp)| Scored {
                loglik: lp.iter().map(|&(v, _)| v as f64).sum(),
                greedy: lp.iter().all(|&(_, h)| h),
                truncated: r.truncated,
            })
            .collect()
    }
}

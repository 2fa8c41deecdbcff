//! Gradient averaging over the ranks: the parameters cut into flat buckets
//! in the reverse of their use in the forward pass ([`Buckets`]), so the
//! buckets fill in backward's order, and each bucket's all-reduce started by
//! a hook as soon as backward has accumulated all of its gradients
//! ([`Reducer`], as PyTorch DDP's reducer), then all waited for before the
//! optimizer step. [`Buckets::average`] issues the same buckets after
//! backward instead (`train.overlap_allreduce = false`).

use std::cmp::Reverse;
use std::ffi::{c_char, c_void};
use std::ops::Range;

use tch::{Kind, Tensor};

use super::{err_text, Group, ERR_LEN};
use crate::error::GdaError;

extern "C" {
    fn gda_reducer_new(
        g: *mut c_void,
        tensors: *mut *mut c_void,
        n: usize,
        first: *const usize,
        nb: usize,
        err: *mut c_char,
        len: usize,
    ) -> *mut c_void;
    fn gda_reducer_arm(r: *mut c_void);
    fn gda_reducer_wait(
        r: *mut c_void,
        extra: *mut c_void,
        scale: f64,
        in_backward: *mut usize,
        err: *mut c_char,
        len: usize,
    ) -> i32;
    fn gda_reducer_free(r: *mut c_void);
}

/// The largest bucket: few enough all-reduces that their per-call latency
/// is paid a few times per step.
pub const BUCKET_BYTES: usize = 4 << 20;

/// The smallest bucket chosen by size alone (`GDA_BUCKET_BYTES` may go
/// lower): below it the per-call latency outweighs what overlap hides.
const MIN_BUCKET_BYTES: usize = 256 << 10;

/// Buckets per model aimed at: only the last bucket (the first layers and
/// the embedding, ready when backward ends) is left to wait for, so about
/// 1/8 of the all-reduce is not hidden, even for a model under 4 MB.
const TARGET_BUCKETS: usize = 8;

/// Where a parameter is first used in the forward pass (embedding, blocks
/// by layer, final norm, head); backward finishes their gradients in the
/// reverse order. Unknown names come last, that is first in the buckets: a
/// wrong guess only delays a bucket, it never changes a result.
fn forward_position(name: &str) -> (u8, usize, u8) {
    let top = name.split('.').next().unwrap_or("");
    if top == "tok_emb" {
        return (0, 0, 0);
    }
    if let Some((layer, part)) = name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) {
        if let Ok(l) = layer.parse::<usize>() {
            let sub = part.split('.').next().unwrap_or("");
            let within = ["attn_norm", "attn", "mlp_norm", "mlp"].iter().position(|p| *p == sub).unwrap_or(4);
            return (1, l, within as u8);
        }
    }
    match top {
        "norm" => (2, 0, 0),
        "lm_head" => (3, 0, 0),
        _ => (4, 0, 0),
    }
}

/// The parameters' gradients cut into flat buckets of one dtype each, in
/// backward's order: the same on every rank (a function of the names and
/// shapes only), so the ranks' collectives match.
pub struct Buckets {
    /// Parameter indices in bucket order.
    order: Vec<usize>,
    /// Each bucket's slice of `order`.
    ranges: Vec<Range<usize>>,
}

impl Buckets {
    /// Buckets of about an eighth of the gradients, between 256 KiB and
    /// [`BUCKET_BYTES`] (`GDA_BUCKET_BYTES` overrides the size).
    pub fn new(params: &[(String, Tensor)]) -> Buckets {
        let total: usize = params.iter().map(|(_, p)| bytes(p)).sum();
        let by_size = (total / TARGET_BUCKETS).clamp(MIN_BUCKET_BYTES, BUCKET_BYTES);
        let cap = std::env::var("GDA_BUCKET_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(by_size);
        Buckets::with_cap(params, cap)
    }

    pub fn with_cap(params: &[(String, Tensor)], cap: usize) -> Buckets {
        let mut order: Vec<usize> = (0..params.len()).collect();
        order.sort_by_key(|&i| (Reverse(forward_position(&params[i].0)), params[i].0.clone()));
        let mut ranges = Vec::new();
        let (mut start, mut size) = (0, 0);
        for (j, &i) in order.iter().enumerate() {
            let p = &params[i].1;
            let kind_changes = j > start && p.kind() != params[order[start]].1.kind();
            if j > start && (size + bytes(p) > cap || kind_changes) {
                ranges.push(start..j);
                start = j;
                size = 0;
            }
            size += bytes(p);
        }
        if start < order.len() {
            ranges.push(start..order.len());
        }
        Buckets { order, ranges }
    }

    pub fn count(&self) -> usize {
        self.ranges.len()
    }

    /// Replaces every gradient by its mean over the ranks, and sums `extra`
    /// (a small f64 tensor of per-rank values: the loss, flags) in the same
    /// round of all-reduces; returns the summed `extra`.
    pub fn average(&self, group: &Group, params: &[Tensor], extra: Tensor) -> Result<Tensor, GdaError> {
        let grads: Vec<Tensor> = self
            .order
            .iter()
            .map(|&i| if params[i].grad().defined() { params[i].grad() } else { params[i].zeros_like() })
            .collect();
        let mut flat: Vec<Tensor> = self
            .ranges
            .iter()
            .map(|r| Tensor::cat(&grads[r.clone()].iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0))
            .collect();
        flat.push(extra.to_kind(Kind::Double));
        group.all_reduce_sum(&mut flat)?;
        let extra = flat.pop().expect("extra pushed above");
        let scale = 1.0 / group.world as f64;
        tch::no_grad(|| {
            for (r, f) in self.ranges.iter().zip(flat.iter()) {
                let mut offset = 0i64;
                for j in r.clone() {
                    let (g, p) = (&grads[j], &params[self.order[j]]);
                    let n = g.numel() as i64;
                    if p.grad().defined() {
                        p.grad().copy_(&(f.narrow(0, offset, n).view_as(g) * scale));
                    }
                    offset += n;
                }
            }
        });
        Ok(extra)
    }
}

fn bytes(p: &Tensor) -> usize {
    p.numel() * p.kind().elt_size_in_bytes()
}

/// [`Buckets`] all-reduced during backward: hooks on the parameters'
/// gradient accumulators (shim.cpp) start each bucket once all of its
/// gradients are accumulated, in bucket order. Only a backward pass after
/// [`Reducer::arm`] triggers them; [`Reducer::wait`] starts what they did
/// not (a parameter that got no gradient: zeros, on every rank alike) and
/// waits for everything.
pub struct Reducer {
    ptr: *mut c_void,
    buckets: Buckets,
    /// A failed collective may leave Gloo writing into the buffers: never freed then.
    broken: bool,
}

impl Reducer {
    /// Hooks `params` (leaf tensors that require grad) of the joined `group`.
    pub fn new(group: &Group, params: &[(String, Tensor)]) -> Result<Reducer, GdaError> {
        Reducer::with_buckets(group, params, Buckets::new(params))
    }

    fn with_buckets(group: &Group, params: &[(String, Tensor)], buckets: Buckets) -> Result<Reducer, GdaError> {
        let mut ordered: Vec<Tensor> = buckets.order.iter().map(|&i| params[i].1.shallow_clone()).collect();
        let mut ptrs: Vec<*mut c_void> = ordered.iter_mut().map(|t| t.as_mut_ptr() as *mut c_void).collect();
        let mut first: Vec<usize> = buckets.ranges.iter().map(|r| r.start).collect();
        first.push(ptrs.len());
        let mut err = [0u8; ERR_LEN];
        // SAFETY: live at::Tensor handles (the shim copies them), `first`
        // has count + 1 entries, and `group.ptr` is the joined group, which
        // outlives the reducer (`Collective` drops it first).
        let ptr = unsafe {
            gda_reducer_new(
                group.ptr,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                first.as_ptr(),
                buckets.count(),
                err.as_mut_ptr() as *mut c_char,
                ERR_LEN,
            )
        };
        if ptr.is_null() {
            return Err(crate::error::input(format!("cannot hook the gradients: {}", err_text(&err))));
        }
        Ok(Reducer { ptr, buckets, broken: false })
    }

    pub fn count(&self) -> usize {
        self.buckets.count()
    }

    /// The next backward pass's gradients are the ones reduced (with
    /// `grad_accum > 1`: arm before the last micro-batch's backward only).
    pub fn arm(&mut self) {
        // SAFETY: `ptr` is a live reducer.
        unsafe { gda_reducer_arm(self.ptr) };
    }

    /// Waits for every bucket (starting those no hook started), sums
    /// `extra` over the ranks after them, and replaces each gradient by its
    /// mean. Returns the summed `extra` and how many buckets backward started.
    pub fn wait(&mut self, group: &Group, extra: Tensor) -> Result<(Tensor, usize), GdaError> {
        let mut extra = extra.to_kind(Kind::Double);
        let (mut in_backward, mut err) = (0usize, [0u8; ERR_LEN]);
        let scale = 1.0 / group.world as f64;
        // SAFETY: `ptr` is a live reducer; `extra` a live at::Tensor.
        let rc = unsafe {
            gda_reducer_wait(
                self.ptr,
                extra.as_mut_ptr() as *mut c_void,
                scale,
                &mut in_backward,
                err.as_mut_ptr() as *mut c_char,
                ERR_LEN,
            )
        };
        if rc != 0 {
            self.broken = true;
            return Err(group.collective_failed(&err_text(&err)));
        }
        Ok((extra, in_backward))
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        if !self.broken {
            // SAFETY: `ptr` came from gda_reducer_new and is freed once.
            unsafe { gda_reducer_free(self.ptr) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{Hello, Launch, Rendezvous};

    fn named(sizes: &[(&str, i64)]) -> Vec<(String, Tensor)> {
        sizes
            .iter()
            .map(|&(n, s)| (n.to_string(), Tensor::ones([s], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true)))
            .collect()
    }

    #[test]
    fn buckets_cover_every_parameter_once_in_backward_order() {
        let params = named(&[
            ("blocks.0.attn.q", 300_000),
            ("blocks.10.mlp.up", 900_000),
            ("blocks.2.attn_norm.weight", 10),
            ("lm_head.weight", 2_000_000),
            ("norm.weight", 5),
            ("tok_emb", 7),
        ]);
        let b = Buckets::with_cap(&params, BUCKET_BYTES);
        let names: Vec<&str> = b.order.iter().map(|&i| params[i].0.as_str()).collect();
        assert_eq!(
            names,
            [
                "lm_head.weight",
                "norm.weight",
                "blocks.10.mlp.up",
                "blocks.2.attn_norm.weight",
                "blocks.0.attn.q",
                "tok_emb"
            ]
        );
        let flat: Vec<usize> = b.ranges.iter().flat_map(|r| r.clone()).collect();
        assert_eq!(flat, (0..params.len()).collect::<Vec<_>>());
        for r in &b.ranges {
            let size: usize = b.order[r.clone()].iter().map(|&i| bytes(&params[i].1)).sum();
            assert!(r.len() == 1 || size <= BUCKET_BYTES, "{r:?}: {size}");
        }
        assert!(b.count() >= 2);
    }

    /// A group of one rank: the hooks, the bucket order, a parameter that
    /// gets no gradient (started at the wait, with zeros) and accumulated
    /// micro-batches (only the armed backward starts buckets).
    #[test]
    fn hooks_start_ready_buckets_in_order_and_the_wait_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch {
            rank: 0,
            world: 1,
            local_rank: 0,
            local_world: 1,
            rendezvous: Rendezvous::File(dir.path().join("store")),
            source: "torchrun",
        };
        let hello = Hello { spec_hash: "h".into(), build: "b".into(), step: 0, host: "x".into(), error: None };
        let group = Group::join(&launch, &hello, false, std::time::Duration::from_secs(30)).unwrap();
        // One parameter per bucket, in backward order: head, norm, unused, embedding.
        let params = named(&[("lm_head.w", 4), ("norm.w", 4), ("blocks.0.mlp.w", 4), ("tok_emb", 4)]);
        let mut reducer = Reducer::with_buckets(&group, &params, Buckets::with_cap(&params, 16)).unwrap();
        assert_eq!(reducer.count(), 4);
        let p = |name: &str| &params.iter().find(|(n, _)| n == name).unwrap().1;
        let backward = || {
            let emb = p("tok_emb") * 2.0;
            ((emb * p("norm.w")).sum(Kind::Float) + (p("lm_head.w") * 3.0).sum(Kind::Float)).backward();
        };
        backward();
        reducer.arm();
        backward();
        let (extra, in_backward) = reducer.wait(&group, Tensor::from(5.0f64)).unwrap();
        // lm_head and norm were started during backward; the unused MLP
        // weight holds back its bucket and so the embedding's after it.
        assert_eq!(in_backward, 2);
        assert_eq!(extra.double_value(&[]), 5.0);
        assert_eq!(Vec::<f32>::try_from(p("lm_head.w").grad()).unwrap(), vec![6.0; 4]);
        assert_eq!(Vec::<f32>::try_from(p("tok_emb").grad()).unwrap(), vec![4.0; 4]);
        assert!(!p("blocks.0.mlp.w").grad().defined());
        // Unarmed, nothing starts in backward; the wait still reduces all.
        backward();
        assert_eq!(reducer.wait(&group, Tensor::from(0.0f64)).unwrap().1, 0);
        assert_eq!(Vec::<f32>::try_from(p("norm.w").grad()).unwrap(), vec![6.0; 4]);
    }
}

//! The decoder-only language model: token embedding, pre-RMSNorm blocks
//! (attention + SwiGLU MLP), RoPE, final norm, LM head.
//!
//! Sub-module paths are the checkpoint's tensor names (`blocks.0.attn.q1.weight`);
//! `docs/tensors.md` lists them for the default config.

pub mod attention;
pub mod flops;
pub mod fused;
pub mod layers;
pub mod memory;

use tch::{nn, nn::VarStore, Device, Kind, Tensor};

use self::attention::{Attention, AttnMaps, LayerCache, Path};
use self::layers::{Linear, Mlp, RmsNorm, Rope};
use crate::config::ModelConfig;
use crate::device;

pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

pub struct Model {
    pub cfg: ModelConfig,
    pub tok_emb: Tensor,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `tok_emb`.
    pub lm_head: Option<Linear>,
    rope: Rope,
    /// bf16 on CUDA, fp32 on CPU (`device::compute_kind`); weights are
    /// always stored in fp32.
    pub compute_kind: Kind,
}

impl Model {
    /// The one way gda makes a model: fresh variables on `device` (seeded by
    /// libtorch's global RNG; a checkpoint may overwrite them), computing in
    /// the device's dtype.
    pub fn build(cfg: &ModelConfig, device: Device) -> (VarStore, Model) {
        let vs = VarStore::new(device);
        let model = Model::new(cfg, vs.root());
        (vs, model)
    }

    /// Builds the model's variables under `vs` (names as in docs/tensors.md);
    /// the compute dtype follows the variables' device.
    pub fn new(cfg: &ModelConfig, vs: nn::Path) -> Model {
        // GPT-2's residual scaling: projections that write into the residual
        // stream start smaller so the stream's variance does not grow with depth.
        let out_std = cfg.init_std / (2.0 * cfg.n_layers as f64).sqrt();
        let tok_emb = (&vs / "tok_emb").var(
            "weight",
            &[cfg.vocab_size as i64, cfg.d_model as i64],
            nn::Init::Randn { mean: 0.0, stdev: cfg.init_std },
        );
        let blocks = (0..cfg.n_layers)
            .map(|l| {
                let b = &vs / "blocks" / l;
                Block {
                    attn_norm: RmsNorm::new(&b / "attn_norm", cfg.d_model, cfg.norm_eps, cfg.fused),
                    attn: Attention::new(&b / "attn", cfg, l, out_std),
                    mlp_norm: RmsNorm::new(&b / "mlp_norm", cfg.d_model, cfg.norm_eps, cfg.fused),
                    mlp: Mlp::new(&b / "mlp", cfg, out_std),
                }
            })
            .collect();
        let norm = RmsNorm::new(&vs / "norm", cfg.d_model, cfg.norm_eps, cfg.fused);
        let lm_head =
            (!cfg.tie_embeddings).then(|| Linear::new(&vs / "lm_head", cfg.d_model, cfg.vocab_size, cfg.init_std));
        Model {
            cfg: cfg.clone(),
            tok_emb,
            blocks,
            norm,
            lm_head,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta),
            compute_kind: device::compute_kind(vs.device()),
        }
    }

    /// Logits (B, T, vocab) in fp32 for tokens (B, T), through the fused path.
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        self.forward_path(tokens, Path::Fused).0
    }

    /// Logits plus, on the materialised path, every layer's attention maps.
    pub fn forward_path(&self, tokens: &Tensor, path: Path) -> (Tensor, Vec<AttnMaps>) {
        self.forward_cached(tokens, path, None)
    }

    /// [`Model::forward_path`] for tokens that follow the positions `cache`
    /// holds (incremental decoding): they sit at positions past.. past + T for
    /// RoPE, attend to the cached keys and values as well, and are appended
    /// to the cache. Without a cache this is the training forward.
    pub fn forward_cached(&self, tokens: &Tensor, path: Path, cache: Option<&mut KvCache>) -> (Tensor, Vec<AttnMaps>) {
        let (x, maps) = self.hidden_cached(tokens, path, cache);
        (self.head(&x), maps)
    }

    /// The final-norm hidden states (B, T, d_model) in the compute dtype,
    /// through the fused path, after the positions `cache` holds (as
    /// [`Model::forward_cached`]): callers that need the logits of a few
    /// positions apply [`Model::head`] to those alone.
    pub fn hidden(&self, tokens: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.hidden_cached(tokens, Path::Fused, cache).0
    }

    /// fp32 logits of hidden states (…, d_model).
    pub fn head(&self, x: &Tensor) -> Tensor {
        let logits = match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.linear::<Tensor>(&self.tok_emb.to_kind(x.kind()), None),
        };
        logits.to_kind(Kind::Float)
    }

    fn hidden_cached(&self, tokens: &Tensor, path: Path, mut cache: Option<&mut KvCache>) -> (Tensor, Vec<AttnMaps>) {
        let t = tokens.size()[1];
        let past = cache.as_ref().map_or(0, |c| c.len());
        let (cos, sin) = self.rope.tables(past + t, tokens.device());
        let (cos, sin) = if past == 0 { (cos, sin) } else { (cos.narrow(0, past, t), sin.narrow(0, past, t)) };
        let mut x = Tensor::embedding(&self.tok_emb, tokens, -1, false, false).to_kind(self.compute_kind);
        // Each residual add goes with the norm after it (the next block's,
        // or the final one), which the fused kernel does in one pass.
        let mut h = self.blocks.first().map_or(&self.norm, |b| &b.attn_norm).forward(&x);
        let mut maps = Vec::new();
        for (l, block) in self.blocks.iter().enumerate() {
            let layer = cache.as_mut().map(|c| &mut c.layers[l]);
            let (a, m) = block.attn.forward_cached(&h, &cos, &sin, path, layer);
            maps.extend(m);
            (x, h) = block.mlp_norm.add_forward(&x, &a);
            let next = self.blocks.get(l + 1).map_or(&self.norm, |b| &b.attn_norm);
            (x, h) = next.add_forward(&x, &block.mlp.forward(&h));
        }
        (h, maps)
    }

    /// Mean next-token cross-entropy (nats) of `logits` against `targets`.
    pub fn loss(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = logits.size()[2];
        logits.reshape([-1, v]).cross_entropy_for_logits(&targets.reshape([-1]))
    }

    /// λ of every layer (empty for standard attention).
    pub fn lambdas(&self) -> Vec<f64> {
        tch::no_grad(|| self.blocks.iter().filter_map(|b| b.attn.lambda().map(|l| l.double_value(&[]))).collect())
    }
}

/// Every layer's [`LayerCache`]: what incremental decoding keeps of the
/// positions seen so far.
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache for `model`.
    pub fn new(model: &Model) -> KvCache {
        KvCache { layers: model.blocks.iter().map(|_| LayerCache::default()).collect() }
    }

    /// Positions held (the position of the next token).
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache of batch rows `rows` (int64, on the cache's device; a row
    /// may repeat): each of a context's continuations gets its own copy of
    /// the context's keys and values.
    pub fn select_rows(&self, rows: &Tensor) -> KvCache {
        KvCache { layers: self.layers.iter().map(|l| l.select_rows(rows)).collect() }
    }
}

/// Parameter count of a config, computed from its shapes (matches the
/// VarStore's count; used for reports without building a model).
pub fn param_count(cfg: &ModelConfig) -> usize {
    param_count_f64(cfg) as usize
}

/// [`param_count`] in floating point: exact below 2^53 parameters, and
/// finite for the absurd configs `memory::training` must size to refuse.
pub fn param_count_f64(cfg: &ModelConfig) -> f64 {
    let (c, f, v) = (cfg.d_model as f64, cfg.mlp_hidden as f64, cfg.vocab_size as f64);
    let per_layer = attention::param_count_f64(cfg) + 3.0 * c * f + 2.0 * c;
    let head = if cfg.tie_embeddings { 0.0 } else { v * c };
    v * c + cfg.n_layers as f64 * per_layer + c + head
}

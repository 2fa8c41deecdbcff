//! The decoder-only language model: token embedding, pre-RMSNorm blocks
//! (attention + SwiGLU MLP), RoPE, final norm, LM head.
//!
//! Sub-module paths are the checkpoint's tensor names (`blocks.0.attn.q1.weight`);
//! `docs/tensors.md` lists them for the default config.

use tch::{nn, Device, Kind, Tensor};

use crate::attention::{Attention, AttnMaps, Path};
use crate::config::ModelConfig;

/// A bias-free linear layer; the weight is (out, in) like PyTorch's.
pub struct Linear {
    pub weight: Tensor,
}

impl Linear {
    pub fn new(vs: nn::Path, d_in: usize, d_out: usize, std: f64) -> Linear {
        let weight = vs.var("weight", &[d_out as i64, d_in as i64], nn::Init::Randn { mean: 0.0, stdev: std });
        Linear { weight }
    }

    /// Computes in the input's dtype; the fp32 master weight is cast on the
    /// fly under bf16 (the cast is differentiable, so gradients stay fp32).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear::<Tensor>(&self.weight.to_kind(x.kind()), None)
    }
}

/// RMSNorm with a learnable weight, computed in fp32.
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(vs: nn::Path, dim: usize, eps: f64) -> RmsNorm {
        RmsNorm { weight: vs.var("weight", &[dim as i64], nn::Init::Const(1.0)), eps }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_scaled(x, 1.0)
    }

    /// RMSNorm followed by a constant factor, folded into the (small) weight
    /// so the full-size tensor is touched once.
    pub fn forward_scaled(&self, x: &Tensor, scale: f64) -> Tensor {
        let kind = x.kind();
        let w = if scale == 1.0 { self.weight.shallow_clone() } else { &self.weight * scale };
        x.to_kind(Kind::Float).rms_norm([self.weight.size()[0]], Some(&w), self.eps).to_kind(kind)
    }
}

/// Rotary position embedding (rotate-half layout) for heads of width `dim`.
pub struct Rope {
    theta: f64,
    dim: usize,
}

impl Rope {
    pub fn new(dim: usize, theta: f64) -> Rope {
        Rope { theta, dim }
    }

    /// cos and sin tables, each (t, dim/2), in fp32 on `device`.
    pub fn tables(&self, t: i64, device: Device) -> (Tensor, Tensor) {
        let half = (self.dim / 2) as i64;
        let opts = (Kind::Float, device);
        let inv_freq = (Tensor::arange(half, opts) * (-2.0 * self.theta.ln() / self.dim as f64)).exp();
        let angles = Tensor::arange(t, opts).outer(&inv_freq);
        (angles.cos(), angles.sin())
    }

    /// Rotates x (B, H, T, dim) by position.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        let kind = x.kind();
        let (cos, sin) = (cos.to_kind(kind), sin.to_kind(kind));
        let x1 = x.narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x2 * &cos + &x1 * &sin], 3)
    }
}

pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    fn new(vs: nn::Path, cfg: &ModelConfig, out_std: f64) -> Mlp {
        Mlp {
            gate: Linear::new(&vs / "gate", cfg.d_model, cfg.mlp_hidden, cfg.init_std),
            up: Linear::new(&vs / "up", cfg.d_model, cfg.mlp_hidden, cfg.init_std),
            down: Linear::new(&vs / "down", cfg.mlp_hidden, cfg.d_model, out_std),
        }
    }

    /// Gate and up projections in one matmul (weights stacked), then split.
    fn forward(&self, x: &Tensor) -> Tensor {
        let w = Tensor::cat(&[&self.gate.weight, &self.up.weight], 0).to_kind(x.kind());
        let gu = x.linear::<Tensor>(&w, None).chunk(2, -1);
        self.down.forward(&(gu[0].silu() * &gu[1]))
    }
}

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
    /// bf16 on CUDA, fp32 on CPU; weights are always stored in fp32.
    pub compute_kind: Kind,
}

impl Model {
    /// Builds the model's variables under `vs` (names as in docs/tensors.md).
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
                    attn_norm: RmsNorm::new(&b / "attn_norm", cfg.d_model, cfg.norm_eps),
                    attn: Attention::new(&b / "attn", cfg, l, out_std),
                    mlp_norm: RmsNorm::new(&b / "mlp_norm", cfg.d_model, cfg.norm_eps),
                    mlp: Mlp::new(&b / "mlp", cfg, out_std),
                }
            })
            .collect();
        let norm = RmsNorm::new(&vs / "norm", cfg.d_model, cfg.norm_eps);
        let lm_head = (!cfg.tie_embeddings).then(|| Linear::new(&vs / "lm_head", cfg.d_model, cfg.vocab_size, cfg.init_std));
        Model {
            cfg: cfg.clone(),
            tok_emb,
            blocks,
            norm,
            lm_head,
            rope: Rope::new(cfg.head_dim, cfg.rope_theta),
            compute_kind: Kind::Float,
        }
    }

    /// Logits (B, T, vocab) in fp32 for tokens (B, T), through the fused path.
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        self.forward_path(tokens, Path::Fused).0
    }

    /// Logits plus, on the materialised path, every layer's attention maps.
    pub fn forward_path(&self, tokens: &Tensor, path: Path) -> (Tensor, Vec<AttnMaps>) {
        let t = tokens.size()[1];
        let (cos, sin) = self.rope.tables(t, tokens.device());
        let mut x = Tensor::embedding(&self.tok_emb, tokens, -1, false, false).to_kind(self.compute_kind);
        let mut maps = Vec::new();
        for block in &self.blocks {
            let (a, m) = block.attn.forward(&block.attn_norm.forward(&x), &cos, &sin, path);
            x = x + a;
            maps.extend(m);
            x = &x + block.mlp.forward(&block.mlp_norm.forward(&x));
        }
        let x = self.norm.forward(&x);
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x),
            None => x.linear::<Tensor>(&self.tok_emb.to_kind(x.kind()), None),
        };
        (logits.to_kind(Kind::Float), maps)
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

/// Parameter count of a config, computed from its shapes (matches the
/// VarStore's count; used for reports without building a model).
pub fn param_count(cfg: &ModelConfig) -> usize {
    let (c, f) = (cfg.d_model, cfg.mlp_hidden);
    let attn = crate::attention::param_count(cfg);
    let per_layer = attn + 3 * c * f + 2 * c;
    let head = if cfg.tie_embeddings { 0 } else { cfg.vocab_size * c };
    cfg.vocab_size * c + cfg.n_layers * per_layer + c + head
}

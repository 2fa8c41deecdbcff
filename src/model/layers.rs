//! The layers the model is built from: linear, RMSNorm, rotary embedding and
//! the SwiGLU MLP. Each is a plain struct of named tensors (the checkpoint's
//! names come from the `nn::Path` it is built under). With `fused`, CPU
//! tensors go through the one-pass kernels of [`super::fused`].

use tch::{nn, Device, Kind, Tensor};

use super::fused;
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

/// The dtype reductions and softmaxes run in: fp32 for bf16 and fp32, f64
/// for f64 (the parity tests compare paths in f64).
pub fn at_least_f32(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// RMSNorm with a learnable weight, computed in fp32 (f64 inputs in f64).
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
    fused: bool,
}

impl RmsNorm {
    pub fn new(vs: nn::Path, dim: usize, eps: f64, fused: bool) -> RmsNorm {
        RmsNorm { weight: vs.var("weight", &[dim as i64], nn::Init::Const(1.0)), eps, fused }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if fused::applies(self.fused, x) {
            return fused::rms_norm(x, &self.weight.to_kind(x.kind()), self.eps);
        }
        self.forward_scaled(x, 1.0)
    }

    /// The residual add and the norm of its result: (x + a, RMSNorm(x + a)),
    /// one pass when fused.
    pub fn add_forward(&self, x: &Tensor, a: &Tensor) -> (Tensor, Tensor) {
        if fused::applies(self.fused, x) {
            return fused::add_rms_norm(x, a, &self.weight.to_kind(x.kind()), self.eps);
        }
        let s = x + a;
        let y = self.forward_scaled(&s, 1.0);
        (s, y)
    }

    /// RMSNorm followed by a constant factor, folded into the (small) weight
    /// so the full-size tensor is touched once.
    pub fn forward_scaled(&self, x: &Tensor, scale: f64) -> Tensor {
        let kind = x.kind();
        let w = if scale == 1.0 { self.weight.shallow_clone() } else { &self.weight * scale };
        let up = at_least_f32(kind);
        x.to_kind(up).rms_norm([self.weight.size()[0]], Some(&w.to_kind(up)), self.eps).to_kind(kind)
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
    fused: bool,
}

impl Mlp {
    pub fn new(vs: nn::Path, cfg: &ModelConfig, out_std: f64) -> Mlp {
        Mlp {
            gate: Linear::new(&vs / "gate", cfg.d_model, cfg.mlp_hidden, cfg.init_std),
            up: Linear::new(&vs / "up", cfg.d_model, cfg.mlp_hidden, cfg.init_std),
            down: Linear::new(&vs / "down", cfg.mlp_hidden, cfg.d_model, out_std),
            fused: cfg.fused,
        }
    }

    /// Gate and up projections in one matmul (weights stacked), then split.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = Tensor::cat(&[&self.gate.weight, &self.up.weight], 0).to_kind(x.kind());
        let gu = x.linear::<Tensor>(&w, None);
        if fused::applies(self.fused, &gu) {
            return self.down.forward(&fused::swiglu(&gu));
        }
        let gu = gu.chunk(2, -1);
        self.down.forward(&(gu[0].silu() * &gu[1]))
    }
}

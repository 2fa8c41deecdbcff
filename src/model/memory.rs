//! How much memory training a model takes at the least, so a run that
//! cannot fit is refused before anything is allocated (`train::check_memory`).
//! It is a lower bound, not a prediction: only what certainly coexists at
//! the end of a forward pass is counted, so a refusal is never wrong, while
//! a run that passes may still need more (allocator slack, libtorch itself,
//! evaluation, temporaries of the backward pass).

use tch::Kind;

use super::param_count_f64;
use crate::config::{AttentionKind, ModelConfig};

/// Bytes of one training step, split by what a user would change.
#[derive(Debug, Clone, Copy)]
pub struct TrainMemory {
    pub parameters: f64,
    /// fp32 weights, gradients and both AdamW moments: 16 bytes a parameter.
    pub state_bytes: f64,
    /// What autograd keeps for the backward pass of one micro-batch.
    pub activation_bytes: f64,
}

impl TrainMemory {
    pub fn total(&self) -> f64 {
        self.state_bytes + self.activation_bytes
    }
}

/// Elements per token that autograd saves in one layer: the inputs of both
/// RMSNorms and of every matmul, the fused Q/K/V projection and its rotated
/// part, the attention outputs (GDA: signal and noise, their difference,
/// the per-head norm's output), and the SwiGLU's gate/up, activation and
/// product.
fn saved_per_token_per_layer(cfg: &ModelConfig) -> f64 {
    let (c, f, d, kv) = (cfg.d_model as f64, cfg.mlp_hidden as f64, cfg.head_dim as f64, cfg.kv_heads as f64);
    let attention = match cfg.attention {
        AttentionKind::Gda => {
            let (hs, hn, k2) = (cfg.signal_heads as f64, cfg.noise_heads as f64, cfg.noise_kv_heads as f64);
            let rotated = d * (hs + hn + kv + k2);
            let projection = rotated + 2.0 * d * kv;
            projection + rotated + 2.0 * d * (hs + hn) + 2.0 * (2.0 * d * hs)
        }
        AttentionKind::Standard => {
            let h = cfg.heads as f64;
            let rotated = d * (h + kv);
            let projection = rotated + d * kv;
            projection + rotated + 2.0 * d * h
        }
    };
    4.0 * c + attention + 4.0 * f
}

/// The least memory a training step of `cfg` on micro-batches of `rows` ×
/// `context` tokens takes, computing in `compute` (fp32 on CPU, bf16 on CUDA).
pub fn training(cfg: &ModelConfig, rows: usize, context: usize, compute: Kind) -> TrainMemory {
    let parameters = param_count_f64(cfg);
    let element = if compute == Kind::Float { 4.0 } else { 2.0 };
    let tokens = rows as f64 * context as f64;
    let layers = cfg.n_layers as f64 * saved_per_token_per_layer(cfg) * element;
    // The logits in fp32 and the log-softmax the loss keeps, both (tokens, vocab).
    let loss = 2.0 * 4.0 * cfg.vocab_size as f64;
    TrainMemory {
        parameters,
        state_bytes: 16.0 * parameters,
        activation_bytes: tokens * (layers + loss + 2.0 * cfg.d_model as f64 * element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Spec;

    #[test]
    fn the_state_is_sixteen_bytes_a_parameter_and_activations_scale_with_the_batch() {
        let spec = Spec::load(None, &[]).unwrap();
        let m = training(&spec.model, 8, 256, Kind::Float);
        assert_eq!(m.parameters, crate::model::param_count(&spec.model) as f64);
        assert_eq!(m.state_bytes, 16.0 * m.parameters);
        let twice = training(&spec.model, 16, 256, Kind::Float);
        assert_eq!(twice.activation_bytes, 2.0 * m.activation_bytes);
        assert_eq!(training(&spec.model, 8, 256, Kind::BFloat16).state_bytes, m.state_bytes);
        assert!(training(&spec.model, 8, 256, Kind::BFloat16).activation_bytes < m.activation_bytes);
    }

    #[test]
    fn absurd_shapes_give_finite_huge_numbers_not_wrapped_ones() {
        let spec = Spec::load(None, &["model.d_model=1000000000".into()]).unwrap();
        let m = training(&spec.model, 8, 256, Kind::Float);
        assert!(m.parameters.is_finite() && m.parameters > 1e19, "{}", m.parameters);
    }
}

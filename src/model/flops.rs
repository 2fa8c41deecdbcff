//! Model FLOPs per token, the convention of PaLM and nanoGPT: 2 FLOPs per
//! multiply-add, a backward pass costs twice the forward, and attention is
//! counted at the full context length (no discount for the causal mask).
//! What is counted is the model's math, not what a kernel happens to do.

use crate::config::{AttentionKind, ModelConfig};

/// Parameters that take part in a matmul per token: every projection and the
/// LM head (the tied embedding counts once, as the head).
pub fn matmul_params(cfg: &ModelConfig) -> usize {
    let per_layer = super::attention::linear_params(cfg) + 3 * cfg.d_model * cfg.mlp_hidden;
    cfg.n_layers * per_layer + cfg.vocab_size * cfg.d_model
}

/// Forward attention-map FLOPs per token over all layers: scores (2·T·d per
/// map) plus the weighted sum of values (2·T·width of V per map). GDA
/// computes H_s signal maps and H_n noise maps over 2d-wide values:
/// 6·T·d·(H_s + H_n) per layer; standard attention 4·T·d·H.
pub fn attention_flops_per_token(cfg: &ModelConfig, context: usize) -> f64 {
    let (t, d) = (context as f64, cfg.head_dim as f64);
    let per_layer = match cfg.attention {
        AttentionKind::Gda => 6.0 * t * d * (cfg.signal_heads + cfg.noise_heads) as f64,
        AttentionKind::Standard => 4.0 * t * d * cfg.heads as f64,
    };
    per_layer * cfg.n_layers as f64
}

/// Training FLOPs per token (forward + backward).
pub fn train_flops_per_token(cfg: &ModelConfig, context: usize) -> f64 {
    3.0 * (2.0 * matmul_params(cfg) as f64 + attention_flops_per_token(cfg, context))
}

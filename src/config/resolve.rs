//! Resolution: the defaults derived from other keys (vocabulary, K/V
//! heads, MLP width, the λ_init schedule) filled in, then every check of
//! `validate`; the first problem found is the one reported.

use super::validate::{self, require_divisor};
use super::{default_lambda_init, key_err, AttentionKind, KeyError, ModelConfig, Spec};

impl Spec {
    /// Fills derived defaults and checks every constraint between keys.
    pub fn resolve(&mut self) -> Result<(), KeyError> {
        self.resolve_vocab()?;
        validate::model_sizes(&self.model)?;
        resolve_heads(&mut self.model)?;
        resolve_widths(&mut self.model)?;
        validate::model_floats(&self.model)?;
        validate::data(&self.data)?;
        validate::train(&self.train)?;
        validate::sweep(self)?;
        crate::device::parse_device(&self.train.device).map_err(|msg| key_err("train.device", msg))?;
        validate::task(self)?;
        validate::name(&self.name)
    }

    /// `model.vocab_size` 0 means the tokenizer's; any other value must hold it.
    fn resolve_vocab(&mut self) -> Result<(), KeyError> {
        let m = &mut self.model;
        let tok_vocab = self.data.tokenizer.vocab_size().map_err(|m| key_err("data.tokenizer", m))?;
        if m.vocab_size == 0 {
            m.vocab_size = tok_vocab;
        } else if m.vocab_size < tok_vocab {
            return Err(key_err(
                "model.vocab_size",
                format!(
                    "{} is smaller than the {} tokenizer's vocabulary; allowed: 0 (automatic) or at least {tok_vocab}",
                    m.vocab_size, self.data.tokenizer
                ),
            ));
        }
        Ok(())
    }
}

/// The head layout of either attention: the counts it needs are positive,
/// K/V head counts of 0 default to one per noise head (GDA; K2 heads to
/// the K/V count) or one per query head (standard), and each count divides
/// the one it serves.
fn resolve_heads(m: &mut ModelConfig) -> Result<(), KeyError> {
    match m.attention {
        AttentionKind::Gda => {
            if m.signal_heads == 0 || m.noise_heads == 0 {
                return Err(key_err(
                    if m.signal_heads == 0 { "model.signal_heads" } else { "model.noise_heads" },
                    "must be a positive integer",
                ));
            }
            require_divisor("model.noise_heads", m.noise_heads, "noise heads", m.signal_heads, "signal heads")?;
            if m.kv_heads == 0 {
                m.kv_heads = m.noise_heads;
            }
            require_divisor("model.kv_heads", m.kv_heads, "K/V heads", m.noise_heads, "noise heads")?;
            if m.noise_kv_heads == 0 {
                m.noise_kv_heads = m.kv_heads;
            }
            require_divisor("model.noise_kv_heads", m.noise_kv_heads, "K2 heads", m.noise_heads, "noise heads")
        }
        AttentionKind::Standard => {
            if m.heads == 0 {
                return Err(key_err("model.heads", "must be a positive integer"));
            }
            if m.kv_heads == 0 {
                m.kv_heads = m.heads;
            }
            require_divisor("model.kv_heads", m.kv_heads, "K/V heads", m.heads, "query heads")
        }
    }
}

/// The MLP width (8/3 · d_model, SwiGLU's usual ratio, rounded up to a
/// multiple of 32) and one λ_init per layer (the DIFF schedule) when left
/// at 0 and [].
fn resolve_widths(m: &mut ModelConfig) -> Result<(), KeyError> {
    if m.mlp_hidden == 0 {
        m.mlp_hidden = (m.d_model.saturating_mul(8) / 3).div_ceil(32).saturating_mul(32);
    }
    if m.lambda_init.is_empty() {
        m.lambda_init = (0..m.n_layers).map(default_lambda_init).collect();
    } else if m.lambda_init.len() != m.n_layers {
        return Err(key_err(
            "model.lambda_init",
            format!(
                "has {} values for {} layers; allowed: one value per layer, or [] for the default schedule",
                m.lambda_init.len(),
                m.n_layers
            ),
        ));
    }
    Ok(())
}

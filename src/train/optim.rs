//! AdamW with state the project owns, so checkpoints can carry the moments
//! and a resumed run continues bit for bit (tch's `nn::AdamW` cannot save them).

use tch::{nn::VarStore, Kind, Tensor};

use crate::config::TrainConfig;

pub struct AdamW {
    /// Trainable parameters, sorted by name (the checkpoint order).
    pub params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Weight decay applies to matrices only (not norms, not λ vectors).
    decay: Vec<bool>,
    /// Updates applied so far (the bias-correction step count).
    pub updates: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(vs: &VarStore, cfg: &TrainConfig) -> AdamW {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Tensor| p.zeros_like().detach();
        AdamW {
            m: params.iter().map(|(_, p)| zeros(p)).collect(),
            v: params.iter().map(|(_, p)| zeros(p)).collect(),
            decay: params.iter().map(|(_, p)| p.dim() >= 2).collect(),
            params,
            updates: 0,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.adam_eps,
            weight_decay: cfg.weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// Global L2 norm of all gradients, as a 0-dim tensor (no host sync).
    pub fn grad_norm(&self) -> Tensor {
        let sq: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad().square().sum(Kind::Float)).collect();
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()
    }

    /// Scales gradients so their global norm is at most `max_norm`; returns
    /// the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        let norm = self.grad_norm();
        if max_norm > 0.0 {
            let coef = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
            tch::no_grad(|| {
                for (_, p) in self.params.iter() {
                    let _ = p.grad().g_mul_(&coef);
                }
            });
        }
        norm
    }

    pub fn step(&mut self, lr: f64) {
        self.updates += 1;
        let t = self.updates as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                let _ = self.m[i].lerp_(&g, 1.0 - self.beta1);
                let _ = self.v[i].g_mul_scalar_(self.beta2);
                let _ = self.v[i].g_add_(&(g.square() * (1.0 - self.beta2)));
                if self.decay[i] && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let denom = (self.v[i].sqrt() / bc2.sqrt()) + self.eps;
                let _ = p.g_sub_(&(&self.m[i] / denom * (lr / bc1)));
            }
        });
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for the checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("v.{name}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Restores moments saved by `state_tensors`; every moment must be present
    /// with its parameter's shape.
    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>, updates: u64) -> Result<(), String> {
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        tch::no_grad(|| {
            for (i, (name, p)) in self.params.iter().enumerate() {
                for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                    let key = format!("{prefix}.{name}");
                    let t = map.get(&key).ok_or_else(|| format!("optimizer state has no tensor {key}"))?;
                    if t.size() != p.size() {
                        return Err(format!(
                            "optimizer tensor {key} has shape {:?}, the model needs {:?}",
                            t.size(),
                            p.size()
                        ));
                    }
                    slot.copy_(t);
                }
            }
            Ok(())
        })?;
        self.updates = updates;
        Ok(())
    }
}

/// Linear warmup to `lr`, then cosine decay to `min_lr` at the last step.
pub fn learning_rate(cfg: &TrainConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let progress = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let cfg = TrainConfig { lr: 1.0, min_lr: 0.1, warmup_steps: 10, steps: 110, ..TrainConfig::default() };
        assert!((learning_rate(&cfg, 0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&cfg, 9) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&cfg, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&cfg, 60) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&cfg, 110) - 0.1).abs() < 1e-12);
        for s in 10..110 {
            assert!(learning_rate(&cfg, s + 1) <= learning_rate(&cfg, s));
        }
    }
}

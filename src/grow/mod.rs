//! Growing a trained model: the tensor operations (`ops`, pure), and the
//! check that a grown model computes its source's function on held-out
//! tokens before it is trained further as a normal run.

pub mod ops;

use std::collections::HashMap;
use std::path::Path;

use tch::{nn::VarStore, Device, Tensor};

pub use self::ops::{grow, CloneNoise, GrowOp};
use crate::config::{ModelConfig, Spec};
use crate::data::Dataset;
use crate::error::{input, tch_io, GdaError};
use crate::eval::evaluate;
use crate::model::{self, Model};
use crate::train::checkpoint::{self, load_map};
use crate::train::run_dir::Source;

/// A grown model whose function was checked against its source.
pub struct Grown {
    pub spec: Spec,
    pub tensors: HashMap<String, Tensor>,
    pub max_logit_diff: f64,
    pub source_loss: f64,
    pub grown_loss: f64,
    pub added_parameters: usize,
}

fn model_from(cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<(VarStore, Model), GdaError> {
    let (vs, model) = Model::build(cfg, Device::Cpu);
    load_map(&vs, tensors).map_err(input)?;
    Ok((vs, model))
}

/// Grows `src` by `op` and evaluates source and grown models on the same
/// held-out windows (the run's fixed evaluation set); refuses a grown model
/// whose logits differ by more than `tolerance`.
#[allow(clippy::too_many_arguments)]
pub fn grow_checked(
    src: &Source,
    base: &Spec,
    op: &GrowOp,
    noise: Option<&CloneNoise>,
    name: &str,
    overrides: &[String],
    data: &Dataset,
    tolerance: f64,
) -> Result<Grown, GdaError> {
    let file = src.checkpoint.join(checkpoint::MODEL_FILE);
    let source_tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .map_err(|e| input(format!("cannot read {}: {e}", file.display())))?
        .into_iter()
        .collect();
    let (_svs, source) = model_from(&src.spec.model, &source_tensors).map_err(|e| {
        input(format!("{}: checkpoint tensors do not match its run's spec: {e}", src.checkpoint.display()))
    })?;
    let (cfg, tensors) = grow(&src.spec.model, &source_tensors, op, noise)
        .map_err(|e| input(format!("cannot grow {}: {e}", src.run_dir.display())))?;
    let mut spec = base.clone();
    spec.model = cfg.clone();
    spec.name = name.to_string();
    let spec = spec.with_overrides(overrides)?;
    if spec.model != cfg {
        return Err(input(
            "--set may not change model keys of a grown model: its shape comes from the source and the growth",
        ));
    }
    let (_gvs, grown) = model_from(&cfg, &tensors)?;

    let tc = &spec.train;
    let x = data.eval_inputs(&spec, tc.batch_size, Device::Cpu);
    let max_logit_diff = tch::no_grad(|| (source.forward(&x) - grown.forward(&x)).abs().max().double_value(&[]));
    let source_loss = evaluate(&source, data, &spec, Device::Cpu).loss;
    let grown_loss = evaluate(&grown, data, &spec, Device::Cpu).loss;
    // NaN differences fail too.
    if max_logit_diff.is_nan() || max_logit_diff > tolerance {
        return Err(GdaError::NotPreserved { max_logit_diff, tolerance, source_loss, grown_loss });
    }
    let added_parameters = model::param_count(&cfg) - model::param_count(&src.spec.model);
    Ok(Grown { spec, tensors, max_logit_diff, source_loss, grown_loss, added_parameters })
}

/// Writes the grown weights to `path` (the run's `train.init`).
pub fn write_init(grown: &Grown, path: &Path) -> Result<(), GdaError> {
    let mut named: Vec<(&String, &Tensor)> = grown.tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let named: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (n.clone(), t.contiguous())).collect();
    Tensor::write_safetensors(&named, path).map_err(tch_io("cannot write", path))
}

/// Uniform growth's group count whose added parameters come closest to
/// `target` (signal-only growth's), for a comparison at equal added size.
pub fn matching_groups(cfg: &ModelConfig, target: usize) -> usize {
    let per_group = |k: usize| {
        let mut m = cfg.clone();
        m.signal_heads += k * cfg.ratio();
        m.noise_heads += k;
        let r = cfg.noise_heads / cfg.kv_heads;
        let r2 = cfg.noise_heads / cfg.noise_kv_heads;
        if !k.is_multiple_of(r) || !k.is_multiple_of(r2) {
            return None;
        }
        m.kv_heads += k / r;
        m.noise_kv_heads += k / r2;
        Some(model::param_count(&m) - model::param_count(cfg))
    };
    (1..=cfg.noise_heads)
        .filter_map(|k| per_group(k).map(|added| (k, added.abs_diff(target))))
        .min_by_key(|&(k, gap)| (gap, k))
        .map(|(k, _)| k)
        .unwrap_or(cfg.noise_heads)
}

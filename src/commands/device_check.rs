//! `gda device-check` (hidden): the numerical checks of scripts/gpu/check.sh
//! that need gda's own model on a chosen device. Each prints one JSON object.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tch::{Device, Kind, Tensor};

use crate::config::Spec;
use crate::data::Dataset;
use crate::device;
use crate::model::attention::Path as AttnPath;
use crate::model::Model;
use crate::train::checkpoint;

/// Largest |loss difference| accepted between two computations of the same
/// loss: bf16 keeps 8 mantissa bits (relative step 2⁻⁸ ≈ 0.4%), and the
/// attention kernels and matmuls accumulate in different orders, so a loss
/// of ~5 nats may move by a few hundredths; fp32 agrees to about 1e-5.
pub fn loss_tolerance(kind: Kind) -> f64 {
    if kind == Kind::BFloat16 {
        5e-2
    } else {
        1e-4
    }
}

#[derive(Debug, Args)]
pub struct DeviceCheckArgs {
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Debug, Subcommand)]
pub enum Check {
    /// What libtorch sees: the device, its compute dtype, the libtorch version.
    Info {
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Fused (SDPA) against materialised attention on one device, for G = 4,
    /// G = 1 and standard attention, on a model fresh from the seed.
    Attention {
        #[arg(long, default_value = "auto")]
        device: String,
        #[arg(long, default_value_t = 256)]
        context: usize,
    },
    /// The loss of a run's newest checkpoint on CPU (fp32) and on a device
    /// (its compute dtype), on the same tokens: the run's first training batch.
    Loss {
        #[arg(long)]
        run: PathBuf,
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

pub fn run(args: DeviceCheckArgs) -> anyhow::Result<()> {
    let out = match args.check {
        Check::Info { device } => {
            let d = pick(&device)?;
            serde_json::json!({
                "device": device::describe(d),
                "cuda_available": tch::Cuda::is_available(),
                "cuda_devices": tch::Cuda::device_count(),
                "cudnn_available": tch::Cuda::cudnn_is_available(),
                "compute_dtype": format!("{:?}", device::compute_kind(d)),
                "libtorch_version": device::torch::LIBTORCH_VERSION,
                "threads": tch::get_num_threads(),
            })
        }
        Check::Attention { device, context } => attention(pick(&device)?, context)?,
        Check::Loss { run, device } => loss(&run, pick(&device)?)?,
    };
    println!("{out}");
    Ok(())
}

fn pick(name: &str) -> anyhow::Result<Device> {
    device::select(name).map_err(anyhow::Error::msg)
}

/// The three layouts check.sh compares, as spec overrides on the default spec.
const VARIANTS: &[(&str, &[&str])] = &[
    ("gda-g4", &["model.signal_heads=8", "model.noise_heads=2"]),
    ("gda-g1", &["model.signal_heads=8", "model.noise_heads=8"]),
    ("standard", &["model.attention=\"standard\"", "model.heads=8"]),
];

fn attention(d: Device, context: usize) -> anyhow::Result<serde_json::Value> {
    let kind = device::compute_kind(d);
    let mut rows = Vec::new();
    for (name, sets) in VARIANTS {
        let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        sets.extend(["model.d_model=256".into(), "model.head_dim=32".into(), format!("train.context={context}")]);
        let spec = Spec::load(None, &sets)?;
        tch::manual_seed(spec.seed as i64);
        let (_vs, model) = Model::build(&spec.model, d);
        let tokens = Tensor::randint(spec.model.vocab_size as i64, [2, context as i64], (Kind::Int64, d));
        let (x, y) = (tokens.narrow(1, 0, context as i64 - 1), tokens.narrow(1, 1, context as i64 - 1));
        let (fused, materialised) = tch::no_grad(|| {
            (model.forward_path(&x, AttnPath::Fused).0, model.forward_path(&x, AttnPath::Materialised).0)
        });
        let lf = device::host_f64(&Model::loss(&fused, &y));
        let lm = device::host_f64(&Model::loss(&materialised, &y));
        let diff = (&fused - &materialised).abs();
        let max_logit = device::host_f64(&diff.max());
        let mean_logit = device::host_f64(&diff.mean(Kind::Float));
        let ok = (lf - lm).abs() <= loss_tolerance(kind) && lf.is_finite() && lm.is_finite();
        rows.push(serde_json::json!({
            "variant": name, "loss_fused": lf, "loss_materialised": lm, "loss_diff": (lf - lm).abs(),
            "max_abs_logit_diff": max_logit, "mean_abs_logit_diff": mean_logit, "ok": ok,
        }));
    }
    let ok = rows.iter().all(|r| r["ok"] == true);
    Ok(serde_json::json!({
        "check": "attention", "device": device::describe(d), "compute_dtype": format!("{kind:?}"),
        "context": context, "loss_tolerance": loss_tolerance(kind), "ok": ok, "variants": rows,
    }))
}

fn loss(run: &std::path::Path, d: Device) -> anyhow::Result<serde_json::Value> {
    let spec = Spec::load(Some(&run.join("spec.toml")), &[])?;
    let ckpt = checkpoint::latest(run).with_context(|| format!("{} has no checkpoint", run.display()))?;
    let data = Dataset::load(&spec)?;
    let (x, y) = data.batch(&spec, 0, 0..spec.train.batch_size.min(8), Device::Cpu);
    let mut losses = Vec::new();
    for dev in [Device::Cpu, d] {
        let (vs, model) = Model::build(&spec.model, dev);
        checkpoint::load_weights(&vs, &ckpt.join("model.safetensors"))?;
        let l = tch::no_grad(|| Model::loss(&model.forward(&x.to_device(dev)), &y.to_device(dev)));
        losses.push((device::host_f64(&l), model.compute_kind));
    }
    let (cpu, (dev_loss, kind)) = (losses[0].0, losses[1]);
    let diff = (cpu - dev_loss).abs();
    Ok(serde_json::json!({
        "check": "loss", "run": run, "checkpoint": ckpt, "device": device::describe(d),
        "compute_dtype": format!("{kind:?}"), "cpu_loss": cpu, "device_loss": dev_loss, "loss_diff": diff,
        "loss_tolerance": loss_tolerance(kind), "ok": diff <= loss_tolerance(kind) && dev_loss.is_finite(),
    }))
}

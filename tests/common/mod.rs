//! Helpers shared by the integration tests: the real `gda` binary, a tiny
//! spec on the real default corpus, and readers for what a run writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `gda` binary built by cargo for this test run.
pub fn gda() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gda"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the venv scripts/hf-venv.sh makes (transformers, lm-eval);
/// a missing venv fails the test (it would otherwise pass without checking
/// anything). Run it offline: see [`hf_offline`].
pub fn hf_python() -> PathBuf {
    let venv = gda::data::corpus::cache_dir().join("hf-venv");
    assert!(
        venv.join(".gda-complete").exists(),
        "no transformers venv at {}: run scripts/hf-venv.sh (scripts/test.sh does) to install it",
        venv.display()
    );
    venv.join("bin").join("python")
}

/// [`hf_python`] with `args`, offline, one thread, `HF_HOME` in gda's cache.
pub fn hf_offline() -> Command {
    let mut c = Command::new(hf_python());
    c.envs([("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")])
        .envs([("OMP_NUM_THREADS", "1"), ("TOKENIZERS_PARALLELISM", "false")])
        .env("HF_HOME", gda::data::corpus::cache_dir().join("hf-home"));
    c
}

/// A small GDA model that trains over a hundred steps per second on one
/// thread (one thread per process: tests run in parallel on 2 cores, and
/// oversubscribed OpenMP threads slow everything down many times).
pub const TINY: &str = r#"
seed = 7
[model]
d_model = 32
n_layers = 2
head_dim = 8
signal_heads = 4
noise_heads = 2
[train]
context = 32
batch_size = 8
steps = 60
warmup_steps = 5
lr = 1e-2
min_lr = 1e-3
eval_every = 20
eval_tokens = 2048
log_every = 10
threads = 1
"#;

/// Writes `text` as `<dir>/<name>.toml` and returns its path.
pub fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// metrics.csv as (header, rows).
pub fn metrics(run_dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    gda::report::table::read(&run_dir.join("metrics.csv")).unwrap()
}

/// The step of the last complete row of a run's metrics.csv (0 before the
/// first; the file is read while the run appends to it).
pub fn last_logged_step(run: &Path) -> usize {
    gda::report::table::read(&run.join("metrics.csv"))
        .ok()
        .and_then(|(_, rows)| rows.last()?.first()?.parse().ok())
        .unwrap_or(0)
}

/// The value of `col` in every row where it is not empty, with its step.
pub fn column(run_dir: &Path, col: &str) -> Vec<(usize, f64)> {
    let (header, rows) = metrics(run_dir);
    let i = header.iter().position(|h| h == col).unwrap_or_else(|| panic!("no column {col}"));
    rows.iter().filter(|r| !r[i].is_empty()).map(|r| (r[0].parse().unwrap(), r[i].parse().unwrap())).collect()
}

/// Rows of metrics.csv without the timing columns (the only ones that may
/// differ between two runs of the same experiment).
pub fn deterministic_rows(run_dir: &Path) -> Vec<Vec<String>> {
    let (header, rows) = metrics(run_dir);
    let keep: Vec<usize> =
        (0..header.len()).filter(|&i| !["tokens_per_s", "mfu", "elapsed_s"].contains(&header[i].as_str())).collect();
    rows.iter().map(|r| keep.iter().map(|&i| r[i].clone()).collect()).collect()
}

/// A JSON file (summary.json, manifest.json) of an experiment's point.
pub fn point_json(dir: &Path, point: &str, file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("points").join(point).join(file)).unwrap()).unwrap()
}

/// Path of a run's newest checkpoint.
pub fn latest_checkpoint(run_dir: &Path) -> PathBuf {
    gda::train::checkpoint::latest(run_dir).expect("run has a checkpoint")
}

/// Polls `ready` until it holds, panicking after `limit`.
pub fn wait_for(limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CSV file as maps from column to cell.
pub type Table = Vec<std::collections::BTreeMap<String, String>>;

pub fn table(path: &Path) -> Table {
    let (header, rows) = gda::report::table::read(path).unwrap();
    rows.into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), header.len(), "{cells:?}");
            header.iter().cloned().zip(cells).collect()
        })
        .collect()
}

/// Waits for `child` at most `limit`; a child still running then is killed
/// and the test fails (a hang must fail, not block the suite).
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The text elements of an SVG that plotters wrote: (x, y, text-anchor, text).
pub fn svg_texts(svg: &str) -> Vec<(f64, f64, String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        tag.find(&key).map(|i| tag[i + key.len()..].split('"').next().unwrap().to_string()).unwrap_or_default()
    };
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let (tag, rest) = t.split_once('>').unwrap();
            let text = rest.split("</text>").next().unwrap().trim().to_string();
            (attr(tag, "x").parse().unwrap(), attr(tag, "y").parse().unwrap(), attr(tag, "text-anchor"), text)
        })
        .collect()
}

// ------------------------------------------- numerical helpers (tch, CPU)
//
// Used by tests/attention.rs and tests/grow.rs: config builders, the shared
// RNG lock, weight randomizers and tensor comparisons.

use gda::config::{AttentionKind, ModelConfig, NoiseScope, Spec};
use gda::model::attention::{Attention, GdaAttention};
use gda::model::Model;
use tch::{Device, Kind, Tensor};

pub const CPU: Device = Device::Cpu;
pub const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

/// `model` resolved as the model section of a default spec; panics with the
/// offending key if it does not resolve.
pub fn resolve(model: ModelConfig) -> ModelConfig {
    let mut spec = Spec { model, ..Spec::default() };
    if let Err(e) = spec.resolve() {
        panic!("config does not resolve: {}: {}", e.key, e.msg);
    }
    spec.model
}

/// A resolved gda config. `kv` 0 means one K/V head per noise head and
/// `noise_kv` 0 means as many K2 heads as K/V heads (resolve's defaults).
#[allow(clippy::too_many_arguments)]
pub fn gda_config(
    hs: usize,
    hn: usize,
    kv: usize,
    noise_kv: usize,
    scope: NoiseScope,
    head_dim: usize,
    d_model: usize,
    n_layers: usize,
    init_std: f64,
) -> ModelConfig {
    resolve(ModelConfig {
        attention: AttentionKind::Gda,
        signal_heads: hs,
        noise_heads: hn,
        kv_heads: kv,
        noise_kv_heads: noise_kv,
        noise_scope: scope,
        head_dim,
        d_model,
        n_layers,
        init_std,
        ..ModelConfig::default()
    })
}

/// A resolved standard-attention config; `kv` 0 means one K/V head per head.
pub fn std_config(
    heads: usize,
    kv: usize,
    head_dim: usize,
    d_model: usize,
    n_layers: usize,
    init_std: f64,
) -> ModelConfig {
    resolve(ModelConfig {
        attention: AttentionKind::Standard,
        heads,
        kv_heads: kv,
        head_dim,
        d_model,
        n_layers,
        init_std,
        ..ModelConfig::default()
    })
}

/// The tests of one binary share libtorch's global RNG; holding this lock
/// while seeding and drawing keeps each test deterministic when the harness
/// runs them in parallel. The tensors are tiny, so libtorch's intra-op
/// threads only cost time (a lot of it on a busy machine): one thread.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn seeded(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    let guard = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    guard
}

/// Overwrites a (possibly grad-requiring) variable in place.
pub fn assign(var: &Tensor, src: &Tensor) {
    tch::no_grad(|| {
        let mut w = var.shallow_clone();
        w.copy_(src);
    });
}

pub fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    max_abs(&(a - b))
}

/// The gda layer inside `attn`; panics on a standard layer.
pub fn gda_layer(attn: &Attention) -> &GdaAttention {
    match attn {
        Attention::Gda(a) => a,
        Attention::Standard(_) => panic!("expected a gda layer"),
    }
}

/// Overwrites a norm-like weight with uniform draws in [0.5, 1.5), so that it
/// is not all ones and actually matters.
pub fn randomize_norm(w: &Tensor) {
    assign(w, &(Tensor::rand(w.size(), F32) + 0.5));
}

/// Random λ vectors and subln weight, so that λ ≠ λ_init and the norm's
/// weight matters. λ is re-drawn until it is also well away from 1: at λ ≈ 1
/// the first position's pre-norm output (1 − λ)·v₀ nearly cancels, and the
/// RMSNorm amplifies fp32 rounding by 1/|1 − λ| (the math of DIFF itself,
/// not a defect of either path), which would make every tolerance arbitrary.
pub fn randomize_gda(a: &GdaAttention) {
    for _ in 0..100 {
        for v in [&a.lambda_q1, &a.lambda_k1, &a.lambda_q2, &a.lambda_k2] {
            assign(v, &(Tensor::randn(v.size(), F32) * 0.3));
        }
        let lam = a.lambda().double_value(&[]);
        if (lam - a.lambda_init).abs() > 0.02 && (1.0 - lam).abs() > 0.25 {
            randomize_norm(&a.subln.weight);
            return;
        }
    }
    panic!("could not draw a well-conditioned λ");
}

/// Randomizes every gda layer of `model` (`randomize_gda`) and, with `norms`,
/// also each block's attn_norm and mlp_norm weights and the final norm. The
/// draws happen block by block in that order, then the final norm.
pub fn randomize_model(model: &Model, norms: bool) {
    for block in &model.blocks {
        if let Attention::Gda(a) = &block.attn {
            randomize_gda(a);
        }
        if norms {
            randomize_norm(&block.attn_norm.weight);
            randomize_norm(&block.mlp_norm.weight);
        }
    }
    if norms {
        randomize_norm(&model.norm.weight);
    }
}

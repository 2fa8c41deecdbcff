//! Checkpoints: `checkpoints/step-NNNNNNNN/` holding `model.safetensors`,
//! `optim.safetensors` and `state.json`, plus a `LATEST` file naming the
//! newest complete one. A checkpoint is written into a temporary directory and
//! renamed into place, and `LATEST` is replaced by rename, so a crash at any
//! moment leaves the previous checkpoint usable.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::optim::AdamW;
use crate::error::{input, io, tch_io, GdaError};
use crate::eval::Score;
use crate::util::fs::{atomic_write, sync_dir};

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const STATE_FILE: &str = "state.json";

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed; the data position is a function of it.
    pub step: usize,
    pub tokens_seen: u64,
    /// Training wall time so far (seconds), evaluation included.
    pub elapsed_s: f64,
    /// Sum and count of train losses since the last metrics row.
    pub loss_sum: f64,
    pub loss_count: usize,
    pub spec_hash: String,
    /// The newest validation result, if any.
    pub val_loss: Option<f64>,
    pub val_bpb: Option<f64>,
    #[serde(default)]
    pub val_acc: Option<f64>,
}

impl TrainState {
    pub fn record(&mut self, score: Score) {
        self.val_loss = Some(score.loss);
        self.val_bpb = score.bpb;
        self.val_acc = score.acc;
    }
}

pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

fn named(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes the model weights alone (fp32, contiguous) as safetensors.
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<(), GdaError> {
    let tensors: Vec<(String, Tensor)> = named(vs).into_iter().map(|(n, t)| (n, t.detach().contiguous())).collect();
    Tensor::write_safetensors(&tensors, path).map_err(tch_io("cannot write", path))
}

/// Saves a checkpoint for `state.step` and points `LATEST` at it; older
/// checkpoints are removed once the new one is in place. The checkpoint
/// `LATEST` names is never deleted before `LATEST` names its replacement (a
/// kill in between would leave nothing to resume from): saving the step it
/// already holds again writes `step-NNNNNNNN.1` beside it.
pub fn save(run_dir: &Path, vs: &VarStore, opt: &AdamW, state: &TrainState) -> Result<PathBuf, GdaError> {
    let root = dir(run_dir);
    let base = format!("step-{:08}", state.step);
    let current = fs::read_to_string(root.join("LATEST")).ok().map(|n| n.trim().to_string());
    let name = if current.as_deref() == Some(base.as_str()) { format!("{base}.1") } else { base };
    let fin = root.join(&name);
    let tmp = root.join(format!("{name}.tmp"));
    let write_err = || io("cannot write checkpoint", &fin);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(write_err())?;
    }
    let written = write_files(&tmp, vs, opt, state, &fin);
    if written.is_err() {
        // A full disk gets the partial checkpoint's space back; what is left
        // (nothing, or a directory the next save replaces) is harmless.
        let _ = fs::remove_dir_all(&tmp);
    }
    written?;
    if fin.exists() {
        // Not what LATEST names (see above): a leftover of a crash between
        // the rename below and LATEST's replacement.
        fs::remove_dir_all(&fin).map_err(write_err())?;
    }
    fs::rename(&tmp, &fin).map_err(write_err())?;
    sync_dir(&fin).map_err(write_err())?;
    atomic_write(&root.join("LATEST"), name.as_bytes()).map_err(write_err())?;
    for entry in fs::read_dir(&root).map_err(write_err())?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("step-") && n != name {
            // An old checkpoint left behind costs disk space, nothing else:
            // the next save tries again.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(fin)
}

/// Writes and syncs the three files of a checkpoint into `tmp`; errors name `fin`.
fn write_files(tmp: &Path, vs: &VarStore, opt: &AdamW, state: &TrainState, fin: &Path) -> Result<(), GdaError> {
    let write_err = || io("cannot write checkpoint", fin);
    fs::create_dir_all(tmp).map_err(write_err())?;
    save_weights(vs, &tmp.join(MODEL_FILE))?;
    let opt_tensors: Vec<(String, Tensor)> =
        opt.state_tensors().into_iter().map(|(n, t)| (n, t.contiguous())).collect();
    let opt_path = tmp.join(OPTIM_FILE);
    Tensor::write_safetensors(&opt_tensors, &opt_path).map_err(tch_io("cannot write", &opt_path))?;
    let state_json = serde_json::to_vec_pretty(state).expect("state serialises");
    fs::write(tmp.join(STATE_FILE), state_json).map_err(write_err())?;
    for f in [MODEL_FILE, OPTIM_FILE, STATE_FILE] {
        sync_file(&tmp.join(f)).map_err(write_err())?;
    }
    Ok(())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    let root = dir(run_dir);
    let name = fs::read_to_string(root.join("LATEST")).ok()?;
    let p = root.join(name.trim());
    p.join(STATE_FILE).is_file().then_some(p)
}

/// The step of a run's newest readable checkpoint.
pub fn latest_step(run_dir: &Path) -> Option<usize> {
    latest(run_dir).and_then(|c| read_state(&c).ok()).map(|s| s.step)
}

pub fn read_state(ckpt: &Path) -> Result<TrainState, GdaError> {
    let p = ckpt.join(STATE_FILE);
    let text = fs::read_to_string(&p).map_err(|e| input(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_str(&text).map_err(|e| input(format!("{} is not a gda checkpoint state: {e}", p.display())))
}

/// Copies saved weights into the model's variables; names and shapes must
/// match the model exactly.
pub fn load_weights(vs: &VarStore, path: &Path) -> Result<(), GdaError> {
    let saved = Tensor::read_safetensors(path).map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
    load_map(vs, &saved.into_iter().collect())
        .map_err(|e| input(format!("{} does not match the model's config: {e}", path.display())))
}

/// Copies `map` into the model's variables; names and shapes must match the
/// model exactly (the rules of `checkpoint::load_weights`).
pub fn load_map(vs: &VarStore, map: &HashMap<String, Tensor>) -> Result<(), String> {
    let vars = vs.variables();
    for name in map.keys() {
        if !vars.contains_key(name) {
            return Err(format!("unexpected tensor {name} (the model has no such variable)"));
        }
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let t = map.get(name).ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.size() != var.size() {
                return Err(format!("tensor {name} has shape {:?}, the model's is {:?}", t.size(), var.size()));
            }
            var.shallow_clone().copy_(t);
        }
        Ok(())
    })
}

/// Restores weights and optimizer moments; returns the training state.
pub fn restore(ckpt: &Path, vs: &VarStore, opt: &mut AdamW) -> Result<TrainState, GdaError> {
    let state = read_state(ckpt)?;
    load_weights(vs, &ckpt.join(MODEL_FILE))?;
    let p = ckpt.join(OPTIM_FILE);
    let tensors = Tensor::read_safetensors(&p).map_err(|e| input(format!("cannot read {}: {e}", p.display())))?;
    opt.load_state(tensors, state.step as u64).map_err(|e| input(format!("{}: {e}", p.display())))?;
    Ok(state)
}

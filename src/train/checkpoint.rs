//! Checkpoints: `checkpoints/step-NNNNNNNN/` holding `model.safetensors`,
//! `optim.safetensors`, `state.json` and `SHA256SUMS` (their checksums, in
//! the format `sha256sum -c` reads), plus a `LATEST` file naming the newest
//! complete one. A checkpoint is written into a temporary directory and
//! renamed into place, and `LATEST` is replaced by rename, so a crash at any
//! moment leaves the previous checkpoint usable. Everything that loads a
//! checkpoint verifies its checksums first: a damaged file (a bad disk, a
//! partial copy) is refused, never loaded silently.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::optim::AdamW;
use crate::error::{input, io, tch_io, GdaError};
use crate::eval::Score;
use crate::util::fs::{atomic_write, sync_dir};
use crate::util::out::errln;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const SUMS_FILE: &str = "SHA256SUMS";
/// The files a checkpoint's checksums cover.
const FILES: [&str; 3] = [MODEL_FILE, OPTIM_FILE, STATE_FILE];
/// Where `--resume-from` moves the checkpoints newer than the one it resumes
/// from (kept, never deleted: the run will write its own again).
pub const SET_ASIDE_DIR: &str = "set-aside";

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

/// Saves a checkpoint for `state.step` and points `LATEST` at it; of the
/// older checkpoints, the newest `keep - 1` are kept and the rest removed,
/// once the new one is in place and its checksums are written. The checkpoint
/// `LATEST` names is never deleted before `LATEST` names its replacement (a
/// kill in between would leave nothing to resume from): saving the step it
/// already holds again writes `step-NNNNNNNN.1` beside it.
pub fn save(run_dir: &Path, vs: &VarStore, opt: &AdamW, state: &TrainState, keep: usize) -> Result<PathBuf, GdaError> {
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
    let mut old = complete(&root);
    old.retain(|(_, n)| n != &name);
    for (_, n) in old.iter().rev().skip(keep.saturating_sub(1)) {
        // An old checkpoint left behind costs disk space, nothing else:
        // the next save tries again.
        let _ = fs::remove_dir_all(root.join(n));
    }
    Ok(fin)
}

/// A checkpoint directory's place in the run's order: its step, and whether
/// it is a second save of that step (`step-N.1`). `None` for anything else
/// (temporary directories, `set-aside/`).
fn order(name: &str) -> Option<(usize, bool)> {
    let rest = name.strip_prefix("step-")?;
    let (digits, again) = match rest.strip_suffix(".1") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, again))
}

/// The run's checkpoint directories, oldest first, with their order.
fn complete(root: &Path) -> Vec<((usize, bool), String)> {
    let mut found: Vec<((usize, bool), String)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            Some((order(&n)?, n))
        })
        .collect();
    found.sort();
    found
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
    let mut sums = String::new();
    for f in FILES {
        let p = tmp.join(f);
        sync_file(&p).map_err(write_err())?;
        // Read back from the file, not hashed from memory: the sums
        // vouch for what is stored.
        let (hex, _) = sha256_file(&p).map_err(write_err())?;
        sums.push_str(&format!("{hex}  {f}\n"));
    }
    fs::write(tmp.join(SUMS_FILE), sums).map_err(write_err())?;
    sync_file(&tmp.join(SUMS_FILE)).map_err(write_err())?;
    Ok(())
}

/// The SHA-256 of a file (lowercase hex) and its length, read in 1 MiB
/// blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(), len))
}

/// Checks every file of a checkpoint against its `SHA256SUMS`. A damaged,
/// truncated or missing file is refused (exit 2) naming the file, the
/// expected and the found checksum and, when the run has an older
/// checkpoint that verifies, the command that resumes from it. A checkpoint
/// written before gda wrote checksums (no `SHA256SUMS`) passes with a
/// warning.
pub fn verify(ckpt: &Path) -> Result<(), GdaError> {
    match damage(ckpt) {
        Ok(None) => Ok(()),
        Ok(Some(what)) => Err(input(format!(
            "checkpoint {} is damaged: {what}; it was not loaded (nor deleted){}",
            ckpt.display(),
            fallback(ckpt).unwrap_or_default()
        ))),
        Err(Legacy) => {
            errln!(
                "warning: checkpoint {} has no {SUMS_FILE} (written before gda checked checkpoints): loading it unverified",
                ckpt.display()
            );
            Ok(())
        }
    }
}

/// A checkpoint without checksums.
struct Legacy;

/// What is wrong with a checkpoint's files, if anything.
fn damage(ckpt: &Path) -> Result<Option<String>, Legacy> {
    let Ok(sums) = fs::read_to_string(ckpt.join(SUMS_FILE)) else {
        if ckpt.join(SUMS_FILE).exists() {
            return Ok(Some(format!("{SUMS_FILE} cannot be read")));
        }
        return Err(Legacy);
    };
    let listed: HashMap<&str, &str> = sums.lines().filter_map(|l| l.split_once("  ")).map(|(h, f)| (f, h)).collect();
    for f in FILES {
        let Some(expected) = listed.get(f) else {
            return Ok(Some(format!("{SUMS_FILE} lists no checksum for {f}")));
        };
        let p = ckpt.join(f);
        let found = match sha256_file(&p) {
            Ok((hex, _)) => hex,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(format!("{} is missing", p.display())))
            }
            Err(e) => return Ok(Some(format!("{} cannot be read: {e}", p.display()))),
        };
        if found != *expected {
            return Ok(Some(format!("{} has sha256 {found}, its {SUMS_FILE} says {expected}", p.display())));
        }
    }
    Ok(None)
}

/// "; resume from the older checkpoint …" when the run holds one that
/// verifies.
fn fallback(ckpt: &Path) -> Option<String> {
    let root = ckpt.parent()?;
    let run = root.parent()?;
    let this = order(&ckpt.file_name()?.to_string_lossy())?;
    let mut older = complete(root).into_iter().rev().filter(|(k, _)| *k < this).map(|(_, n)| n);
    let good = older.find(|n| matches!(damage(&root.join(n)), Ok(None)))?;
    Some(format!(
        "; the older checkpoint {good} verifies: continue from it with gda train --resume-from {good} --out {}",
        run.display()
    ))
}

/// The checkpoint a `--resume` continues from, verified: the one
/// `--resume-from` names (`step-N`, `N` or a path), else the one `LATEST`
/// names. `None` when the run has written none. `LATEST` naming no complete
/// checkpoint is refused rather than read as a fresh start.
pub fn resume_point(run_dir: &Path, from: Option<&str>) -> Result<Option<PathBuf>, GdaError> {
    let root = dir(run_dir);
    let names = || {
        let all: Vec<String> = complete(&root).into_iter().map(|(_, n)| n).collect();
        if all.is_empty() {
            "it holds none".to_string()
        } else {
            format!("allowed: {}", all.join(", "))
        }
    };
    let chosen = match from {
        Some(f) => {
            let path = Path::new(f);
            let elsewhere = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .is_some_and(|d| fs::canonicalize(d).ok() != fs::canonicalize(&root).ok());
            if elsewhere {
                return Err(input(format!(
                    "--resume-from {f}: not a checkpoint of {} (a run resumes from its own checkpoints)",
                    run_dir.display()
                )));
            }
            let name = match f.parse::<usize>() {
                Ok(step) => format!("step-{step:08}"),
                Err(_) => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            };
            let p = root.join(&name);
            if name.is_empty() || !p.join(STATE_FILE).is_file() {
                return Err(input(format!(
                    "--resume-from {f}: {} has no such complete checkpoint; {}",
                    root.display(),
                    names()
                )));
            }
            p
        }
        None => match fs::read_to_string(root.join("LATEST")) {
            Ok(name) => {
                let p = root.join(name.trim());
                if name.trim().is_empty() || name.trim().contains('/') || !p.join(STATE_FILE).is_file() {
                    return Err(input(format!(
                        "{} names {:?}, which is not a complete checkpoint of this run; pick one with --resume-from NAME ({})",
                        root.join("LATEST").display(),
                        name.trim(),
                        names()
                    )));
                }
                p
            }
            // No LATEST: no checkpoint yet, or a crash between the first
            // checkpoint's rename and LATEST; the newest complete one then.
            Err(_) => match complete(&root).pop() {
                Some((_, n)) if root.join(&n).join(STATE_FILE).is_file() => root.join(n),
                _ => return Ok(None),
            },
        },
    };
    verify(&chosen)?;
    Ok(Some(chosen))
}

/// Makes `ckpt` the run's newest checkpoint for a `--resume-from`: the
/// checkpoints after it move into `checkpoints/set-aside/` (kept, not
/// deleted) and `LATEST` names it. Returns what was moved.
pub fn rewind(ckpt: &Path) -> Result<Vec<String>, GdaError> {
    let root = ckpt.parent().expect("a checkpoint lies in checkpoints/");
    let name = ckpt.file_name().expect("a checkpoint has a name").to_string_lossy().into_owned();
    let this = order(&name);
    let write_err = || io("cannot write", root);
    let aside = root.join(SET_ASIDE_DIR);
    let mut moved = Vec::new();
    for (_, n) in complete(root).into_iter().filter(|(k, _)| Some(*k) > this) {
        fs::create_dir_all(&aside).map_err(write_err())?;
        let mut to = aside.join(&n);
        let mut k = 1;
        while to.exists() {
            k += 1;
            to = aside.join(format!("{n}.{k}"));
        }
        fs::rename(root.join(&n), &to).map_err(write_err())?;
        moved.push(n);
    }
    atomic_write(&root.join("LATEST"), name.as_bytes()).map_err(write_err())?;
    Ok(moved)
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

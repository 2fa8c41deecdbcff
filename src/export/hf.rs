//! `gda export --format hf`: a folder that Hugging Face `transformers` loads
//! offline with `AutoModelForCausalLM.from_pretrained(DIR,
//! trust_remote_code=True)` and `AutoTokenizer.from_pretrained(DIR)`:
//!
//! - `config.json`: every model key of the spec (resolved), `auto_map` to
//!   the two Python files, `max_position_embeddings` = the training context
//!   (lm-eval reads its context limit there), `torch_dtype`, and `gda_export`
//!   (run, step, tokens seen, spec hash);
//! - `model.safetensors`: the checkpoint's tensors under gda's own names
//!   (docs/tensors.md), fp32, with the `{"format": "pt"}` metadata
//!   transformers expects;
//! - `configuration_gda.py`, `modeling_gda.py`: the model in PyTorch
//!   (`src/export/hf/`, embedded in the binary);
//! - the tokenizer: bytes as a `tokenizer.json` whose id is the byte (EOS:
//!   NUL, id 0); GPT-2 as `vocab.json` + `merges.txt` derived from gda's
//!   ranks (BOS/EOS/UNK `<|endoftext|>`); a trained `tokenizer.json` copied
//!   as it is (EOS: its first special token; `gda data train-tokenizer`
//!   makes none); each with a `tokenizer_config.json`;
//! - `README.md`: a model card (spec, tokens seen, validation loss).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use crate::config::{AttentionKind, NoiseScope, TokenizerKind};
use crate::data::gpt2::Gpt2;
use crate::data::shards::{hex, TOKENIZER_JSON};
use crate::data::tokenizer::byte_chars;
use crate::data::Tokenizer;
use crate::error::{input, io, GdaError};
use crate::model::{self, Model};
use crate::train::checkpoint::{self, load_map, read_state, TrainState};
use crate::train::run_dir::{finished, Manifest, Source};
use crate::util::fs::atomic_write;

/// The Python side, kept as real files in the repository.
pub const CONFIGURATION_PY: &str = include_str!("hf/configuration_gda.py");
pub const MODELING_PY: &str = include_str!("hf/modeling_gda.py");

/// GPT-2's one special token (id 50256), its BOS, EOS and UNK in transformers.
const GPT2_EOT: &str = "<|endoftext|>";
/// The byte tokenizer's EOS: byte 0, NUL (id 0).
const BYTES_EOS: &str = "\u{0}";

/// Writes the export of `src` into `dir` (an empty directory).
pub fn write(src: &Source, dir: &Path) -> Result<(), GdaError> {
    let spec = &src.spec;
    let state = read_state(&src.checkpoint)?;
    let tensors = checked_tensors(src)?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_json(dir, "config.json", &config_json(src, &state))?;
    write_file(dir, "configuration_gda.py", CONFIGURATION_PY.as_bytes())?;
    write_file(dir, "modeling_gda.py", MODELING_PY.as_bytes())?;
    let context = spec.train.context;
    match &spec.data.tokenizer {
        TokenizerKind::Bytes => {
            write_json(dir, "tokenizer.json", &bytes_tokenizer_json())?;
            let mut cfg = fast_tokenizer_config(context);
            cfg["eos_token"] = json!(BYTES_EOS);
            write_json(dir, "tokenizer_config.json", &cfg)?;
        }
        TokenizerKind::Gpt2 => {
            let (vocab, merges) = gpt2_vocab_and_merges(&Gpt2::new());
            write_json(dir, "vocab.json", &vocab)?;
            write_file(dir, "merges.txt", merges.as_bytes())?;
            write_json(dir, "tokenizer_config.json", &gpt2_tokenizer_config(context))?;
        }
        TokenizerKind::Json(path) => {
            let json = trained_tokenizer(src, path)?;
            let mut cfg = fast_tokenizer_config(context);
            if let Some(eos) = first_special_token(&json) {
                cfg["eos_token"] = json!(eos);
            }
            write_file(dir, "tokenizer.json", &json)?;
            write_json(dir, "tokenizer_config.json", &cfg)?;
        }
    }
    write_file(dir, "README.md", model_card(src, &state).as_bytes())
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), GdaError> {
    let path = dir.join(name);
    atomic_write(&path, bytes).map_err(io("cannot write", &path))
}

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<(), GdaError> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    text.push('\n');
    write_file(dir, name, text.as_bytes())
}

/// The checkpoint's tensors, sorted by name, after checking that they are
/// exactly the variables of the run's model (names and shapes).
fn checked_tensors(src: &Source) -> Result<Vec<(String, Tensor)>, GdaError> {
    let file = src.checkpoint.join(checkpoint::MODEL_FILE);
    let mut tensors = Tensor::read_safetensors(&file)
        .map_err(|e| input(format!("cannot read {}: {e}; allowed: a checkpoint gda wrote", file.display())))?;
    let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let (vs, _model) = Model::build(&src.spec.model, Device::Cpu);
    load_map(&vs, &map)
        .map_err(|e| input(format!("{}: the checkpoint does not match its run's spec.toml: {e}", file.display())))?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// A safetensors file of fp32 tensors (the format: an 8-byte little-endian
/// header length, the JSON header, the raw data), with the metadata
/// `{"format": "pt"}` that transformers' loader checks for.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), GdaError> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))
            .map_err(|e| input(format!("tensor {name} cannot be read as fp32: {e}")))?;
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.clone(), json!({ "dtype": "F32", "shape": t.size(), "data_offsets": [start, data.len()] }));
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("JSON values serialise");
    // The data starts 8-byte aligned (the format allows trailing spaces).
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + head.len() + data.len());
    bytes.extend((head.len() as u64).to_le_bytes());
    bytes.extend(head);
    bytes.extend(data);
    atomic_write(path, &bytes).map_err(io("cannot write", path))
}

fn config_json(src: &Source, state: &TrainState) -> Value {
    let spec = &src.spec;
    let mut cfg = match serde_json::to_value(&spec.model).expect("a model config serialises") {
        Value::Object(m) => m,
        _ => unreachable!("a struct serialises to an object"),
    };
    let mut put = |k: &str, v: Value| {
        cfg.insert(k.into(), v);
    };
    put("architectures", json!(["GdaForCausalLM"]));
    put(
        "auto_map",
        json!({
            "AutoConfig": "configuration_gda.GdaConfig",
            "AutoModelForCausalLM": "modeling_gda.GdaForCausalLM",
        }),
    );
    put("model_type", json!("gda"));
    put("max_position_embeddings", json!(spec.train.context));
    put("torch_dtype", json!("float32"));
    put("use_cache", json!(true));
    match spec.data.tokenizer {
        TokenizerKind::Gpt2 => {
            let eot = crate::config::GPT2_VOCAB - 1;
            put("bos_token_id", json!(eot));
            put("eos_token_id", json!(eot));
        }
        TokenizerKind::Bytes => put("eos_token_id", json!(0)),
        TokenizerKind::Json(_) => {}
    }
    put(
        "gda_export",
        json!({
            "run": spec.name,
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "spec_hash": spec.hash(),
            "tokenizer": spec.data.tokenizer.as_str(),
            "gda_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    Value::Object(cfg)
}

fn byte_string(chars: &[char; 256], bytes: &[u8]) -> String {
    bytes.iter().map(|&b| chars[b as usize]).collect()
}

/// A tokenizers-library `tokenizer.json` whose id is the byte: a BPE
/// without merges whose vocabulary is the 256 byte pieces `<0x01>` …
/// `<0xFF>` (every character falls back to the pieces of its UTF-8 bytes)
/// and, for byte 0, the character NUL itself. NUL can so be the EOS token
/// (lm-eval needs one) and still be id 0 as text: no character of any text
/// is turned into another id. Decoding joins the bytes back (valid UTF-8
/// text exactly; ids that cut a character decode to U+FFFD).
pub fn bytes_tokenizer_json() -> Value {
    let mut vocab = Map::new();
    vocab.insert(BYTES_EOS.into(), json!(0));
    for b in 1..256usize {
        vocab.insert(format!("<0x{b:02X}>"), json!(b));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": { "type": "Sequence", "decoders": [{ "type": "ByteFallback" }, { "type": "Fuse" }] },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": [],
        },
    })
}

/// GPT-2's `vocab.json` (byte characters → id, the special token included)
/// and `merges.txt` (rank order), from the ranks gda encodes with.
pub fn gpt2_vocab_and_merges(g: &Gpt2) -> (Value, String) {
    let chars = byte_chars();
    let ids = g.id_bytes();
    let mut vocab: Map<String, Value> =
        ids[..ids.len() - 1].iter().enumerate().map(|(id, b)| (byte_string(&chars, b), json!(id))).collect();
    vocab.insert(GPT2_EOT.into(), json!(ids.len() - 1));
    let mut merges = String::from("#version: 0.2\n");
    for (_, a, b) in g.merges() {
        merges += &format!("{} {}\n", byte_string(&chars, a), byte_string(&chars, b));
    }
    (Value::Object(vocab), merges)
}

/// Decoding never cleans up spaces (transformers' default for some
/// tokenizers would turn " ." into "."): decode(encode(text)) == text.
fn fast_tokenizer_config(context: usize) -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context,
        "clean_up_tokenization_spaces": false,
    })
}

fn gpt2_tokenizer_config(context: usize) -> Value {
    json!({
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": context,
        "clean_up_tokenization_spaces": false,
        "add_prefix_space": false,
        "add_bos_token": false,
        "bos_token": GPT2_EOT,
        "eos_token": GPT2_EOT,
        "unk_token": GPT2_EOT,
    })
}

/// The bytes of the trained tokenizer.json the run used: the spec's path,
/// else the copy kept with the prepared shards; checked against the hash the
/// run's manifest recorded, so an edited file is not exported as the run's.
fn trained_tokenizer(src: &Source, path: &str) -> Result<Vec<u8>, GdaError> {
    let manifest: Option<Manifest> =
        std::fs::read(src.run_dir.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let data = manifest.and_then(|m| m.data);
    let mut candidates = vec![path.to_string()];
    if let Some(d) = &data {
        candidates.push(Path::new(&d.shards).join(TOKENIZER_JSON).display().to_string());
    }
    let Some(found) = candidates.iter().find(|p| Path::new(p).is_file()) else {
        return Err(input(format!(
            "data.tokenizer {path} of run {} does not exist (nor a copy beside its prepared data); allowed: the tokenizer.json the run trained with at that path",
            src.run_dir.display()
        )));
    };
    let tok = Tokenizer::new(&TokenizerKind::Json(found.clone()))?;
    let hash = hex(&tok.hash());
    if let Some(d) = data.filter(|d| !d.tokenizer_hash.is_empty() && d.tokenizer_hash != hash) {
        return Err(input(format!(
            "tokenizer {found} (sha256 {hash}) is not the one run {} trained with (sha256 {} in manifest.json); allowed: the unchanged tokenizer.json",
            src.run_dir.display(),
            d.tokenizer_hash
        )));
    }
    Ok(tok.json().expect("a tokenizer.json tokenizer keeps its bytes").to_vec())
}

/// The first special token a tokenizer.json declares (`added_tokens` with
/// `"special": true`), taken as its EOS: lm-eval needs a BOS or EOS token.
/// `gda data train-tokenizer` declares none.
fn first_special_token(json: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(json).ok()?;
    v.get("added_tokens")?
        .as_array()?
        .iter()
        .find(|t| t.get("special").and_then(Value::as_bool) == Some(true))
        .and_then(|t| t.get("content")?.as_str().map(str::to_string))
}

/// The model card: what the model is, how much it was trained, how well it
/// scored, how to load it, and the spec it was trained from.
fn model_card(src: &Source, state: &TrainState) -> String {
    let spec = &src.spec;
    let m = &spec.model;
    let attention = match m.attention {
        AttentionKind::Gda => format!(
            "gda {}:1 ({} signal heads, {} noise heads, {} K/V heads, {} K2 heads, noise_scope {})",
            m.ratio(),
            m.signal_heads,
            m.noise_heads,
            m.kv_heads,
            m.noise_kv_heads,
            match m.noise_scope {
                NoiseScope::Group => "group",
                NoiseScope::One => "one",
            }
        ),
        AttentionKind::Standard => format!("standard ({} heads, {} K/V heads)", m.heads, m.kv_heads),
    };
    // The final evaluation when the run finished at this checkpoint, else
    // the newest one the checkpoint recorded.
    let (loss, bpb, acc) = match finished(&src.run_dir).filter(|s| s.steps == state.step) {
        Some(s) => (Some(s.val_loss), s.val_bpb, s.val_acc),
        None => (state.val_loss, state.val_bpb, state.val_acc),
    };
    let quality = match loss {
        Some(l) => {
            let mut q = format!("{l:.4} nats/token");
            if let Some(b) = bpb {
                q += &format!(" ({b:.4} bits/byte)");
            }
            if let Some(a) = acc {
                q += &format!(", accuracy {a:.4}");
            }
            q
        }
        None => "not evaluated".into(),
    };
    format!(
        "# {name}\n\n\
         A {attention} transformer trained with gda and exported by `gda export --format hf` \
         from run `{run}`, checkpoint step {step}.\n\n\
         | | |\n|---|---|\n\
         | parameters | {params} |\n\
         | layers × d_model | {layers} × {d_model} |\n\
         | tokens seen | {tokens} |\n\
         | validation loss (step {step}) | {quality} |\n\
         | tokenizer | {tok} |\n\
         | context | {context} |\n\n\
         ## Load\n\n\
         ```python\n\
         from transformers import AutoModelForCausalLM, AutoTokenizer\n\
         model = AutoModelForCausalLM.from_pretrained(\"PATH\", trust_remote_code=True)\n\
         tokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n\
         ```\n\n\
         The modeling code (`modeling_gda.py`) computes what gda computes, with gda's tensor names.\n\n\
         ## Spec\n\n```toml\n{toml}```\n",
        name = spec.name,
        run = src.run_dir.display(),
        step = state.step,
        params = model::param_count(m),
        layers = m.n_layers,
        d_model = m.d_model,
        tokens = state.tokens_seen,
        tok = spec.data.tokenizer,
        context = spec.train.context,
        toml = spec.to_toml(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokenizers library (the one transformers' fast tokenizers run on)
    /// reads the byte tokenizer as id = byte, NUL and look-alikes of the
    /// byte pieces included, and decodes the text back.
    #[test]
    fn the_byte_tokenizer_gives_every_byte_its_own_id() {
        let json = serde_json::to_vec(&bytes_tokenizer_json()).unwrap();
        let tok = tokenizers::Tokenizer::from_bytes(&json).unwrap();
        let text = "naïve — “日本語” 😀 \0 <0x41> Ā ÿ\n\t end";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, text.bytes().map(u32::from).collect::<Vec<_>>());
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(tok.get_vocab_size(true), 256);
    }
}

"""Runs models exported by `gda export --format hf` in Hugging Face
transformers, offline, for tests/export.rs; the comparisons are made there.

argv[1]: a JSON list of jobs {name, model, inputs, output, text, new_tokens};
argv[2]: the JSON report to write.
For each job: the model's logits on a right-padded batch with its attention
mask, on the same batch called as lm-eval calls it (model(input_ids), no
mask), and greedy generate() with and without the KV cache, written to
`output` (safetensors); the tokenizer's ids and decoded text of `text` go to
the report."""

import json
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(1)
report = {}
for job in json.load(open(sys.argv[1])):
    model = AutoModelForCausalLM.from_pretrained(job["model"], trust_remote_code=True, dtype=torch.float32)
    model.eval()
    inputs = load_file(job["inputs"])
    tokens, mask, prompt = inputs["tokens"], inputs["mask"], inputs["prompt"]
    greedy = dict(max_new_tokens=job["new_tokens"], do_sample=False, pad_token_id=0)
    with torch.no_grad():
        padded = model(input_ids=tokens, attention_mask=mask).logits
        plain = model(tokens).logits
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), **greedy)
        no_cache = model.generate(prompt, attention_mask=torch.ones_like(prompt), use_cache=False, **greedy)
    save_file(
        {
            "padded": padded.contiguous(),
            "plain": plain.contiguous(),
            "generated": generated.contiguous(),
            "generated_no_cache": no_cache.contiguous(),
        },
        job["output"],
    )
    tok = AutoTokenizer.from_pretrained(job["model"])
    ids = tok.encode(job["text"], add_special_tokens=False)
    report[job["name"]] = {
        "tokenizer_class": type(tok).__name__,
        "model_class": type(model).__name__,
        "ids": ids,
        "decoded": tok.decode(ids),
        "hello_world": tok.encode("Hello world", add_special_tokens=False),
        "eos_token_id": model.generation_config.eos_token_id,
    }
with open(sys.argv[2], "w") as f:
    json.dump(report, f)

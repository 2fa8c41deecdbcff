"""The same model as gda, written as a researcher would in PyTorch, timed the
same way: `gda bench`'s counterpart for scripts/bench.sh.

Reads a resolved gda spec (TOML), builds the model (GDA or standard attention,
pre-RMSNorm, RoPE, SwiGLU), trains it with torch.optim.AdamW on random byte
windows of the spec's shape, and prints one JSON line like `gda bench`.
`--compile` wraps the model in torch.compile. `--device cuda` trains on the
GPU the way gda does there: fp32 weights, bf16 autocast (gda computes in bf16
on CUDA), and also reports torch's peak allocated GPU memory. Nothing here is
used by gda itself; it exists only to be measured against.
"""

import argparse
import json
import math
import resource
import statistics
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F


def rope_tables(t, d, theta):
    inv = theta ** (-torch.arange(0, d // 2, dtype=torch.float32) * 2 / d)
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class GDAAttention(nn.Module):
    def __init__(self, m, layer):
        super().__init__()
        c, d = m["d_model"], m["head_dim"]
        self.hs, self.hn, self.kv, self.d = m["signal_heads"], m["noise_heads"], m["kv_heads"], d
        self.q1 = nn.Linear(c, self.hs * d, bias=False)
        self.q2 = nn.Linear(c, self.hn * d, bias=False)
        self.k1 = nn.Linear(c, self.kv * d, bias=False)
        self.k2 = nn.Linear(c, self.kv * d, bias=False)
        self.v = nn.Linear(c, self.kv * 2 * d, bias=False)
        self.o = nn.Linear(self.hs * 2 * d, c, bias=False)
        self.lambda_q1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_q2 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k2 = nn.Parameter(torch.randn(d) * 0.1)
        self.subln = nn.RMSNorm(2 * d, eps=1e-5)
        self.lambda_init = m["lambda_init"][layer]

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        d = self.d
        q1 = rope(self.q1(x).view(b, t, self.hs, d).transpose(1, 2), cos, sin)
        q2 = rope(self.q2(x).view(b, t, self.hn, d).transpose(1, 2), cos, sin)
        k1 = rope(self.k1(x).view(b, t, self.kv, d).transpose(1, 2), cos, sin)
        k2 = rope(self.k2(x).view(b, t, self.kv, d).transpose(1, 2), cos, sin)
        v = self.v(x).view(b, t, self.kv, 2 * d).transpose(1, 2)
        lam = (
            torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1))
            - torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2))
            + self.lambda_init
        )
        signal = F.scaled_dot_product_attention(q1, k1, v, is_causal=True, enable_gqa=self.hs != self.kv)
        noise = F.scaled_dot_product_attention(q2, k2, v, is_causal=True, enable_gqa=self.hn != self.kv)
        noise = noise.repeat_interleave(self.hs // self.hn, dim=1)
        out = self.subln(signal - lam * noise) * (1 - self.lambda_init)
        return self.o(out.transpose(1, 2).reshape(b, t, self.hs * 2 * d))


class StandardAttention(nn.Module):
    def __init__(self, m, layer):
        super().__init__()
        c, d = m["d_model"], m["head_dim"]
        self.h, self.kv, self.d = m["heads"], m["kv_heads"], d
        self.q = nn.Linear(c, self.h * d, bias=False)
        self.k = nn.Linear(c, self.kv * d, bias=False)
        self.v = nn.Linear(c, self.kv * d, bias=False)
        self.o = nn.Linear(self.h * d, c, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = rope(self.q(x).view(b, t, self.h, self.d).transpose(1, 2), cos, sin)
        k = rope(self.k(x).view(b, t, self.kv, self.d).transpose(1, 2), cos, sin)
        v = self.v(x).view(b, t, self.kv, self.d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.h != self.kv)
        return self.o(out.transpose(1, 2).reshape(b, t, self.h * self.d))


class Block(nn.Module):
    def __init__(self, m, layer):
        super().__init__()
        c, f = m["d_model"], m["mlp_hidden"]
        self.attn_norm = nn.RMSNorm(c, eps=m["norm_eps"])
        self.attn = (GDAAttention if m["attention"] == "gda" else StandardAttention)(m, layer)
        self.mlp_norm = nn.RMSNorm(c, eps=m["norm_eps"])
        self.gate = nn.Linear(c, f, bias=False)
        self.up = nn.Linear(c, f, bias=False)
        self.down = nn.Linear(f, c, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, m, context):
        super().__init__()
        self.tok_emb = nn.Embedding(m["vocab_size"], m["d_model"])
        self.blocks = nn.ModuleList(Block(m, l) for l in range(m["n_layers"]))
        self.norm = nn.RMSNorm(m["d_model"], eps=m["norm_eps"])
        self.lm_head = nn.Linear(m["d_model"], m["vocab_size"], bias=False)
        cos, sin = rope_tables(context, m["head_dim"], m["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, idx, targets):
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--serve",
        action="store_true",
        help="after the warm-up, time one repetition per line read from stdin (one JSON line each); "
        "the summary at end of input (scripts/bench_train.py alternates implementations this way)",
    )
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.spec, "rb") as f:
        spec = tomllib.load(f)
    m, tc = spec["model"], spec["train"]
    if m["attention"] == "gda" and (m["noise_kv_heads"] != m["kv_heads"] or m["noise_scope"] != "group"):
        raise SystemExit("bench_torch.py implements the shared GDA layout only (noise_kv_heads = kv_heads, noise_scope = group)")
    b, t, accum = tc["batch_size"], tc["context"], tc["grad_accum"]
    model = Model(m, t).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(tc["beta1"], tc["beta2"]),
        eps=tc["adam_eps"],
    )
    step_fn = torch.compile(model) if args.compile else model

    def step():
        for _ in range(accum):
            data = torch.randint(0, 256, (b, t + 1), device=dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = step_fn(data[:, :-1], data[:, 1:]) / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    # The loss is read once per repetition (timing the device to completion),
    # not every step: a per-step read would stall the GPU queue.
    start = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    if args.warmup:
        loss.item()
    warmup_s = time.perf_counter() - start
    def repetition():
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()
        return args.steps * b * t * accum / (time.perf_counter() - start)

    rates = []
    if args.serve:
        print(json.dumps({"ready": True, "warmup_s": warmup_s}), flush=True)
        for _ in sys.stdin:
            rates.append(repetition())
            print(json.dumps({"tokens_per_s": rates[-1]}), flush=True)
    else:
        rates = [repetition() for _ in range(args.repeats)]
    print(
        json.dumps(
            {
                "impl": "torch.compile" if args.compile else "pytorch eager",
                "threads": torch.get_num_threads(),
                "parameters": sum(p.numel() for p in model.parameters()),
                "tokens_per_s": rates,
                "median_tokens_per_s": statistics.median(rates),
                "warmup_s": warmup_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "device": str(dev),
                "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
                "peak_gpu_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20 if cuda else None,
            }
        )
    )


if __name__ == "__main__":
    main()

"""The driver of scripts/bench.sh: times training steps of each
configuration with gda (fused kernels on and off), PyTorch eager and
torch.compile, alternating them repetition by repetition so the machine's
drift hits all four alike, and prints the median and spread of each, the
ratios of medians, peak RSS and MFU against the fp32 matmul peak measured in
this same run.

The PyTorch models are built and warmed up once per configuration
(`bench_torch.py --serve`: torch.compile takes about a minute to compile)
and then time one repetition per request; each gda repetition is its own
`gda bench` process (it starts in about a second; its warm-up steps run
untimed).

  bench_train.py --gda BIN --py PYTHON --out DIR --threads N --repeats R --steps S NAME...
(DIR/NAME.toml: the resolved spec of each configuration.)
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

IMPLS = ("gda fused", "gda unfused", "eager", "compile")
HERE = __file__.rsplit("/", 1)[0]


def matmul_peak(threads, n=1024, reps=10):
    torch.set_num_threads(threads)
    a = torch.ones(n, n)
    a @ a
    start = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - start)


class Worker:
    """A bench_torch.py --serve process: one timed repetition per request."""

    def __init__(self, args, spec, compile_):
        cmd = [args.py, f"{HERE}/bench_torch.py", "--spec", spec, "--threads", str(args.threads), "--steps", str(args.steps)]
        self.proc = subprocess.Popen(
            cmd + (["--compile"] if compile_ else []) + ["--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = self.proc.stdout.readline()
        if not ready:
            sys.exit(f"bench_torch.py {'--compile ' if compile_ else ''}failed to start on {spec}")

    def repetition(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["tokens_per_s"], None

    def finish(self):
        self.proc.stdin.close()
        summary = json.loads(self.proc.stdout.readline())
        self.proc.wait()
        return summary["peak_rss_mb"]


def gda_repetition(args, spec, fused):
    cmd = [args.gda, "bench", "--spec", spec, "--threads", str(args.threads), "--warmup", "2"]
    cmd += ["--steps", str(args.steps), "--repeats", "1", "--set", f"model.fused={str(fused).lower()}"]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return r["median_tokens_per_s"], r


def bench_config(args, name):
    spec = f"{args.out}/{name}.toml"
    print(f"bench: {name}: warming up PyTorch eager and torch.compile", file=sys.stderr)
    workers = {"eager": Worker(args, spec, False), "compile": Worker(args, spec, True)}
    runs = {
        "gda fused": lambda: gda_repetition(args, spec, True),
        "gda unfused": lambda: gda_repetition(args, spec, False),
        "eager": workers["eager"].repetition,
        "compile": workers["compile"].repetition,
    }
    rates = {k: [] for k in IMPLS}
    rss = {k: 0.0 for k in IMPLS}
    info = None
    for rep in range(args.repeats):
        print(f"bench: {name}: repetition {rep + 1}/{args.repeats}", file=sys.stderr)
        # Each repetition starts one implementation later, so none always runs first.
        for k in IMPLS[rep % 4 :] + IMPLS[: rep % 4]:
            tps, r = runs[k]()
            rates[k].append(tps)
            if r is not None:
                info = r
                rss[k] = max(rss[k], r["peak_rss_mb"])
    for k, w in workers.items():
        rss[k] = w.finish()
    return rates, rss, info


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--gda", "--py", "--out"):
        ap.add_argument(flag, required=True)
    for flag in ("--threads", "--repeats", "--steps"):
        ap.add_argument(flag, type=int, required=True)
    ap.add_argument("names", nargs="+")
    args = ap.parse_args()
    peak = max(matmul_peak(args.threads) for _ in range(3))
    results = [(name, *bench_config(args, name)) for name in args.names]
    print(f"fp32 matmul peak on {args.threads} threads (1024², best of 3): {peak / 1e9:.1f} GFLOP/s")
    print(f"{args.repeats} alternating repetitions of {args.steps} steps each; median (min–max) tokens/s\n")
    print("| config | params | impl | tokens/s median | spread (min–max) | gda fused / this | peak RSS MB | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rates, rss, info in results:
        med = {k: statistics.median(v) for k, v in rates.items()}
        for k in IMPLS:
            ratio = "–" if k == "gda fused" else f"{med['gda fused'] / med[k]:.2f}×"
            mfu = 100 * med[k] * info["train_flops_per_token"] / peak
            print(
                f"| {name} | {info['parameters']} | {k} | {med[k]:.0f} | {min(rates[k]):.0f}–{max(rates[k]):.0f} "
                f"| {ratio} | {rss[k]:.0f} | {mfu:.1f}% |"
            )
    print("\nTargets (issue 29): gda fused >= 1.2x torch.compile and >= 1.5x eager.")
    print("MFU = train FLOPs per token (src/model/flops.rs: 3·(2·matmul params + attention)) × tokens/s ÷ the peak above.")
    print("gda's peak RSS includes the tokenized default corpus (about 55 MB); the PyTorch side draws random tokens.")


if __name__ == "__main__":
    main()

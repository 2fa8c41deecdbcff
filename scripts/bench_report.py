"""Table for scripts/bench.sh: reads the JSON lines of each configuration,
measures the fp32 matmul peak of this machine at the same thread count, and
prints tokens/s, ratios, peak memory and MFU."""

import json
import sys
import time

import torch


def matmul_peak(threads, n=1024, reps=10):
    torch.set_num_threads(threads)
    a = torch.ones(n, n)
    a @ a
    start = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main():
    out, threads, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    peak = max(matmul_peak(threads) for _ in range(3))
    print(f"fp32 matmul peak on {threads} threads (1024², best of 3): {peak / 1e9:.1f} GFLOP/s\n")
    print("| config | params | impl | tokens/s (median) | gda / this | peak RSS MB | MFU |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        runs = {k: json.load(open(f"{out}/{name}.{k}.json")) for k in ("gda", "eager", "compile")}
        flops = runs["gda"]["train_flops_per_token"]
        g = runs["gda"]["median_tokens_per_s"]
        for k, r in runs.items():
            tps = r["median_tokens_per_s"]
            ratio = "–" if k == "gda" else f"{g / tps:.2f}×"
            print(
                f"| {name} | {r['parameters']} | {r['impl']} | {tps:.0f} | {ratio} | {r['peak_rss_mb']:.0f} | {100 * tps * flops / peak:.1f}% |"
            )
    print("\nMFU = train FLOPs per token (src/flops.rs: 3·(2·matmul params + attention)) × tokens/s ÷ the peak above.")
    print("gda's peak RSS includes the tokenized default corpus (about 55 MB); the PyTorch side draws random tokens.")


if __name__ == "__main__":
    main()

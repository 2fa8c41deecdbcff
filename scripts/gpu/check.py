"""The prepared CUDA check of gda (run through check.sh, which sets up the
libraries). Every step writes its results into OUT_DIR; check.log has all of
it. Hard checks (the device is used, numerics agree, training learns without
per-step host reads, eval scores in the training dtype, the sweep finishes)
decide the exit code; the performance targets are reported, not enforced.

--dry runs the same steps on the CPU, at toy sizes (torch.compile only with
CHECK_COMPILE=1: on a CPU it compiles for minutes).
"""

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Dense bf16 tensor-core peak from the vendors' datasheets (FLOP/s, no
# sparsity). GDA_PEAK_FLOPS overrides, as it does for gda itself.
DATASHEET_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}

# Bench targets of issue 14, reported beside the numbers.
TARGET_EAGER, TARGET_COMPILE, TARGET_MFU = 1.0, 0.9, 0.40


def find(*candidates):
    for c in candidates:
        if c and Path(c).exists():
            return Path(c)
    raise SystemExit(f"check: none of {candidates} exists")


class Check:
    def __init__(self, out, dry):
        self.out, self.dry = out, dry
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "check.log", "a", buffering=1)
        self.results = {"dry": dry, "steps": {}, "failed": []}
        self.gda = find(os.environ.get("GDA_BIN"), HERE / "gda", HERE.parent.parent / "target/release/gda")
        self.py = sys.executable
        self.bench_torch = find(HERE / "bench_torch.py", HERE.parent / "bench_torch.py")
        self.gpu_spec = find(HERE / "experiments/gpu.toml", HERE.parent.parent / "experiments/gpu.toml")
        self.device = "cpu" if dry else "cuda:0"
        # One thread on the CPU: the dry run is a test, beside others.
        self.threads = 1 if dry else 8
        self.env = dict(os.environ)
        # The dist folder carries the default corpus (no network on the node).
        if (HERE / "corpora").is_dir() and "GDA_CACHE" not in os.environ:
            self.env["GDA_CACHE"] = str(HERE)

    def say(self, msg):
        print(msg, flush=True)
        self.log.write(msg + "\n")

    def run(self, args, name, extra_env=None, **kw):
        """Runs a command, its stdout and stderr to check.log; returns stdout."""
        self.say(f"$ {' '.join(str(a) for a in args)}")
        start = time.time()
        env = {**self.env, **(extra_env or {})}
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kw)
        self.log.write(p.stderr[-20000:])
        self.log.write(p.stdout[-20000:])
        self.say(f"  ({time.time() - start:.1f} s, exit {p.returncode})")
        if p.returncode != 0:
            raise RuntimeError(f"{name}: {args[0]} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
        return p.stdout

    def gda_json(self, args, name):
        return json.loads(self.run([self.gda, *args], name).strip().splitlines()[-1])

    def verdict(self, name, ok, data):
        self.results["steps"][name] = {"ok": bool(ok), **data}
        if not ok:
            self.results["failed"].append(name)
        self.say(f"[{'PASS' if ok else 'FAIL'}] {name}")
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2))

    def step(self, name, fn):
        start = time.time()
        try:
            fn()
        except Exception as e:  # one broken step must not hide the others' results
            self.verdict(name, False, {"error": str(e)})
        self.results["steps"].setdefault(name, {})["seconds"] = round(time.time() - start, 1)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2))

    def write_csv(self, name, rows):
        if not rows:
            return
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(self.out / name, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)

    # --- steps -----------------------------------------------------------

    def header(self):
        info = self.gda_json(["device-check", "info", "--device", self.device], "header")
        import torch

        info["python_torch"] = torch.__version__
        info["gpu"] = self.gpu_name()
        self.info = info
        self.say(
            f"== gda GPU check: device {info['device']} ({info['gpu'] or 'no GPU'}), compute dtype "
            f"{info['compute_dtype']} with fp32 master weights, gda built against libtorch "
            f"{info['libtorch_version']}, Python torch {info['python_torch']}{' [DRY RUN on CPU]' if self.dry else ''}"
        )
        same = info["libtorch_version"].split(".")[:2] == torch.__version__.split("+")[0].split(".")[:2]
        ok = same and (self.dry or (info["device"].startswith("cuda") and info["compute_dtype"] == "BFloat16"))
        self.verdict("device", ok, info)
        if not same:
            raise SystemExit(
                f"check: this gda was built against libtorch {info['libtorch_version']} but the torch/lib on "
                f"LD_LIBRARY_PATH is {torch.__version__}: build it for this torch (scripts/gpu/build.sh --torch X.Y)"
            )
        if not ok:
            raise SystemExit("check: no CUDA device is used; nothing else is worth running")

    def gpu_name(self):
        if shutil.which("nvidia-smi") is None:
            return None
        p = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
        return p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else None

    def attention(self):
        r = self.gda_json(
            ["device-check", "attention", "--device", self.device, "--context", 64 if self.dry else 1024], "attention"
        )
        (self.out / "attention.json").write_text(json.dumps(r, indent=2))
        self.write_csv("attention.csv", [{"dtype": r["compute_dtype"], "tolerance": r["loss_tolerance"], **v} for v in r["variants"]])
        self.verdict("attention_fused_vs_materialised", r["ok"], r)

    TINY = [
        "--set", "model.d_model=64", "--set", "model.n_layers=2", "--set", "model.head_dim=16",
        "--set", "train.context=64", "--set", "train.batch_size=8", "--set", "train.warmup_steps=3",
        "--set", "train.eval_tokens=2048", "--set", "train.lr=3e-3",
    ]
    VARIANTS = {
        "gda-g4": ["--set", "model.signal_heads=4", "--set", "model.noise_heads=1"],
        "gda-g1": ["--set", "model.signal_heads=4", "--set", "model.noise_heads=4"],
        "standard": ["--set", "model.attention=standard", "--set", "model.heads=4"],
    }

    def cpu_checkpoints(self):
        rows = []
        for name, sets in self.VARIANTS.items():
            run = self.work / f"cpu-{name}"
            shutil.rmtree(run, ignore_errors=True)
            self.run(
                [self.gda, "train", "--device", "cpu", "--threads", self.threads, "--out", run, *self.TINY, *sets,
                 "--set", f"train.steps={10 if self.dry else 40}", "--set", "train.eval_every=10", "--set", "train.log_every=10",
                 "--set", f"name=cpu-{name}"],
                f"train {name} on cpu",
            )
            r = self.gda_json(["device-check", "loss", "--run", run, "--device", self.device], f"loss {name}")
            rows.append({"variant": name, **{k: r[k] for k in ("compute_dtype", "cpu_loss", "device_loss", "loss_diff", "loss_tolerance", "ok")}})
        self.write_csv("loss_cpu_vs_device.csv", rows)
        self.verdict("cpu_checkpoint_loss_on_device", all(r["ok"] for r in rows), {"variants": rows})

    def train(self):
        run = self.work / "gpu-train"
        shutil.rmtree(run, ignore_errors=True)
        if self.dry:
            sets = [*self.TINY, *self.VARIANTS["gda-g4"], "--set", "train.steps=30", "--set", "train.eval_every=10",
                    "--set", "train.log_every=5", "--set", "train.checkpoint_every=30"]
        else:
            sets = ["--set", "train.steps=300", "--set", "train.warmup_steps=30", "--set", "train.eval_every=100",
                    "--set", "train.log_every=25", "--set", "train.eval_tokens=131072",
                    "--set", "train.checkpoint_every=300"]
        self.run([self.gda, "train", "--spec", self.gpu_spec, "--device", self.device, "--threads", self.threads,
                  "--out", run, "--set", "name=gpu-check", *sets], "train")
        summary = json.loads((run / "summary.json").read_text())
        manifest = json.loads((run / "manifest.json").read_text())
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        shutil.copy(run / "metrics.csv", self.out / "train_metrics.csv")
        vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
        speed = [r for r in rows if r["tokens_per_s"]]
        peak = self.datasheet_peak()
        tps = statistics.median(float(r["tokens_per_s"]) for r in speed) if speed else 0.0
        data = {
            "device": manifest["device"], "val_loss_first": vals[0], "val_loss_last": vals[-1],
            "tokens_per_s_median": tps, "mfu_vs_measured_matmul_median": statistics.median(float(r["mfu"]) for r in speed) if speed else None,
            "mfu_vs_datasheet": tps * manifest["train_flops_per_token"] / peak if peak else None,
            "unlogged_host_reads": summary["unlogged_host_reads"], "parameters": manifest["parameters"],
            "steps": summary["steps"],
        }
        self.trained = (run, summary)
        ok = (vals[-1] < vals[0] and len(speed) > 0 and all(float(r["mfu"]) > 0 for r in speed)
              and summary["unlogged_host_reads"] == 0 and manifest["device"] == self.device)
        self.say(f"  val loss {vals[0]:.4f} -> {vals[-1]:.4f}, {tps:.0f} tokens/s, host reads on unlogged steps: {summary['unlogged_host_reads']}")
        self.verdict("train", ok, data)

    def distributed_world_one(self):
        """A process group of one rank (torchrun's variables, WORLD_SIZE=1):
        NCCL on a GPU (one GPU cannot hold two NCCL ranks), Gloo in the dry
        run. It must train exactly as the same run without a group."""
        import socket

        runs = {}
        for name in ("plain", "ranked"):
            run = self.work / f"dist-{name}"
            shutil.rmtree(run, ignore_errors=True)
            env = None
            if name == "ranked":
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            self.run([self.gda, "train", "--device", self.device, "--threads", self.threads, "--out", run, *self.TINY,
                      "--set", "train.steps=20", "--set", "train.eval_every=10", "--set", "train.log_every=1",
                      "--set", "name=dist-check"], f"train {name}", extra_env=env)
            with open(run / "metrics.csv") as f:
                runs[name] = [float(r["train_loss"]) for r in csv.DictReader(f) if r["train_loss"]]
        manifest = json.loads((self.work / "dist-ranked" / "manifest.json").read_text())
        world = manifest.get("world") or {}
        want = "gloo" if self.dry else "nccl"
        a, b = runs["plain"], runs["ranked"]
        diff = max(abs(x - y) / abs(x) for x, y in zip(a, b)) if a and len(a) == len(b) else float("inf")
        self.say(f"  {want} world of 1: max relative train-loss difference {diff:.2e} over {len(a)} steps")
        self.verdict("distributed_world_one", world.get("backend") == want and world.get("world_size") == 1 and diff <= 1e-5,
                     {"backend": world.get("backend"), "max_rel_loss_diff": diff, "steps": len(a)})

    def eval_dtype(self):
        run, summary = self.trained
        out = self.work / "eval"
        self.run([self.gda, "eval", run, "--suite", "lm", "--device", self.device, "--out", out], "eval")
        with open(out / "lm.csv") as f:
            row = list(csv.DictReader(f))[-1]
        shutil.copy(out / "lm.csv", self.out / "eval_lm.csv")
        # Same checkpoint, same validation tokens, same dtype: only the batch
        # split may differ, which moves a bf16 loss by far less than 1e-2.
        tol = 1e-4 if self.dry else 1e-2
        diff = abs(float(row["loss"]) - summary["val_loss"])
        data = {"eval_loss": float(row["loss"]), "train_final_val_loss": summary["val_loss"], "diff": diff, "tolerance": tol}
        self.verdict("eval_scores_in_training_dtype", diff <= tol, data)

    def datasheet_peak(self):
        if os.environ.get("GDA_PEAK_FLOPS"):
            return float(os.environ["GDA_PEAK_FLOPS"])
        name = (getattr(self, "info", {}) or {}).get("gpu") or ""
        return next((v for k, v in DATASHEET_BF16.items() if k in name), None)

    def sampled(self, args, name):
        """Runs a bench command while sampling the GPU's used memory (the same
        measure for gda and PyTorch: the caching allocators' reservation)."""
        if self.dry or shutil.which("nvidia-smi") is None:
            return self.run(args, name), None
        q = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        base = int(subprocess.run(q, capture_output=True, text=True).stdout.split()[0])
        peak, done = [base], threading.Event()

        def sample():
            while not done.wait(0.2):
                out = subprocess.run(q, capture_output=True, text=True).stdout.split()
                if out:
                    peak.append(int(out[0]))

        t = threading.Thread(target=sample)
        t.start()
        try:
            return self.run(args, name), max(peak) - base
        finally:
            done.set()
            t.join()

    def bench(self):
        if self.dry:
            shape = ["--set", "model.d_model=64", "--set", "model.n_layers=2", "--set", "model.head_dim=16",
                     "--set", "train.context=64", "--set", "train.batch_size=4"]
            configs = {"gda-g4": ["--set", "model.signal_heads=4", "--set", "model.noise_heads=1"],
                       "gda-g1": ["--set", "model.signal_heads=4", "--set", "model.noise_heads=4"],
                       "baseline": ["--set", "model.attention=standard", "--set", "model.heads=4"]}
            timing = ["--warmup", 0, "--steps", 1, "--repeats", 1]
        else:
            # ~100M parameters at context 2048 (issue 14's MFU target shape).
            shape = ["--set", "model.d_model=768", "--set", "model.n_layers=12", "--set", "model.head_dim=64",
                     "--set", "train.context=2048", "--set", "train.batch_size=8"]
            configs = {"gda-g4": ["--set", "model.signal_heads=12", "--set", "model.noise_heads=3"],
                       "gda-g1": ["--set", "model.signal_heads=12", "--set", "model.noise_heads=12"],
                       "baseline": ["--set", "model.attention=standard", "--set", "model.heads=12"]}
            timing = ["--warmup", 3, "--steps", 10, "--repeats", 3]
        compile_too = not self.dry or os.environ.get("CHECK_COMPILE") == "1"
        peak = self.datasheet_peak()
        rows = []
        for name, sets in configs.items():
            spec = self.work / f"bench-{name}.toml"
            out, mem = self.sampled([self.gda, "bench", "--device", self.device, "--threads", self.threads, *shape, *sets,
                                     *timing, "--write-spec", spec], f"gda bench {name}")
            g = json.loads(out.strip().splitlines()[-1])
            flops = g["train_flops_per_token"]
            impls = [("gda", g, mem)]
            for compiled in ([False, True] if compile_too else [False]):
                args = [self.py, self.bench_torch, "--spec", spec, "--device", self.device, "--threads", self.threads, *timing]
                out, mem = self.sampled(args + (["--compile"] if compiled else []), f"torch bench {name}")
                impls.append(("torch.compile" if compiled else "pytorch eager", json.loads(out.strip().splitlines()[-1]), mem))
            for impl, r, mem in impls:
                tps = r["median_tokens_per_s"]
                rows.append({
                    "config": name, "impl": impl, "parameters": r["parameters"], "tokens_per_s": tps,
                    "mfu_vs_datasheet": tps * flops / peak if peak else None,
                    "peak_gpu_mb_sampled": mem, "peak_gpu_allocated_mb": r.get("peak_gpu_allocated_mb"),
                    "peak_rss_mb": r["peak_rss_mb"],
                })
        for r in rows:
            same = {x["impl"]: x["tokens_per_s"] for x in rows if x["config"] == r["config"]}
            r["gda_over_this"] = same["gda"] / r["tokens_per_s"]
        self.write_csv("bench.csv", rows)
        targets = {}
        g4 = {r["impl"]: r for r in rows if r["config"] == "gda-g4"}
        if "pytorch eager" in g4:
            targets["gda/eager at G=4 >= 1.0"] = g4["pytorch eager"]["gda_over_this"] >= TARGET_EAGER
        if "torch.compile" in g4:
            targets["gda/compile at G=4 >= 0.9"] = g4["torch.compile"]["gda_over_this"] >= TARGET_COMPILE
        if g4["gda"]["mfu_vs_datasheet"] is not None:
            targets["gda bf16 MFU at G=4 >= 40%"] = g4["gda"]["mfu_vs_datasheet"] >= TARGET_MFU
        for r in rows:
            mfu = f"{100 * r['mfu_vs_datasheet']:.1f}%" if r["mfu_vs_datasheet"] is not None else "-"
            mem = r["peak_gpu_mb_sampled"] if r["peak_gpu_mb_sampled"] is not None else "-"
            self.say(f"  {r['config']:9} {r['impl']:14} {r['tokens_per_s']:>12.0f} tok/s  MFU {mfu:>6}  "
                     f"peak GPU {mem} MB  gda/this {r['gda_over_this']:.2f}")
        for k, v in targets.items():
            self.say(f"  target {k}: {'met' if v else 'NOT met'}")
        self.verdict("bench", all(r["tokens_per_s"] > 0 for r in rows), {"rows": rows, "targets": targets, "datasheet_peak": peak})

    def sweep(self):
        out = self.work / "sweep"
        shutil.rmtree(out, ignore_errors=True)
        self.run([self.gda, "sweep", *self.TINY, "--set", "model.signal_heads=4", "--set", f"train.steps={10 if self.dry else 40}",
                  "--set", "train.eval_every=10", "--set", "train.log_every=10", "--set", "train.threads=1",
                  "--set", "model.noise_heads=1", "--set", "name=check-sweep", "--ratios", "1,4", "--devices", f"{self.device},{self.device}",
                  "--out", out], "sweep")
        with open(out / "summary.csv") as f:
            rows = list(csv.DictReader(f))
        shutil.copy(out / "summary.csv", self.out / "sweep_summary.csv")
        runs = [r for r in rows if r["status"] == "done" and r["val_loss"]]
        self.verdict("sweep_two_jobs_one_device", len(runs) >= 2, {"rows": len(rows), "done": len(runs)})


def main():
    args = [a for a in sys.argv[1:] if a != "--dry"]
    if len(args) != 1:
        raise SystemExit("usage: check.sh OUT_DIR [--dry]")
    out = Path(args[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    c = Check(out, "--dry" in sys.argv[1:])
    built = HERE / "LIBTORCH_VERSION"  # written by scripts/gpu/build.sh
    if built.exists():
        import torch

        want, have = built.read_text().strip(), torch.__version__
        if want.split(".")[:2] != have.split("+")[0].split(".")[:2]:
            c.say(f"check: this gda was built against libtorch {want}, but {c.py} has torch {have}: "
                  f"it cannot run on those libraries; build it with scripts/gpu/build.sh --torch "
                  f"{'.'.join(have.split('.')[:2])}, or point GDA_PYTHON at a torch {want}")
            sys.exit(2)
    start = time.time()
    c.step("device", c.header)
    if c.results["failed"]:
        c.say(f"== the device step failed, nothing else is run: {c.results['steps']['device']}")
        sys.exit(1)
    c.step("attention_fused_vs_materialised", c.attention)
    c.step("cpu_checkpoint_loss_on_device", c.cpu_checkpoints)
    c.step("train", c.train)
    if hasattr(c, "trained"):
        c.step("eval_scores_in_training_dtype", c.eval_dtype)
    c.step("distributed_world_one", c.distributed_world_one)
    c.step("bench", c.bench)
    c.step("sweep_two_jobs_one_device", c.sweep)
    c.results["seconds"] = round(time.time() - start, 1)
    (out / "results.json").write_text(json.dumps(c.results, indent=2))
    failed = c.results["failed"]
    c.say(f"== {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)} in {c.results['seconds']} s; results in {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

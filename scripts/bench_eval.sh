#!/usr/bin/env bash
# Zero-shot benchmark scoring speed: `gda eval --suite bench` (native, Rust +
# libtorch) against `lm_eval` on the same model exported with
# `gda export --format hf` (scripts/lm-eval.sh), on the same items, with the
# same CPU threads. The items are the format fixtures (tests/fixtures/bench:
# 20 items of the seven formats) repeated --repeat times (default 100: 2,000
# items), each copy's context numbered so that no two requests are the same;
# the model is a small GPT-2-tokenized gda model trained for a few steps (its
# quality does not matter here, only the work per item).
# Each scorer runs --repeats times (--runs is the old name), alternating
# which goes first so that drift of the machine hits both. Per scorer: end
# to end (process start to exit: imports, model load, scoring, writing) and
# scoring after the model is loaded (gda: its own "scored in" line; lm_eval:
# from its HF model built to the end of its evaluation loop, timed by
# scripts/lm_eval_timed.py), each as the median and the min-max over the
# repeats, items/s, the largest peak RSS; then whether the two give the same
# acc and acc_norm on every task.
#   scripts/bench_eval.sh [--threads N] [--repeat R] [--repeats K] [--d-model D] [--layers L] [--context T]
# Needs the venv of scripts/hf-venv.sh (installed on first use). Target:
# gda at least 10x faster than lm_eval, after load and end to end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
THREADS=2 REPEAT=100 REPEATS=3 D_MODEL=256 LAYERS=4 CONTEXT=256
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --repeats | --runs) REPEATS=$2; shift 2 ;;
    --d-model) D_MODEL=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --context) CONTEXT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
# GDA_BIN: the gda binary to time (default: this checkout's release build).
GDA=${GDA_BIN:-$PWD/target/release/gda}
[ -x "$GDA" ] || cargo build --release
scripts/hf-venv.sh >/dev/null
W=$(mktemp -d "${TMPDIR:-/tmp}/gda-bench-eval.XXXXXX")
trap 'rm -rf "$W"' EXIT

# Distinct items: copy r of each fixture item starts its context with "r. "
# (lm-eval scores identical requests once, so plain copies would not count).
mkdir -p "$W/tasks"
python3 - "$REPEAT" "$W/tasks" tests/fixtures/bench/*.jsonl <<'EOF'
import json, pathlib, sys
repeat, out, files = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
field = {"hellaswag": "ctx_a", "piqa": "goal", "arc_easy": "question", "arc_challenge": "question",
         "winogrande": "sentence", "lambada": "text"}
for f in map(pathlib.Path, files):
    key = field.get(f.stem, "context")
    docs = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
    with open(out / f.name, "w") as w:
        for r in range(repeat):
            for d in docs:
                w.write(json.dumps({**d, key: f"{r}. {d[key]}"}, ensure_ascii=False) + "\n")
EOF
items=$(cat "$W"/tasks/*.jsonl | grep -c .)

heads=$((D_MODEL / 32))
cat >"$W/spec.toml" <<EOF
name = "bench-eval"
seed = 1
[model]
attention = "gda"
d_model = $D_MODEL
n_layers = $LAYERS
head_dim = 32
signal_heads = $heads
noise_heads = $((heads / 4 > 0 ? heads / 4 : 1))
[data]
tokenizer = "gpt2"
[train]
context = $CONTEXT
batch_size = 4
steps = 10
warmup_steps = 2
eval_every = 10
eval_tokens = 4096
log_every = 10
threads = $THREADS
EOF
echo "bench_eval: training a $D_MODEL-wide, $LAYERS-layer GPT-2-tokenized model for 10 steps (not timed)" >&2
"$GDA" train --spec "$W/spec.toml" --out "$W/run" >/dev/null
t0=$(date +%s.%N)
"$GDA" export "$W/run" --format hf --out "$W/export" >/dev/null
export_s=$(echo "$(date +%s.%N) - $t0" | bc)


# /usr/bin/time -f "%e %M": wall seconds and peak RSS (KiB) of the command.
measure() {
  local log=$1
  shift
  /usr/bin/time -f "%e %M" -o "$W/$log.time" "$@" >"$W/$log.out" 2>"$W/$log.err" || {
    echo "bench_eval: $log failed:" >&2
    tail -20 "$W/$log.err" >&2
    exit 1
  }
  cat "$W/$log.time"
}
# Each run appends "END_TO_END_S AFTER_LOAD_S PEAK_KIB" to $W/gda.runs or $W/lm.runs.
run_gda() {
  echo "bench_eval: repeat $1/$REPEATS: gda eval --suite bench on $items items, $THREADS threads" >&2
  rm -rf "$W/gda"
  read -r s kb < <(measure gda "$GDA" eval "$W/run" --suite bench --tasks "$W/tasks" --threads "$THREADS" --out "$W/gda")
  echo "$s $(sed -n 's/.* scored in \([0-9.]*\) s after load.*/\1/p' "$W/gda.out") $kb" >>"$W/gda.runs"
}
run_lm() {
  echo "bench_eval: repeat $1/$REPEATS: lm_eval on the export, same items and threads" >&2
  rm -rf "$W/lm"
  read -r s kb < <(GDA_BIN=$GDA GDA_THREADS=$THREADS GDA_LM_EVAL_EXPORT=$W/export GDA_LM_EVAL_OUT=$W/lm \
    GDA_LM_EVAL_TIMES=$W/lm.times measure lm scripts/lm-eval.sh "$W/run" "$W/tasks")
  echo "$s $(cut -d' ' -f1 "$W/lm.times") $kb" >>"$W/lm.runs"
}
for r in $(seq "$REPEATS"); do
  if [ $((r % 2)) -eq 1 ]; then run_gda "$r" && run_lm "$r"; else run_lm "$r" && run_gda "$r"; fi
done

echo
echo "zero-shot scoring: $items items (7 formats), model d_model=$D_MODEL layers=$LAYERS context=$CONTEXT gpt2, $THREADS threads, $REPEATS repeats (alternated); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$items" "$W/gda.runs" "$W/lm.runs" "$W/gda/bench.csv" "$W/lm" "${GDA_LM_EVAL_BATCH:-16}" <<'EOF'
import csv, glob, json, statistics, sys
items, batch = int(sys.argv[1]), sys.argv[6]
runs = {k: [list(map(float, l.split())) for l in open(p) if l.strip()] for k, p in (("gda", sys.argv[2]), ("lm", sys.argv[3]))}
med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in runs.items()}
names = {"gda": "gda eval --suite bench (native)", "lm": f"lm_eval --model hf (export, bs {batch})"}
print(f"| {'scorer':<36} | {'end to end s: median (min-max)':>30} | {'after load s: median (min-max)':>30} | {'items/s after load':>18} | {'peak RSS MiB':>12} |")
print(f"|{'-' * 38}|{'-' * 32}|{'-' * 32}|{'-' * 20}|{'-' * 14}|")
for k, v in runs.items():
    span = lambda i: f"{med[k][i]:.2f} ({min(r[i] for r in v):.2f}-{max(r[i] for r in v):.2f})"
    print(f"| {names[k]:<36} | {span(0):>30} | {span(1):>30} | {items / med[k][1]:>18.1f} | {max(r[2] for r in v) / 1024:>12.0f} |")
print(f"\ngda vs lm_eval (medians): {med['lm'][0] / med['gda'][0]:.1f}x end to end, {med['lm'][1] / med['gda'][1]:.1f}x after load")
# Accuracies of the last repeat of each (the cross-check item by item is tests/lm_eval.rs).
gda = {r["task"]: r for r in csv.DictReader(open(sys.argv[4])) if r["task"] != "average"}
lm = json.load(open(sorted(glob.glob(f"{sys.argv[5]}/*/results_*.json"))[-1]))["results"]
diffs = []
for task, r in sorted(gda.items()):
    theirs = lm[f"gda_{task}"]
    for m in ("acc", "acc_norm"):
        a, b = float(r[m]) if r[m] else None, theirs.get(f"{m},none")
        if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-9):
            diffs.append(f"{task} {m}: gda {a} vs lm_eval {b}")
verdict = "identical" if not diffs else "DIFFERENT"
print(f"scores: {verdict}: acc and acc_norm of all {len(gda)} tasks compared" + "".join(f"\n  {d}" for d in diffs))
EOF
echo "export (gda export --format hf, not in the times above): ${export_s}s"

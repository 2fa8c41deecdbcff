#!/usr/bin/env bash
# Zero-shot benchmark scoring speed, one run, printing a table with ratios:
# `gda eval --suite bench` (native, Rust + libtorch) against `lm_eval` on the
# same model exported with `gda export --format hf` (scripts/lm-eval.sh),
# end to end (process start to exit), on the same items, with the same CPU
# threads; items/s and peak RSS of each. The items are the format fixtures
# (tests/fixtures/bench, all seven formats) repeated --repeat times, each
# copy's context numbered so that no two requests are the same; the
# model is a small GPT-2-tokenized gda model trained for a few steps (its
# quality does not matter here, only the work per item).
# Each scorer runs --runs times, interleaved; the table gives the fastest
# run of each (other work on the machine only ever slows a run down) and
# the slowest, with the peak RSS of the fastest.
#   scripts/bench_eval.sh [--threads N] [--repeat R] [--runs K] [--d-model D] [--layers L] [--context T]
# Needs the venv of scripts/hf-venv.sh (installed on first use). Target:
# gda at least 3x faster than lm_eval end to end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
THREADS=2 REPEAT=20 RUNS=3 D_MODEL=256 LAYERS=4 CONTEXT=256
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
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
# Keeps the fastest (seconds, KiB) and the slowest seconds of a scorer.
best() { awk -v s="$1" -v k="$2" -v cur="$3" 'BEGIN { split(cur, c, " "); if (c[1] == "" || s < c[1]) { c[1] = s; c[2] = k } if (c[3] == "" || s > c[3]) c[3] = s; print c[1], c[2], c[3] }'; }
gda_best="" lm_best=""
for r in $(seq "$RUNS"); do
  echo "bench_eval: run $r/$RUNS: gda eval --suite bench on $items items, $THREADS threads" >&2
  read -r s kb < <(measure gda "$GDA" eval "$W/run" --suite bench --tasks "$W/tasks" --threads "$THREADS" --out "$W/gda")
  gda_best=$(best "$s" "$kb" "$gda_best")
  echo "bench_eval: run $r/$RUNS: lm_eval on the export, same items and threads" >&2
  read -r s kb < <(GDA_BIN=$GDA GDA_THREADS=$THREADS GDA_LM_EVAL_EXPORT=$W/export GDA_LM_EVAL_OUT=$W/lm \
    measure lm scripts/lm-eval.sh "$W/run" "$W/tasks")
  lm_best=$(best "$s" "$kb" "$lm_best")
  rm -rf "$W/lm"
done
read -r gda_s gda_kb gda_worst <<<"$gda_best"
read -r lm_s lm_kb lm_worst <<<"$lm_best"

# The two agree (the cross-check is tests/lm_eval.rs; here the averages only).
gda_avg=$(awk -F, 'NR > 1 && $9 == "average" { print $13 }' "$W/gda/bench.csv")
echo
echo "zero-shot scoring: $items items (7 formats), model d_model=$D_MODEL layers=$LAYERS context=$CONTEXT gpt2, $THREADS threads"
printf '| %-34s | %8s | %8s | %8s | %13s | %10s |\n' "scorer (best of $RUNS runs)" "wall s" "slowest" "items/s" "peak RSS MiB" "vs lm_eval"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------------------" "----------" "----------" "----------" "---------------" "------------"
row() { printf '| %-34s | %8.2f | %8.2f | %8.1f | %13.0f | %9.2fx |\n' "$1" "$2" "$4" "$(echo "$items / $2" | bc -l)" "$(echo "$3 / 1024" | bc -l)" "$(echo "$lm_s / $2" | bc -l)"; }
row "gda eval --suite bench (native)" "$gda_s" "$gda_kb" "$gda_worst"
row "lm_eval --model hf (export, bs ${GDA_LM_EVAL_BATCH:-16})" "$lm_s" "$lm_kb" "$lm_worst"
echo
echo "export (gda export --format hf, not in the times above): ${export_s}s; gda average acc: $gda_avg"

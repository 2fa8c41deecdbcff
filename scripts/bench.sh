#!/usr/bin/env bash
# Training throughput of gda against the same model in PyTorch (eager and
# torch.compile), same machine, same shapes, same threads, fp32 on CPU, in
# one run: gda with its fused kernels (model.fused = true, the default) and
# without, eager and compiled, alternated repetition by repetition
# (scripts/bench_train.py). Prints the median tokens/s of each and the
# spread (min–max), the ratios gda fused / each, peak RSS, and model FLOP/s
# as a share of the fp32 matmul peak measured in this same run.
#   scripts/bench.sh [--threads N] [--repeats R] [--steps S] [--quick]
# --quick: the two default-spec configurations only.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
THREADS=2 REPEATS=5 STEPS=5 QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "bench.sh: unknown option $1; allowed: --threads N, --repeats R, --steps S, --quick" >&2; exit 2 ;;
  esac
done
PY=${GDA_VENV}/bin/python
[ -x "$PY" ] || PY=python3
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# name | gda spec overrides
CONFIGS=(
  "gda-4to1|"
  "mha|--set model.attention=standard --set model.heads=13 --set model.head_dim=16"
  "large-gda-4to1|--set model.d_model=512 --set model.head_dim=32 --set model.signal_heads=16 --set model.noise_heads=4 --set train.context=256 --set train.batch_size=8"
  "large-mha|--set model.d_model=512 --set model.attention=standard --set model.heads=8 --set model.head_dim=64 --set train.context=256 --set train.batch_size=8"
)
[ "$QUICK" = 1 ] && CONFIGS=("${CONFIGS[@]:0:2}")
for entry in "${CONFIGS[@]}"; do
  name=${entry%%|*}; sets=${entry#*|}
  # One untimed step, to resolve and write the spec the PyTorch side reads.
  # shellcheck disable=SC2086
  ./target/release/gda bench --threads "$THREADS" --warmup 0 --steps 1 --repeats 1 \
    $sets --write-spec "$OUT/$name.toml" > /dev/null
done
"$PY" scripts/bench_train.py --gda ./target/release/gda --py "$PY" --out "$OUT" \
  --threads "$THREADS" --repeats "$REPEATS" --steps "$STEPS" "${CONFIGS[@]%%|*}"

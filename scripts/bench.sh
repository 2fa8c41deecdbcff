#!/usr/bin/env bash
# Training throughput of gda against the same model in PyTorch (eager and
# torch.compile), same machine, same shapes, same threads, fp32 on CPU, one
# run. Prints tokens/s (median of repetitions after warm-up), the ratios
# gda/eager and gda/compiled, peak memory, and model FLOP/s as a share of the
# fp32 matmul peak measured in this same run.
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
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PY=${GDA_VENV}/bin/python
[ -x "$PY" ] || PY=python3
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# name | gda spec overrides
CONFIGS=(
  "gda-4to1|"
  "gda-1to1|--set model.noise_heads=24"
  "baseline|--set model.attention=standard --set model.heads=13 --set model.head_dim=16"
  "large-gda-4to1|--set model.d_model=512 --set model.head_dim=32 --set model.signal_heads=16 --set model.noise_heads=4 --set train.context=256 --set train.batch_size=8"
)
[ "$QUICK" = 1 ] && CONFIGS=("${CONFIGS[@]:0:2}")
for entry in "${CONFIGS[@]}"; do
  name=${entry%%|*}; sets=${entry#*|}
  echo "bench: $name" >&2
  # shellcheck disable=SC2086
  ./target/release/gda bench --threads "$THREADS" --steps "$STEPS" --repeats "$REPEATS" \
    $sets --write-spec "$OUT/$name.toml" > "$OUT/$name.gda.json"
  "$PY" scripts/bench_torch.py --spec "$OUT/$name.toml" --threads "$THREADS" --steps "$STEPS" --repeats "$REPEATS" \
    2>/dev/null > "$OUT/$name.eager.json"
  "$PY" scripts/bench_torch.py --spec "$OUT/$name.toml" --threads "$THREADS" --steps "$STEPS" --repeats "$REPEATS" --compile \
    2>/dev/null > "$OUT/$name.compile.json"
done
"$PY" scripts/bench_report.py "$OUT" "$THREADS" "${CONFIGS[@]%%|*}"

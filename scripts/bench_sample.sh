#!/usr/bin/env bash
# Decoding speed of `gda sample`: the KV cache against recomputing the whole
# window at every step (the hidden --no-cache), on the same model, prompt,
# threads and number of tokens, greedy, fp32 on CPU, in one run. Prints
# tokens/s of each, the ratio cache/no-cache, peak RSS of each process, and
# whether the two wrote the same text (they must).
#   scripts/bench_sample.sh [--threads 1] [--tokens 256] [--quick]
# One thread by default: decoding runs small kernels, and on a shared 2-core
# machine two OpenMP threads measured 7-36x slower than one (waiting on each
# other at every kernel).
# Each model is trained for one step first: speed does not depend on the
# weights. --quick: the default spec only.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
THREADS=1 TOKENS=256 QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --tokens) TOKENS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "unknown option $1; allowed: --threads N, --tokens N, --quick" >&2; exit 2 ;;
  esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
GDA=./target/release/gda
PROMPT="ROMEO: But soft, what light through yonder window breaks?"

# name | gda train overrides (the default spec: GDA 4:1, bytes, context 128)
CONFIGS=(
  "default-4to1-ctx128|"
  "gpt2-d512-4to1-ctx1024|--set data.tokenizer=gpt2 --set model.d_model=512 --set model.head_dim=32 --set model.signal_heads=16 --set model.noise_heads=4 --set train.context=1024 --set train.batch_size=1"
)
[ "$QUICK" = 1 ] && CONFIGS=("${CONFIGS[@]:0:1}")

printf '%-24s %8s %12s %12s %7s %12s %12s %5s\n' model tokens "cache tok/s" "full tok/s" ratio "cache RSS" "full RSS" same
for entry in "${CONFIGS[@]}"; do
  name=${entry%%|*}; sets=${entry#*|}
  echo "bench_sample: training $name for one step" >&2
  # shellcheck disable=SC2086
  "$GDA" train --set train.steps=1 --set train.eval_every=1 --set train.eval_tokens=2048 \
    --set train.threads="$THREADS" $sets --out "$OUT/$name" > "$OUT/$name.train.log"
  declare -A tps rss
  for mode in cache full; do
    flag=()
    [ "$mode" = full ] && flag=(--no-cache)
    echo "bench_sample: $name, $mode" >&2
    /usr/bin/time -f %M -o "$OUT/$name.$mode.rss" "$GDA" sample "$OUT/$name" --prompt "$PROMPT" \
      --temperature 0 --max-new-tokens "$TOKENS" --threads "$THREADS" "${flag[@]}" \
      > "$OUT/$name.$mode.txt" 2> "$OUT/$name.$mode.err"
    # "sample: 256 tokens in 1.23 s (208.1 tokens/s, KV cache) | ..."
    tps[$mode]=$(sed -n 's/^sample: .*(\([0-9.]*\) tokens\/s.*/\1/p' "$OUT/$name.$mode.err")
    rss[$mode]=$(awk '{printf "%.0f MiB", $1 / 1024}' "$OUT/$name.$mode.rss")
  done
  same=no
  cmp -s "$OUT/$name.cache.txt" "$OUT/$name.full.txt" && same=yes
  ratio=$(awk -v a="${tps[cache]}" -v b="${tps[full]}" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-24s %8s %12s %12s %7s %12s %12s %5s\n' "$name" "$TOKENS" "${tps[cache]}" "${tps[full]}" "$ratio" \
    "${rss[cache]}" "${rss[full]}" "$same"
done
echo "threads $THREADS, greedy, prompt of ${#PROMPT} characters; tokens/s counts generated tokens (the prompt's forward included in the time)"

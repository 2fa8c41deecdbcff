#!/usr/bin/env bash
# Data-parallel throughput (issue 20): the default spec on 2 ranks of this
# machine (`gda train --nproc 2`, 1 thread each) against 1 process with 2
# threads, the same global batch and steps, in one run of this script.
# Prints tokens/s of both (training time only, from summary.json) and their
# ratio (target >= 0.9; also 1 process with 1 thread, for reference), each rank's all-reduce time per step and its share
# of the step (the ranks' closing lines), and peak RSS (per rank; for the
# single process, the largest child's).
#   scripts/bench-dist.sh [--steps S]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
STEPS=40
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    *) echo "bench-dist.sh: unknown option $1; allowed: --steps S" >&2; exit 2 ;;
  esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
GDA=./target/release/gda
# Evaluation only at the end, on a small budget: the training steps are timed.
SETS=(--set "train.steps=$STEPS" --set "train.eval_every=$STEPS" --set train.eval_tokens=4096 --set "train.log_every=$STEPS")
maxrss() {  # runs "$@", prints the peak RSS (MB) of its largest descendant on fd 3
  python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr)
sys.exit(r)' "$@"
}
echo "bench-dist: 1 process, 2 threads, $STEPS steps" >&2
maxrss "$GDA" train --threads 2 --out "$OUT/one" "${SETS[@]}" > "$OUT/one.log" 2> "$OUT/one.err"
# The single thread a rank has, as a third row: on a loaded machine a
# 2-thread OpenMP process can be many times slower than 1 thread.
echo "bench-dist: 1 process, 1 thread, $STEPS steps" >&2
"$GDA" train --threads 1 --out "$OUT/single" "${SETS[@]}" > "$OUT/single.log" 2>&1
echo "bench-dist: 2 ranks (--nproc 2), 1 thread each, $STEPS steps" >&2
"$GDA" train --threads 2 --nproc 2 --out "$OUT/two" "${SETS[@]}" > "$OUT/two.log" 2> "$OUT/two.err"
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
one = json.load(open(f"{out}/one/summary.json"))
two = json.load(open(f"{out}/two/summary.json"))
single = json.load(open(f"{out}/single/summary.json"))
rss_one = float(open(f"{out}/one.err").read().strip().splitlines()[-1])
ranks = [l for l in open(f"{out}/two.err").read().splitlines() if l.startswith("rank ")]
manifest = json.load(open(f"{out}/two/manifest.json"))
print(f"default spec, {one['parameters']} parameters, {one['steps']} steps, same global batch")
print(f"{'run':<28}{'tokens/s':>10}{'ratio':>8}")
print(f"{'1 process, 2 threads':<28}{one['tokens_per_s']:>10.0f}{1.0:>8.2f}")
print(f"{'1 process, 1 thread':<28}{single['tokens_per_s']:>10.0f}{single['tokens_per_s'] / one['tokens_per_s']:>8.2f}")
print(f"{'2 ranks x 1 thread (gloo)':<28}{two['tokens_per_s']:>10.0f}{two['tokens_per_s'] / one['tokens_per_s']:>8.2f}   (target >= 0.9)")
print(f"gradient bytes all-reduced per step: {4 * one['parameters'] / 1e6:.1f} MB (fp32)")
for l in sorted(ranks):
    print(l)
print(f"peak RSS: 1 process {rss_one:.0f} MB; per rank as above")
PY

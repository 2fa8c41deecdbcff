#!/usr/bin/env bash
# Data-parallel throughput (issues 20 and 29): the default spec, same global
# batch and steps, in four configurations run alternated R times (so a
# machine whose load drifts slows them alike): 1 process with 1 thread, 1
# process with 2 threads, and 2 ranks of this machine (`gda train --nproc 2`,
# 1 thread each) with the gradient all-reduces overlapped with backward
# (train.overlap_allreduce, the default) and without. Prints per
# configuration the median tokens/s (training time only, from summary.json)
# and its spread (min-max), the ratio of the median to 1 process x 1 thread
# (target for 2 ranks with overlap: >= 1.85) and to 1 x 2 threads; for the
# ranks, the time a step waited for the all-reduces after backward (what
# overlap did not hide; target < 3% of the step) and its share of the
# training time (the ranks' closing lines, median over repeats), and the
# peak RSS (per rank; for a single process, its own), the largest over
# repeats.
#   scripts/bench-dist.sh [--steps S] [--repeats R]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
STEPS=40 REPEATS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    *) echo "bench-dist.sh: unknown option $1; allowed: --steps S, --repeats R" >&2; exit 2 ;;
  esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
GDA=./target/release/gda
# Evaluation only at the end, on a small budget: the training steps are timed.
SETS=(--set "train.steps=$STEPS" --set "train.eval_every=$STEPS" --set train.eval_tokens=4096 --set "train.log_every=$STEPS")
maxrss() {  # runs "$@", prints the peak RSS (MB) of its largest descendant on stderr's last line
  python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr)
sys.exit(r)' "$@"
}
# name | gda train options
CONFIGS=(
  "1x1|--threads 1"
  "1x2|--threads 2"
  "2x1-overlap|--threads 2 --nproc 2"
  "2x1-no-overlap|--threads 2 --nproc 2 --set train.overlap_allreduce=false"
)
for r in $(seq 1 "$REPEATS"); do
  for entry in "${CONFIGS[@]}"; do
    name=${entry%%|*}; opts=${entry#*|}
    echo "bench-dist: repeat $r/$REPEATS, $name, $STEPS steps" >&2
    # shellcheck disable=SC2086
    maxrss "$GDA" train $opts --out "$OUT/$name.$r" "${SETS[@]}" > "$OUT/$name.$r.log" 2> "$OUT/$name.$r.err"
  done
done
python3 - "$OUT" "$REPEATS" "${CONFIGS[@]%%|*}" <<'PY'
import json, re, statistics, sys
out, repeats, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
LINE = re.compile(r"rank (\d+)/\d+: all-reduce wait ([\d.]+) ms per step \((\d+) buckets, ([^;]*); ([\d.]+)% of the step time\) \| peak RSS (\d+) MB")
runs = {n: [json.load(open(f"{out}/{n}.{r}/summary.json")) for r in range(1, repeats + 1)] for n in names}
tps = {n: [s["tokens_per_s"] for s in runs[n]] for n in names}
med = {n: statistics.median(v) for n, v in tps.items()}
first = runs[names[0]][0]
print(f"default spec, {first['parameters']} parameters, {first['steps']} steps, same global batch, {repeats} repeats alternated")
print(f"{'run':<34}{'tokens/s':>10}{'spread (min-max)':>20}{'vs 1x1':>8}{'vs 1x2':>8}")
label = {"1x1": "1 process, 1 thread", "1x2": "1 process, 2 threads",
         "2x1-overlap": "2 ranks x 1 thread, overlap", "2x1-no-overlap": "2 ranks x 1 thread, no overlap"}
for n in names:
    spread = f"{min(tps[n]):.0f}-{max(tps[n]):.0f}"
    target = "   (target >= 1.85)" if n == "2x1-overlap" else ""
    print(f"{label.get(n, n):<34}{med[n]:>10.0f}{spread:>20}{med[n] / med['1x1']:>8.2f}{med[n] / med['1x2']:>8.2f}{target}")
print(f"gradient bytes all-reduced per step: {4 * first['parameters'] / 1e6:.1f} MB (fp32)")
for n in names:
    err = [open(f"{out}/{n}.{r}.err").read() for r in range(1, repeats + 1)]
    lines = [m for e in err for m in LINE.finditer(e)]
    if not lines:
        rss = max(float(e.strip().splitlines()[-1]) for e in err)
        print(f"{label.get(n, n)}: peak RSS {rss:.0f} MB")
        continue
    wait = statistics.median(float(m.group(2)) for m in lines)
    share = statistics.median(float(m.group(5)) for m in lines)
    rss = max(int(m.group(6)) for m in lines)
    how = sorted({f"{m.group(3)} buckets, {m.group(4)}" for m in lines})
    print(f"{label.get(n, n)}: all-reduce wait {wait:.2f} ms per step, {share:.1f}% of the step (target < 3%), "
          f"peak RSS {rss} MB per rank; {' / '.join(how)}")
    for r, e in enumerate(err, 1):
        for l in sorted(l for l in e.splitlines() if l.startswith("rank ")):
            print(f"  repeat {r}: {l}")
PY

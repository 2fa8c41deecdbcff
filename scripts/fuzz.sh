#!/usr/bin/env bash
# A long fuzz campaign over every reader of untrusted input (tests/fuzz.rs):
#   scripts/fuzz.sh [CASES_PER_READER_PER_ROUND] [ROUNDS]
# Each round uses another GDA_FUZZ_SEED; a failing input is kept under
# target/fuzz-failures/ and named in the output.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cases=${1:-100000}
rounds=${2:-3}
for r in $(seq 1 "$rounds"); do
  seed=$(( $(date +%s) + r ))
  echo "fuzz round $r/$rounds: GDA_FUZZ_SEED=$seed, $cases cases per reader"
  GDA_FUZZ_SEED=$seed GDA_FUZZ_CASES=$cases cargo test --release --test fuzz -- --nocapture --test-threads 2 2>&1 \
    | grep -E "^fuzz |panicked|FAILED|test result"
done

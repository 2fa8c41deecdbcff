#!/usr/bin/env bash
# README's second command: set everything up (idempotent), then run the whole
# test suite on the release build (so the libtorch wrapper compiles once).
# The tests of the Slurm launcher (tests/slurm.rs) run against a real
# one-node cluster on this machine: brought up here (as root on Debian; it
# installs slurm-wlm and munge if missing) and stopped at the end. Where it
# cannot start, those tests fail and say why.
# Without arguments it then builds gda again against libtorch 2.11 (tch 0.24;
# the torch==2.11.0 wheel in its own venv under $GDA_CACHE, installed once)
# and runs the unit tests and the model/attention and training tests there.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# TensorBoard, for tests/tensorboard.rs (which fails without it).
"$(dirname "${BASH_SOURCE[0]}")/tb-venv.sh"
# transformers + lm-eval reusing the torch venv, for tests/export.rs,
# tests/lm_eval.rs and tests/sample.rs (which fail without it; with LIBTORCH
# set there is no torch venv to reuse).
"$(dirname "${BASH_SOURCE[0]}")/hf-venv.sh" ||
  echo "test.sh: no transformers venv (see above): the tests in tests/export.rs, tests/lm_eval.rs and tests/sample.rs will fail" >&2
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
if scripts/slurm-cluster.sh up; then
  trap 'scripts/slurm-cluster.sh down' EXIT
else
  echo "test.sh: no Slurm cluster could be started (see above): the tests in tests/slurm.rs will fail" >&2
fi
echo "test.sh: cargo fmt --check, cargo clippy --all-targets -- -D warnings, and too_many_lines (80) on src/"
cargo fmt --check
cargo clippy --release --all-targets --quiet -- -D warnings
# too_many_lines at 80 (clippy.toml): every function in src/ reads on one screen.
cargo clippy --release --lib --bins --quiet -- -D warnings -W clippy::too_many_lines
# tests/fuzz.rs: 2,000 mutated inputs per reader (seconds); scripts/fuzz.sh runs a long campaign.
GDA_FUZZ_CASES=${GDA_FUZZ_CASES:-2000} cargo test --release "$@"
if [ $# -eq 0 ]; then
  echo "test.sh: the unit, attention and training tests again against libtorch 2.11 (tch 0.24): scripts/build.sh --torch 2.11 test --release --lib --test attention --test train"
  GDA_TORCH_TARGET=$GDA_CACHE/target-torch2.11 scripts/build.sh --torch 2.11 test --release --lib --test attention --test train
fi

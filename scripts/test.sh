#!/usr/bin/env bash
# README's second command: set everything up (idempotent), then run the whole
# test suite on the release build (so the libtorch wrapper compiles once).
# The tests of the Slurm launcher (tests/slurm.rs) run against a real
# one-node cluster on this machine: brought up here (as root on Debian; it
# installs slurm-wlm and munge if missing) and stopped at the end. Where it
# cannot start, those tests fail and say why.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# TensorBoard, for tests/tensorboard.rs (which fails without it).
"$(dirname "${BASH_SOURCE[0]}")/tb-venv.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
if scripts/slurm-cluster.sh up; then
  trap 'scripts/slurm-cluster.sh down' EXIT
else
  echo "test.sh: no Slurm cluster could be started (see above): the tests in tests/slurm.rs will fail" >&2
fi
cargo test --release "$@"

#!/usr/bin/env bash
# README's second command: set everything up (idempotent), then run the whole
# test suite on the release build (so the libtorch wrapper compiles once).
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
exec cargo test --release "$@"

#!/usr/bin/env bash
# README's first command: set everything up (idempotent), then run the main
# job on the built-in default spec. Extra arguments go to `gda train`.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
# A finished default run is kept, not retrained: --resume continues an
# interrupted one and returns at once for a finished one.
exec ./target/release/gda train --spec experiments/default.toml --resume "$@"

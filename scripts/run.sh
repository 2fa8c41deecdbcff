#!/usr/bin/env bash
# README's first command: set everything up (idempotent), then run the main
# job: the paper's ratio scan on the built-in default spec (5 models, about
# 11 minutes on 2 CPU threads). Extra arguments go to `gda sweep`.
# Rerunning it skips finished points and resumes an interrupted one.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
exec ./target/release/gda sweep --ratios 1,2,3,4,8 "$@"

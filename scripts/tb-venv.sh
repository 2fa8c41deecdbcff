#!/usr/bin/env bash
# TensorBoard in its own venv under $GDA_CACHE/tb-venv, for tests/tensorboard.rs,
# which reads gda's event files back with TensorBoard's own reader. Idempotent
# (a second run installs nothing); scripts/test.sh calls it, nothing else needs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
GDA_TB_VENV=$GDA_CACHE/tb-venv
if [ ! -f "$GDA_TB_VENV/.gda-complete" ]; then
  echo "tb-venv: installing tensorboard into $GDA_TB_VENV (about 100 MB, once)"
  mkdir -p "$GDA_CACHE"
  rm -rf "$GDA_TB_VENV"
  python3 -m venv "$GDA_TB_VENV"
  "$GDA_TB_VENV/bin/pip" install --quiet --disable-pip-version-check tensorboard
  touch "$GDA_TB_VENV/.gda-complete"
fi

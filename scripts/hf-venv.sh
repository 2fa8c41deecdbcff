#!/usr/bin/env bash
# Hugging Face transformers and EleutherAI's lm-evaluation-harness in their own
# venv under $GDA_CACHE/hf-venv, for the checks of `gda export --format hf`
# (tests/export.rs) and scripts/lm-eval.sh. The venv reuses the torch venv's
# torch through a .pth file naming its site-packages, so pip sees torch as
# installed and downloads no second copy (about 900 MB, 2 minutes, once).
# Idempotent: a second run installs nothing. Prints the venv's path last.
#
# At use, run it offline: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# TRANSFORMERS_OFFLINE=1 HF_HOME=$GDA_CACHE/hf-home (tests/export.rs and
# scripts/lm-eval.sh set them); nothing here needs the network after the install.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/env.sh"
# Versions checked together here (transformers 5 with lm-eval 0.4); a change
# renames the venv, so an old install is never mixed with a new pin.
GDA_HF_PINS=("transformers==5.24.0" "lm-eval[hf]==0.4.13")
GDA_HF_VENV=$GDA_CACHE/hf-venv
if [ -n "${LIBTORCH:-}" ]; then
  echo "hf-venv: LIBTORCH is set, but the HF venv reuses the torch of the PyPI wheel venv ($GDA_VENV)" >&2
fi
if [ ! -x "$GDA_VENV/bin/python" ]; then
  echo "hf-venv: no torch venv at $GDA_VENV: run scripts/setup.sh first" >&2
  exit 1
fi
stamp="$GDA_HF_VENV/.gda-complete"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${GDA_HF_PINS[*]}" ]; then
  echo "hf-venv: installing ${GDA_HF_PINS[*]} into $GDA_HF_VENV (about 900 MB, 2 minutes, once; torch is reused from $GDA_VENV)"
  mkdir -p "$GDA_CACHE"
  rm -rf "$GDA_HF_VENV"
  "$GDA_VENV/bin/python" -m venv "$GDA_HF_VENV"
  torch_site=$("$GDA_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own_site=$("$GDA_HF_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$torch_site" >"$own_site/gda-torch.pth"
  "$GDA_HF_VENV/bin/pip" install --quiet --disable-pip-version-check "${GDA_HF_PINS[@]}"
  # The check that no second torch came in: torch must still load from the torch venv.
  "$GDA_HF_VENV/bin/python" -c "import torch, transformers, lm_eval; assert torch.__file__.startswith('$torch_site'), torch.__file__"
  echo "${GDA_HF_PINS[*]}" >"$stamp"
fi
mkdir -p "$GDA_CACHE/hf-home"
echo "$GDA_HF_VENV"

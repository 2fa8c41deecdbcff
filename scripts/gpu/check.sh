#!/usr/bin/env bash
# The prepared CUDA check (issue 14), for a machine with an NVIDIA GPU and
# PyTorch but no Rust toolchain and no network:
#   check.sh OUT_DIR [--dry]
# Run it from the folder scripts/gpu/build.sh made (dist/gda-torchX.Y/: the
# gda binary, this script, check.py, bench_torch.py, experiments/ and the
# default corpus), or from the repository (then target/release/gda, or
# GDA_BIN). Python and torch: $GDA_PYTHON, else /opt/torch/.venv/bin/python,
# else $VIRTUAL_ENV/bin/python, else python3. gda runs against that torch's
# own libraries: its torch/lib goes first on LD_LIBRARY_PATH, which takes
# precedence over the binary's RUNPATH. About 8 minutes on an H200; writes
# check.log, results.json and CSV files into OUT_DIR. --dry runs every step on
# the CPU at toy sizes (a test runs it).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${GDA_PYTHON:-}
if [ -z "$PY" ]; then
  for p in /opt/torch/.venv/bin/python "${VIRTUAL_ENV:-/nonexistent}/bin/python" "$(command -v python3 || true)"; do
    if [ -x "$p" ]; then PY=$p; break; fi
  done
fi
[ -n "$PY" ] || { echo "check.sh: no python with torch found; set GDA_PYTHON" >&2; exit 2; }
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
  echo "check.sh: $PY cannot import torch; set GDA_PYTHON to a python that can" >&2
  exit 2
}
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "check.sh: python $PY, torch/lib $TORCH_LIB first on LD_LIBRARY_PATH"
exec "$PY" "$HERE/check.py" "$@"

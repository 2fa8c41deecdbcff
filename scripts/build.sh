#!/usr/bin/env bash
# Build (or test) gda against the libtorch you point it at; the tch release
# that matches it is chosen here, at build time:
#   scripts/build.sh [--torch X.Y] [CARGO ARGS...]     (default: build --release)
#   scripts/build.sh --torch 2.11 test --release --test attention
# Which libtorch: `--torch X.Y` uses the PyPI wheel torch==X.Y.0 in its own
# venv under $GDA_CACHE (installed on demand by scripts/setup.sh --torch X.Y),
# unless LIBTORCH=/path is set (then that libtorch must be version X.Y).
# Without --torch: LIBTORCH if set, else the python of VIRTUAL_ENV/PATH
# (LIBTORCH_USE_PYTORCH), else the default 2.13 wheel venv (scripts/env.sh).
#
# Why a wrapper and not Cargo features: tch 0.24 and 0.26 both depend on a
# torch-sys with `links = "tch"`, and Cargo refuses two such packages in one
# resolved graph, optional or not. So the one Cargo.toml names the default
# (tch 0.26 for libtorch 2.13); for another version this script writes a copy
# of it, differing only in the tch/torch-sys version, into
# target-torchX.Y/manifest/ (with its own Cargo.lock), links the same source
# tree beside it, and builds into target-torchX.Y/. The differences of the
# Rust API between those tch releases live in src/device.rs (module `torch`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# libtorch major.minor -> the tch (and torch-sys) release made for it (tch's
# CHANGELOG: 0.24 "PyTorch v2.11 support", 0.25 v2.12, 0.26 v2.13).
tch_for() {
  case "$1" in
    2.11) echo 0.24 ;;
    2.12) echo 0.25 ;;
    2.13) echo 0.26 ;;
    *) return 1 ;;
  esac
}
SUPPORTED="2.11 (tch 0.24), 2.12 (tch 0.25), 2.13 (tch 0.26)"

WANT=""
if [ "${1:-}" = "--torch" ]; then
  [ $# -ge 2 ] || { echo "build.sh: --torch needs a version, one of $SUPPORTED" >&2; exit 2; }
  WANT=$2
  shift 2
fi
[ $# -gt 0 ] || set -- build --release
if [ -n "$WANT" ] && ! tch_for "$WANT" >/dev/null; then
  echo "build.sh: libtorch $WANT is not supported; supported: $SUPPORTED" >&2
  exit 2
fi

if [ -n "$WANT" ] && [ -z "${LIBTORCH:-}" ]; then
  "$ROOT/scripts/setup.sh" --torch "$WANT" --venv-only
fi
gda_torch=$WANT
source "$ROOT/scripts/env.sh"

# The version of the libtorch that torch-sys will find.
if [ -n "${LIBTORCH:-}" ]; then
  WHERE=$LIBTORCH
  if [ -f "$LIBTORCH/build-version" ]; then
    FOUND=$(cat "$LIBTORCH/build-version")
  elif [ -f "$LIBTORCH/version.py" ]; then
    FOUND=$(sed -n "s/^__version__ *= *['\"]\([^'\"]*\)['\"].*/\1/p" "$LIBTORCH/version.py")
  else
    echo "build.sh: LIBTORCH=$LIBTORCH has neither build-version nor version.py: is it a libtorch?" >&2
    exit 2
  fi
else
  PY=python3
  [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ] && PY=$VIRTUAL_ENV/bin/python
  WHERE=$(command -v "$PY")
  FOUND=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) || {
    echo "build.sh: $WHERE cannot import torch; run scripts/setup.sh or set LIBTORCH=/path/to/libtorch" >&2
    exit 2
  }
fi
FOUND=${FOUND%%+*}
MINOR=$(echo "$FOUND" | cut -d. -f1,2)
TCH=$(tch_for "$MINOR") || {
  echo "build.sh: libtorch $FOUND ($WHERE) is not supported; supported: $SUPPORTED" >&2
  exit 2
}
if [ -n "$WANT" ] && [ "$MINOR" != "$WANT" ]; then
  echo "build.sh: --torch $WANT asked for, but LIBTORCH=$LIBTORCH is libtorch $FOUND" >&2
  exit 2
fi

DEFAULT_TCH=$(sed -n 's/^tch = "\([0-9.]*\)"$/\1/p' "$ROOT/Cargo.toml")
if [ "$TCH" = "$DEFAULT_TCH" ]; then
  echo "build.sh: libtorch $FOUND ($WHERE) -> tch $TCH: cargo $* in $ROOT" >&2
  cd "$ROOT"
  exec cargo "$@"
fi

# GDA_TORCH_TARGET: where cargo builds (default target-torchX.Y/ here);
# scripts/test.sh puts it in $GDA_CACHE so fresh CI clones reuse the build.
OUT=${GDA_TORCH_TARGET:-$ROOT/target-torch$MINOR}
MANIFEST=$ROOT/target-torch$MINOR/manifest
mkdir -p "$MANIFEST"
sed -e "s/^tch = \"$DEFAULT_TCH\"$/tch = \"$TCH\"/" -e "s/^torch-sys = \"$DEFAULT_TCH\"$/torch-sys = \"$TCH\"/" \
  "$ROOT/Cargo.toml" > "$MANIFEST/Cargo.toml.new"
grep -q "^tch = \"$TCH\"$" "$MANIFEST/Cargo.toml.new" && grep -q "^torch-sys = \"$TCH\"$" "$MANIFEST/Cargo.toml.new" || {
  echo "build.sh: Cargo.toml no longer has the lines tch = \"$DEFAULT_TCH\" and torch-sys = \"$DEFAULT_TCH\" to replace" >&2
  exit 1
}
# Its own workspace root, not a member of anything above it.
printf '\n[workspace]\n' >> "$MANIFEST/Cargo.toml.new"
# Rewritten only when it changes, so cargo's fingerprints stay valid.
if cmp -s "$MANIFEST/Cargo.toml.new" "$MANIFEST/Cargo.toml"; then
  rm "$MANIFEST/Cargo.toml.new"
else
  mv "$MANIFEST/Cargo.toml.new" "$MANIFEST/Cargo.toml"
fi
# The default lock as the start (again whenever it changes), so every other
# crate keeps the version the default build has; cargo then moves only tch
# and torch-sys.
if ! cmp -s "$ROOT/Cargo.lock" "$MANIFEST/Cargo.lock.base"; then
  cp "$ROOT/Cargo.lock" "$MANIFEST/Cargo.lock"
  cp "$ROOT/Cargo.lock" "$MANIFEST/Cargo.lock.base"
fi
# The same source tree (src, tests, build.rs, experiments, scripts, docs...):
# tests find files through CARGO_MANIFEST_DIR, which is this folder.
for entry in "$ROOT"/* "$ROOT"/.ci; do
  name=$(basename "$entry")
  case "$name" in
    Cargo.toml | Cargo.lock | target | target-torch* | dist) continue ;;
  esac
  [ -L "$MANIFEST/$name" ] || ln -sfn "$entry" "$MANIFEST/$name"
done
echo "build.sh: libtorch $FOUND ($WHERE) -> tch $TCH: cargo $* with $MANIFEST/Cargo.toml, into $OUT" >&2
cd "$MANIFEST"
export CARGO_TARGET_DIR=$OUT
exec cargo "$@"

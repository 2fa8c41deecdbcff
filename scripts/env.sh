# Sourced by the other scripts: where the cache lives and how cargo finds
# libtorch. A user's own libtorch (LIBTORCH=/path) takes precedence over the
# PyPI wheel. A caller that sets the shell variable gda_torch=2.11 first gets
# the torch==2.11.0 wheel's venv instead of the default 2.13 (scripts/build.sh).
GDA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GDA_CACHE=${GDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gda}
GDA_TORCH_VERSION=${gda_torch:-2.13}.0
GDA_VENV=$GDA_CACHE/torch-$GDA_TORCH_VERSION
export GDA_CACHE
if [ -z "${LIBTORCH:-}" ]; then
  export LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV=$GDA_VENV PATH=$GDA_VENV/bin:$PATH
fi

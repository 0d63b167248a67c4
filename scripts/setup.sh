#!/usr/bin/env bash
# Sets up rl_laof on a fresh Debian machine: the Debian packages headless MuJoCo rendering needs
# (EGL + Mesa, as root), then a virtual environment in .venv with the package and its pins.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # + test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=""
[[ "${1:-}" == "--dev" ]] && EXTRAS="[dev]"

APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
# --dev: g++ compiles the CUDA kernels as C++ so that tests run them on the CPU (tests/cuda_on_cpu.py);
# postgresql: the sweep tests start a PostgreSQL server of their own (tests/test_sweeps.py)
[[ -n "$EXTRAS" ]] && APT_PACKAGES="$APT_PACKAGES g++ postgresql"
if command -v apt-get >/dev/null 2>&1; then
  missing=$(dpkg-query -W -f='${Package} ${Status}\n' $APT_PACKAGES 2>/dev/null | grep -vc "install ok installed" || true)
  if ! dpkg-query -W $APT_PACKAGES >/dev/null 2>&1 || [[ "$missing" != "0" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
      echo "Need the Debian packages: $APT_PACKAGES (run as root: apt-get install -y $APT_PACKAGES)" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The CPU build of torch first: anything that pulls torch later then finds 2.13.0 satisfied
# instead of downloading several GB of CUDA packages.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"  # CPU machines here carry the CPU wheel
fi
.venv/bin/python -m pip install -q -e ".${EXTRAS}"
.venv/bin/python -c "import envs; envs.ensure_gl(); print('rl_laof set up in .venv')"

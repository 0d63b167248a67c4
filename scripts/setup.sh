#!/usr/bin/env bash
# Sets up rl_laof on a fresh Debian machine: the Debian packages headless MuJoCo rendering needs
# (EGL + Mesa, as root), then a virtual environment in .venv with the package and its pins.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --dev    # + test and lint tools
# It prints one line per step; apt's and pip's own output goes to logs/setup.log, whose last lines it prints
# (with the log's path) when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=""
[[ "${1:-}" == "--dev" ]] && EXTRAS="[dev]"

LOG=logs/setup.log
mkdir -p logs
: >"$LOG"

# step WHAT COMMAND...: prints "WHAT ... ok (N s)"; the command's output goes to the log. On failure: the
# log's last 30 lines and its path on stderr, and the command's exit status. (A failing step stops the script;
# chain a step's commands with && -- set -e does not act inside a command that `if` tests.)
step() {
  local what=$1 start=$SECONDS rc
  shift
  printf '%s ... ' "$what"
  printf '\n== %s\n$ %s\n' "$what" "$*" >>"$LOG"
  if "$@" >>"$LOG" 2>&1; then
    echo "ok ($((SECONDS - start)) s)"
  else
    rc=$?
    echo "failed (exit $rc)"
    {
      echo "--- last 30 lines of $LOG ---"
      tail -n 30 "$LOG"
      echo "--- the whole output of every step: $LOG ---"
    } >&2
    exit "$rc"
  fi
}

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
    step "apt: installing $APT_PACKAGES" \
      sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $APT_PACKAGES"
  else
    echo "apt: $APT_PACKAGES already installed"
  fi
fi

PY=${PYTHON:-python3}
if [[ -x .venv/bin/python ]]; then
  echo "venv: using .venv"
else
  step "venv: creating .venv with $PY" "$PY" -m venv .venv
fi
step "pip: upgrading pip, setuptools, wheel" .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The CPU build of torch first: anything that pulls torch later then finds 2.13.0 satisfied
# instead of downloading several GB of CUDA packages.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  step "pip: installing torch==2.13.0" .venv/bin/python -m pip install -q "torch==2.13.0"  # CPU machines here carry the CPU wheel
else
  echo "pip: torch 2.13.0 already installed"
fi
step "pip: installing rl_laof${EXTRAS} (editable) and its pins" .venv/bin/python -m pip install -q -e ".${EXTRAS}"
step "checking headless GL (EGL)" .venv/bin/python -c "import envs; envs.ensure_gl()"
echo "rl_laof set up in .venv (log: $LOG)"

#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv.
#   ./setup_env.sh        runtime dependencies, CPU TensorFlow (requirements.txt)
#   ./setup_env.sh dev    + every optional part and the test tools (requirements-dev.txt)
#   ./setup_env.sh gpu    runtime dependencies with the CUDA build of TensorFlow (requirements-gpu.txt)
# A .venv set up with `gpu` keeps the CUDA build: a later plain ./setup_env.sh (./demo.sh) uses
# requirements-gpu.txt too, and `dev` (which pins the CPU build) refuses instead of installing both.
# Idempotent: pip only installs what is missing; a stamp file holding the checksum of every
# requirements*.txt skips pip when none of them changed.
set -euo pipefail
cd "$(dirname "$0")"
kind="${1:-runtime}"
case "$kind" in
  runtime) req=requirements.txt ;;
  dev) req=requirements-dev.txt ;;
  gpu) req=requirements-gpu.txt ;;
  *) echo "usage: ./setup_env.sh [runtime|dev|gpu]" >&2; exit 2 ;;
esac
if [ -f .venv/.installed-gpu ] && [ "$kind" != gpu ]; then
  if [ "$kind" = dev ]; then
    echo "setup_env.sh: error: .venv holds the CUDA build of TensorFlow (./setup_env.sh gpu) and" \
         "requirements-dev.txt pins tensorflow-cpu; run the tests from a CPU set-up (rm -rf .venv)" >&2
    exit 1
  fi
  kind=gpu req=requirements-gpu.txt  # the CUDA build serves the runtime as well
fi
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$kind"
# -r includes reach other requirement files: checksum them all (cheap, and catches any edit).
checksum="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$checksum" ]; then
  echo "[setup] installing $req"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  if [ "$kind" = gpu ] && .venv/bin/python -m pip show --quiet tensorflow-cpu >/dev/null 2>&1; then
    # Both builds write the same `tensorflow` package: remove the CPU one (and a `tensorflow`
    # installed beside it, whose files it shared) before installing the CUDA build.
    echo "[setup] removing tensorflow-cpu (replaced by the CUDA build)"
    .venv/bin/python -m pip uninstall --quiet --yes tensorflow-cpu tensorflow
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$checksum" > "$stamp"
fi

#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv.
#   ./setup_env.sh        runtime dependencies (requirements.txt)
#   ./setup_env.sh dev    + test dependencies (requirements-dev.txt)
# Idempotent: pip only installs what is missing; a stamp file skips pip when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
kind="${1:-runtime}"
req=requirements.txt
[ "$kind" = dev ] && req=requirements-dev.txt
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$kind"
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ "$req" -nt "$stamp" ]; then
  echo "[setup] installing $req"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$stamp"
fi

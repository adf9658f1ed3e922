#!/usr/bin/env bash
# Run the whole test suite, set-up included: ./test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh dev
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
exec .venv/bin/python -m pytest -q -n 2 --durations=15 "$@"

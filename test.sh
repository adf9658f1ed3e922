#!/usr/bin/env bash
# Run the tests, set-up included (.venv with requirements-dev.txt, via ./setup_env.sh dev):
#   ./test.sh               the default run: every test not marked slow (pytest -m "not slow")
#   ./test.sh --all         every test, slow ones included (full DenseNet-161 graphs, multi-process
#                           training, the real browser): what CI (.ci/run) runs
#   ./test.sh [--all] ARGS  extra pytest arguments, e.g. ./test.sh tests/test_model.py -k lpg
# Installs no system package. The browser test needs Debian's Chromium at /usr/bin/chromium, a
# one-time install (sudo apt-get install chromium chromium-driver; .ci/run does it); without it
# that test is reported as skipped, with the reason.
set -euo pipefail
cd "$(dirname "$0")"
select=(-m "not slow")
args=()
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then select=(); else args+=("$arg"); fi
done
./setup_env.sh dev
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
# -rfEs: the closing summary lists failures, errors and skips with their reasons.
exec .venv/bin/python -m pytest -q -n 2 -rfEs --durations=15 ${select[@]+"${select[@]}"} ${args[@]+"${args[@]}"}

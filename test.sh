#!/usr/bin/env bash
# Run the whole test suite, set-up included: ./test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh dev
# The demo's real-browser test (tests/test_demo.py) drives Debian's Chromium; install it if missing.
# Not fatal here: without it that test fails with a message saying so.
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing chromium and chromium-driver (apt) for the browser test"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo_cmd="sudo -n"; fi
  { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      $sudo_cmd apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
    || echo "[setup] WARNING: could not install chromium; the browser test will fail"
fi
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
exec .venv/bin/python -m pytest -q -n 2 --durations=15 "$@"

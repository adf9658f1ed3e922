# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# Shell helpers shared by init_densenet_161.sh and init_bts_pretrained.sh (sourced, not run).
# Expects to be sourced from the repository root with `set -euo pipefail` active.

TORCH_VERSION="2.13.0"                                  # as in requirements-dev.txt
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"  # CPU-only wheels: no CUDA download
# Where models and downloads go (relative to the repository root unless absolute).
MODELS_DIR="${BTS_MODELS_DIR:-models}"
DOWNLOAD_DIR="${MODELS_DIR}/downloads"

# The Python to use: $PYTHON, else the project venv, else python3 on PATH.
pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "${PYTHON}"
  elif [[ -x ".venv/bin/python" ]]; then
    echo ".venv/bin/python"
  else
    echo "python3"
  fi
}

# download URL DEST: resumable (wget -c / curl -C -) into DEST.part, renamed to DEST when complete.
# Does nothing if DEST already exists.
download() {
  local url="$1" dest="$2"
  if [[ -f "${dest}" ]]; then
    echo "already downloaded: ${dest}"
    return 0
  fi
  mkdir -p "$(dirname "${dest}")"
  echo "downloading ${url}"
  if command -v wget >/dev/null 2>&1; then
    wget -c -O "${dest}.part" "${url}"
  elif command -v curl >/dev/null 2>&1; then
    curl -fL -C - -o "${dest}.part" "${url}"
  else
    echo "error: neither wget nor curl is installed" >&2
    return 1
  fi
  mv "${dest}.part" "${dest}"
}

# ensure_torch PYTHON: install the CPU build of PyTorch into that interpreter's environment if
# `import torch` fails (only the converters need it; training, evaluation and the demo never do).
ensure_torch() {
  local python="$1"
  if "${python}" -c "import torch" >/dev/null 2>&1; then
    return 0
  fi
  echo "PyTorch is missing: installing the CPU build torch==${TORCH_VERSION} (needed to read .pth files)"
  "${python}" -m pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX}"
}

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# Shell helpers shared by init_densenet_161.sh and init_bts_pretrained.sh (sourced, not run).
# Expects to be sourced from the repository root with `set -euo pipefail` active.

TORCH_VERSION="2.13.0"                                  # as in requirements-convert.txt
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"  # CPU-only wheels: no CUDA download
# Where models and downloads go (relative to the repository root unless absolute).
MODELS_DIR="${BTS_MODELS_DIR:-models}"
DOWNLOAD_DIR="${MODELS_DIR}/downloads"

# The Python picker (dataset_python) and the resumable download (fetch) are the dataset scripts'.
source tools/dataset_common.sh

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

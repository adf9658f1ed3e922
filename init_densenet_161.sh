#!/usr/bin/env bash
# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# ImageNet initialisation of the encoder (as the official PyTorch BTS, docs/design.md §1.10), for
# every official encoder: downloads torchvision's ImageNet weights (IMAGENET1K_V1, what
# `torchvision.models.<arch>(pretrained=True)` loads) from download.pytorch.org, checks the
# SHA-256 prefix that torchvision embeds in the file name, and converts them with
# `python -m tools.convert_torchvision_imagenet --encoder {arch}_bts` into the encoder weights
# file that training loads by default (--pretrained_model models/{arch}_imagenet/weights.h5):
#
#   ./init_densenet_161.sh                # → models/densenet161_imagenet/weights.h5
#   ./init_densenet_161.sh densenet121    # → models/densenet121_imagenet/weights.h5
#   ./init_densenet_161.sh resnext101     # → models/resnext101_imagenet/weights.h5
#                                         #   (train with --encoder resnext101_bts; the default
#                                         #    --pretrained_model then is that file)
#
# ARCH: densenet161 (default) densenet121 resnet50 resnet101 resnext50 (32x4d) resnext101 (32x8d)
# mobilenetv2. Idempotent (finished steps are skipped) and resumable (a partial download continues).
# Installs the CPU build of PyTorch into the Python environment only if it is missing.
# Environment: BTS_MODELS_DIR (default ./models), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")"
source tools/pretrained_common.sh

ARCH="${1:-densenet161}"
case "${ARCH}" in  # torchvision's file names: <arch>-<first hex digits of the file's SHA-256>.pth
  densenet161) FILE="densenet161-8d451a50.pth" ;;
  densenet121) FILE="densenet121-a639ec97.pth" ;;
  resnet50) FILE="resnet50-0676ba61.pth" ;;
  resnet101) FILE="resnet101-63fe2227.pth" ;;
  resnext50) FILE="resnext50_32x4d-7cdf4587.pth" ;;
  resnext101) FILE="resnext101_32x8d-8ba56ff5.pth" ;;
  mobilenetv2) FILE="mobilenet_v2-b0353104.pth" ;;
  *) echo "usage: $0 [densenet161|densenet121|resnet50|resnet101|resnext50|resnext101|mobilenetv2]" >&2
     exit 2 ;;
esac
URL="https://download.pytorch.org/models/${FILE}"
SOURCE="${DOWNLOAD_DIR}/${FILE}"
OUTPUT="${MODELS_DIR}/${ARCH}_imagenet/weights.h5"
PYTHON="$(dataset_python)"

fetch "${URL}" "${SOURCE}"

# torchvision names its files <arch>-<first 8 hex digits of the SHA-256>.pth
expected="${FILE##*-}"; expected="${expected%.pth}"
actual="$(sha256sum "${SOURCE}" | cut -c1-${#expected})"
if [[ "${actual}" != "${expected}" ]]; then
  echo "error: ${SOURCE} has SHA-256 prefix ${actual}, expected ${expected}; deleted it, run again" >&2
  rm -f "${SOURCE}" "${SOURCE}.sha256"
  exit 1
fi
echo "checksum ok: ${SOURCE} (sha256 ${actual}…)"

if [[ -f "${OUTPUT}" && "${OUTPUT}" -nt "${SOURCE}" ]]; then
  echo "already converted: ${OUTPUT}"
  exit 0
fi
ensure_torch "${PYTHON}"
"${PYTHON}" -m tools.convert_torchvision_imagenet --pytorch_checkpoint "${SOURCE}" \
  --encoder "${ARCH}_bts" --output_path "${OUTPUT}"

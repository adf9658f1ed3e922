#!/usr/bin/env bash
# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# Official pretrained BTS models (PyTorch model zoo, docs/design.md §6.5) converted to Keras:
#
#   ./init_bts_pretrained.sh nyu                 # → models/bts_nyu_v2_pytorch_densenet161/model.keras
#   ./init_bts_pretrained.sh eigen densenet121   # → models/bts_eigen_v2_pytorch_densenet121/model.keras
#
# Downloads bts_{nyu|eigen}_v2_pytorch_{encoder}.zip from the official S3 bucket (resumable),
# checks and unpacks the archive, and converts the checkpoint with
# `python -m tools.convert_pytorch_checkpoint` (strict mapping; eigen = KITTI, output × focal/715.0873).
# Idempotent: finished steps are skipped. Installs CPU PyTorch only if it is missing.
# Environment: BTS_MODELS_DIR (default ./models), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")"
source tools/pretrained_common.sh

usage() { echo "usage: $0 nyu|eigen [densenet161|densenet121]" >&2; exit 2; }
SPLIT="${1:-}"
ARCH="${2:-densenet161}"
case "${SPLIT}" in
  nyu) DATASET="nyu" ;;
  eigen) DATASET="kitti" ;;
  *) usage ;;
esac
case "${ARCH}" in
  densenet161|densenet121) ;;
  resnet50|resnet101|resnext50|resnext101)
    echo "error: the zoo has bts_${SPLIT}_v2_pytorch_${ARCH}, but bts-tf has no ${ARCH} encoder;" \
         "use densenet161 or densenet121" >&2
    exit 2 ;;
  *) usage ;;
esac
NAME="bts_${SPLIT}_v2_pytorch_${ARCH}"
URL="https://cogaplex-bts.s3.ap-northeast-2.amazonaws.com/${NAME}.zip"
ARCHIVE="${DOWNLOAD_DIR}/${NAME}.zip"
UNPACKED="${DOWNLOAD_DIR}/${NAME}"
OUTPUT="${MODELS_DIR}/${NAME}/model.keras"
PYTHON="$(dataset_python)"

fetch "${URL}" "${ARCHIVE}"
if [[ ! -d "${UNPACKED}" ]]; then
  if ! unzip -tq "${ARCHIVE}" >/dev/null; then
    echo "error: ${ARCHIVE} is damaged; deleted it, run again" >&2
    rm -f "${ARCHIVE}"
    exit 1
  fi
  rm -rf "${UNPACKED}.tmp"
  unzip -q "${ARCHIVE}" -d "${UNPACKED}.tmp"
  mv "${UNPACKED}.tmp" "${UNPACKED}"
fi

# The zoo archives hold the checkpoint as a file named `model`; otherwise take the largest
# non-source file.
SOURCE="$(find "${UNPACKED}" -type f -name model | head -n 1)"
if [[ -z "${SOURCE}" ]]; then
  SOURCE="$(find "${UNPACKED}" -type f ! -name '*.py' ! -name '*.txt' -printf '%s %p\n' \
            | sort -nr | head -n 1 | cut -d' ' -f2-)"
fi
if [[ -z "${SOURCE}" ]]; then
  echo "error: no checkpoint file found in ${UNPACKED}" >&2
  exit 1
fi

if [[ -f "${OUTPUT}" && "${OUTPUT}" -nt "${SOURCE}" ]]; then
  echo "already converted: ${OUTPUT}"
else
  ensure_torch "${PYTHON}"
  "${PYTHON}" -m tools.convert_pytorch_checkpoint --pytorch_checkpoint "${SOURCE}" \
    --encoder "${ARCH}_bts" --dataset "${DATASET}" --output_path "${OUTPUT}"
fi
echo "evaluate with: python bts_test.py arguments_test_${SPLIT}.txt --encoder ${ARCH}_bts" \
     "--model_name ${NAME} --checkpoint_path ${OUTPUT}"

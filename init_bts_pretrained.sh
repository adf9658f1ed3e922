#!/usr/bin/env bash
# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# Official pretrained BTS models (PyTorch model zoo, docs/design.md §6.5) converted to Keras, for
# every encoder of the zoo (densenet161, densenet121, resnet50, resnet101, resnext50 = 32x4d,
# resnext101 = 32x8d; 12 archives, NYU and KITTI Eigen):
#
#   ./init_bts_pretrained.sh nyu                 # → models/bts_nyu_v2_pytorch_densenet161/model.keras
#   ./init_bts_pretrained.sh eigen densenet121   # → models/bts_eigen_v2_pytorch_densenet121/model.keras
#   ./init_bts_pretrained.sh nyu resnext50       # → models/bts_nyu_v2_pytorch_resnext50/model.keras
#
# Downloads bts_{nyu|eigen}_v2_pytorch_{arch}.zip from the official S3 bucket (resumable),
# tests and unpacks the archive, and converts the checkpoint with
# `python -m tools.convert_pytorch_checkpoint --encoder {arch}_bts` (strict mapping; eigen = KITTI,
# output × focal/715.0873). Upstream publishes no checksums: the SHA-256 of the archive is recorded
# in models/downloads/<name>.zip.sha256 once it has passed the zip test, and later runs verify it
# (a mismatch deletes the archive). Idempotent: finished steps are skipped. The last line printed
# is the evaluation command. Installs CPU PyTorch only if it is missing.
# Environment: BTS_MODELS_DIR (default ./models), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")"
source tools/pretrained_common.sh

ARCHS="densenet161|densenet121|resnet50|resnet101|resnext50|resnext101"
usage() { echo "usage: $0 nyu|eigen [${ARCHS}]" >&2; exit 2; }
SPLIT="${1:-}"
ARCH="${2:-densenet161}"
case "${SPLIT}" in
  nyu) DATASET="nyu" ;;
  eigen) DATASET="kitti" ;;
  *) usage ;;
esac
case "${ARCH}" in
  densenet161|densenet121|resnet50|resnet101|resnext50|resnext101) ;;
  *) usage ;;
esac
NAME="bts_${SPLIT}_v2_pytorch_${ARCH}"
URL="https://cogaplex-bts.s3.ap-northeast-2.amazonaws.com/${NAME}.zip"
ARCHIVE="${DOWNLOAD_DIR}/${NAME}.zip"
RECORD="${ARCHIVE}.sha256"  # its SHA-256, recorded once it has passed the zip test
UNPACKED="${DOWNLOAD_DIR}/${NAME}"
OUTPUT="${MODELS_DIR}/${NAME}/model.keras"
PYTHON="$(dataset_python)"

# A cached archive whose SHA-256 was recorded must still have it (damaged or replaced otherwise);
# a missing one is downloaded, unless it was unpacked already.
if [[ -f "${ARCHIVE}" ]]; then
  if [[ -f "${RECORD}" ]]; then
    recorded="$(cut -d' ' -f1 < "${RECORD}")"
    actual="$(sha256sum "${ARCHIVE}" | cut -d' ' -f1)"
    if [[ "${actual}" != "${recorded}" ]]; then
      echo "error: ${ARCHIVE} has SHA-256 ${actual}, ${RECORD} recorded ${recorded};" \
           "deleted both, run again" >&2
      rm -f "${ARCHIVE}" "${RECORD}"
      exit 1
    fi
    echo "checksum ok: ${ARCHIVE} (as recorded in ${RECORD})"
  else
    echo "already downloaded: ${ARCHIVE}"
  fi
elif [[ ! -d "${UNPACKED}" ]]; then
  fetch "${URL}" "${ARCHIVE}"  # resumable; records the SHA-256 of the completed download
fi
if [[ ! -d "${UNPACKED}" ]]; then
  if ! unzip -tq "${ARCHIVE}" >/dev/null 2>&1; then
    echo "error: ${ARCHIVE} is damaged (zip test failed); deleted it, run again" >&2
    rm -f "${ARCHIVE}" "${RECORD}"
    exit 1
  fi
  rm -rf "${UNPACKED}.tmp"
  unzip -q "${ARCHIVE}" -d "${UNPACKED}.tmp"
  mv "${UNPACKED}.tmp" "${UNPACKED}"
fi
# Record the tested archive's SHA-256 (fetch already did for a download; a pre-placed archive too).
if [[ -f "${ARCHIVE}" && ! -f "${RECORD}" ]]; then
  (cd "$(dirname "${ARCHIVE}")" && sha256sum "$(basename "${ARCHIVE}")" > "$(basename "${RECORD}").tmp" \
     && mv "$(basename "${RECORD}").tmp" "$(basename "${RECORD}")")
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

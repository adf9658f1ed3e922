#!/usr/bin/env bash
# KITTI for the Eigen split, as upstream (docs/design.md §7.2): the annotated depth maps
# (data_depth_annotated.zip, train/ and val/ merged into dataset/kitti/data_depth_annotated/<drive>/,
# right-camera maps dropped) and the raw frames of every drive named in the Eigen lists (left colour
# camera image_02 only, plus calibration) under dataset/kitti/<date>/<drive>/.
# Usage: ./init_kitti_files.sh [LIST ...]   (default: train_test_inputs/eigen_{train,test}_files_with_gt.txt)
# Idempotent and resumable: downloads continue, archives are deleted once unpacked, done steps skip.
set -euo pipefail
cd "$(dirname "$0")"
source tools/dataset_common.sh
PY="$(dataset_python)"
KITTI="${DATASET_DIR}/kitti"
GT_URL="https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_annotated.zip"
LISTS=("$@")
if [[ ${#LISTS[@]} -eq 0 ]]; then
  fetch_list eigen_train_files_with_gt.txt
  fetch_list eigen_test_files_with_gt.txt
  LISTS=("${LISTS_DIR}/eigen_train_files_with_gt.txt" "${LISTS_DIR}/eigen_test_files_with_gt.txt")
fi
mkdir -p "${KITTI}/downloads"

# 1. annotated depth (ground truth)
if [[ ! -f "${KITTI}/data_depth_annotated/.complete" ]]; then
  fetch "${GT_URL}" "${KITTI}/downloads/data_depth_annotated.zip"
  mkdir -p "${KITTI}/data_depth_annotated"
  "${PY}" -m tools.kitti_setup unpack "${KITTI}/data_depth_annotated" \
    "${KITTI}/downloads/data_depth_annotated.zip"
  "${PY}" -m tools.kitti_setup merge "${KITTI}/data_depth_annotated"
  touch "${KITTI}/data_depth_annotated/.complete"
  rm -f "${KITTI}/downloads/data_depth_annotated.zip" "${KITTI}/downloads/data_depth_annotated.zip.sha256"
fi

# 2. raw frames of the drives in the lists
"${PY}" -m tools.kitti_setup urls "${KITTI}/downloads/archives.txt" "${LISTS[@]}"
while read -r url; do
  name="$(basename "${url}")"
  if [[ -f "${KITTI}/downloads/${name}.unpacked" ]]; then
    continue
  fi
  fetch "${url}" "${KITTI}/downloads/${name}"
  "${PY}" -m tools.kitti_setup unpack "${KITTI}" "${KITTI}/downloads/${name}"
  touch "${KITTI}/downloads/${name}.unpacked"
  rm -f "${KITTI}/downloads/${name}" "${KITTI}/downloads/${name}.sha256"
done < "${KITTI}/downloads/archives.txt"
echo "done: data path ${KITTI}/, gt path ${KITTI}/data_depth_annotated/"

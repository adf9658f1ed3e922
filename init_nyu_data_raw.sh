#!/usr/bin/env bash
# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# NYU Depth V2 training set from the raw Kinect dumps, as one archive (README "Datasets"; the path
# for when ./init_nyu_train_files.sh cannot get the authors' sync.zip): downloads
# nyu_depth_v2_raw.zip (428 GB) from the NYU server into dataset/nyu_depth_v2/downloads/
# (resumable, SHA-256 recorded and checked on re-runs), extracts the training scenes (upstream's
# train_scenes.txt) into dataset/nyu_depth_v2/raw/<scene>/ and deletes the archive. Then
#   python -m tools.nyu_raw    # -> dataset/nyu_depth_v2/sync/ and train_test_inputs/ list, no MATLAB
# ./init_nyu_data_raw_multiple.sh gets the same scenes as 43 smaller archives instead.
# Idempotent: a finished extraction is skipped, an interrupted download or extraction resumes.
# NYU_RAW_BASE_URL replaces the server (a mirror, or file:///DIR); NYU_RAW_NEED_GB the space check.
set -euo pipefail
cd "$(dirname "$0")"
source tools/dataset_common.sh
PY="$(dataset_python)"
NYU="${DATASET_DIR}/nyu_depth_v2"
BASE_URL="${NYU_RAW_BASE_URL:-http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2}"
ARCHIVE="nyu_depth_v2_raw.zip"
DONE="${NYU}/downloads/${ARCHIVE}.unpacked"
# Disk, estimated from the frame counts: the archive 428 GB, its training scenes unpacked ~260 GB,
# the converted frames ~15 GB (the archive is deleted once unpacked).
ARCHIVE_GB=428
UNPACKED_GB=260
SYNC_GB=15

# tools.nyu_raw resamples with scipy, an optional requirement: install it when missing.
"${PY}" -c "import scipy" 2>/dev/null || "${PY}" -m pip install --quiet -r requirements-mat.txt
if [[ -f "${DONE}" ]]; then
  echo "NYU raw training scenes already extracted in ${NYU}/raw"
else
  need=$(( UNPACKED_GB + SYNC_GB ))
  [[ -f "${NYU}/downloads/${ARCHIVE}" ]] || need=$(( need + ARCHIVE_GB ))
  require_free_gb "${NYU}" "${NYU_RAW_NEED_GB:-${need}}" \
    "the raw NYU set (archive ${ARCHIVE_GB} GB, training scenes ~${UNPACKED_GB} GB, frames ~${SYNC_GB} GB)"
  fetch "${BASE_URL}/${ARCHIVE}" "${NYU}/downloads/${ARCHIVE}"
  "${PY}" -m tools.nyu_raw --unpack "${NYU}/downloads/${ARCHIVE}" --raw_dir "${NYU}/raw"
  touch "${DONE}"
  rm -f "${NYU}/downloads/${ARCHIVE}"  # its .sha256 stays as the record of what was unpacked
fi
echo "done: raw scenes in ${NYU}/raw; convert them with: ${PY} -m tools.nyu_raw"

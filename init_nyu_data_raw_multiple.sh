#!/usr/bin/env bash
# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# NYU Depth V2 training set from the raw Kinect dumps, as segment archives (README "Datasets"):
# the 38 category archives of upstream's utils/nyudepthv2_archives_to_download.txt from the NYU
# server and the five scenes its README fetches from Google Drive (list: tools/nyu_raw_archives.txt),
# one at a time into dataset/nyu_depth_v2/downloads/ (resumable, SHA-256 recorded and checked on
# re-runs); the training scenes of each (upstream's train_scenes.txt) are extracted into
# dataset/nyu_depth_v2/raw/<scene>/ and the archive deleted. Then
#   python -m tools.nyu_raw    # -> dataset/nyu_depth_v2/sync/ and train_test_inputs/ list, no MATLAB
# ./init_nyu_data_raw.sh gets the same scenes as one 428 GB archive instead.
# Idempotent: unpacked archives are skipped, an interrupted download or extraction resumes.
# NYU_RAW_BASE_URL replaces the NYU server (a mirror, or file:///DIR); NYU_RAW_NEED_GB the space check.
set -euo pipefail
cd "$(dirname "$0")"
source tools/dataset_common.sh
PY="$(dataset_python)"
NYU="${DATASET_DIR}/nyu_depth_v2"
DOWNLOADS="${NYU}/downloads"
BASE_URL="${NYU_RAW_BASE_URL:-http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2}"
# Disk, estimated from the frame counts: the training scenes unpacked ~260 GB, one archive at a
# time (a few to ~25 GB each), the converted frames ~15 GB.
UNPACKED_GB=260
ARCHIVE_GB=25
SYNC_GB=15

mapfile -t ENTRIES < <(grep -v -e '^#' -e '^[[:space:]]*$' tools/nyu_raw_archives.txt)
remaining=0
for entry in "${ENTRIES[@]}"; do
  read -r name _ <<< "${entry}"
  [[ -f "${DOWNLOADS}/${name}.unpacked" ]] || remaining=$(( remaining + 1 ))
done
# tools.nyu_raw resamples with scipy, an optional requirement: install it when missing.
"${PY}" -c "import scipy" 2>/dev/null || "${PY}" -m pip install --quiet -r requirements-mat.txt
if (( remaining == 0 )); then
  echo "NYU raw training scenes already extracted in ${NYU}/raw"
else
  need=$(( UNPACKED_GB * remaining / ${#ENTRIES[@]} + ARCHIVE_GB + SYNC_GB ))
  require_free_gb "${NYU}" "${NYU_RAW_NEED_GB:-${need}}" \
    "the raw NYU set (${remaining} of ${#ENTRIES[@]} archives to go, training scenes ~${UNPACKED_GB} GB in all)"
  mkdir -p "${DOWNLOADS}"
  for entry in "${ENTRIES[@]}"; do
    read -r name source <<< "${entry}"
    [[ -f "${DOWNLOADS}/${name}.unpacked" ]] && continue
    case "${source:-}" in
      "") fetch "${BASE_URL}/${name}" "${DOWNLOADS}/${name}" ;;
      gdrive:*) fetch_gdrive "${source#gdrive:}" "${DOWNLOADS}/${name}" ;;
      *) echo "error: tools/nyu_raw_archives.txt: unknown source '${source}' for ${name}" >&2; exit 1 ;;
    esac
    "${PY}" -m tools.nyu_raw --unpack "${DOWNLOADS}/${name}" --raw_dir "${NYU}/raw"
    touch "${DOWNLOADS}/${name}.unpacked"
    rm -f "${DOWNLOADS}/${name}"  # its .sha256 stays as the record of what was unpacked
  done
fi
echo "done: raw scenes in ${NYU}/raw; convert them with: ${PY} -m tools.nyu_raw"

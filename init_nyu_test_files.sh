#!/usr/bin/env bash
# NYU Depth V2 official test set (654 frames) for evaluation, as upstream (docs/design.md §7.1):
#   1. download nyu_depth_v2_labeled.mat (2.8 GB) and the official split splits.mat (resumable);
#   2. extract both splits with `python -m tools.extract_official_train_test_set_from_mat` into
#      dataset/nyu_depth_v2/official_splits/{train,test}/<scene type>/ and write the test list
#      dataset/nyu_depth_v2/nyudepthv2_test_files_with_gt.txt.
# Idempotent: finished steps are skipped; an interrupted download or extraction resumes.
set -euo pipefail
cd "$(dirname "$0")"
source tools/dataset_common.sh
PY="$(dataset_python)"
NYU="${DATASET_DIR}/nyu_depth_v2"
MAT_URL="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS_URL="http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
DONE="${NYU}/official_splits/.complete"

# arguments_test_nyu.txt reads the list from ${LISTS_DIR}; the extraction writes upstream's order.
publish_list() {
  mkdir -p "${LISTS_DIR}"
  [[ -f "${LISTS_DIR}/nyudepthv2_test_files_with_gt.txt" ]] ||
    cp "${NYU}/nyudepthv2_test_files_with_gt.txt" "${LISTS_DIR}/nyudepthv2_test_files_with_gt.txt"
}
if [[ -f "${DONE}" ]]; then
  publish_list
  echo "NYU official splits already extracted in ${NYU}/official_splits"
  exit 0
fi
# The extraction reads splits.mat with scipy, an optional requirement: install it when missing.
"${PY}" -c "import scipy" 2>/dev/null || "${PY}" -m pip install --quiet -r requirements-mat.txt
fetch "${MAT_URL}" "${NYU}/nyu_depth_v2_labeled.mat"
fetch "${SPLITS_URL}" "${NYU}/splits.mat"
"${PY}" -m tools.extract_official_train_test_set_from_mat "${NYU}/nyu_depth_v2_labeled.mat" \
  "${NYU}/splits.mat" "${NYU}/official_splits" "${NYU}/nyudepthv2_test_files_with_gt.txt"
touch "${DONE}"
publish_list
echo "done: data/gt path ${NYU}/official_splits/test/, list ${NYU}/nyudepthv2_test_files_with_gt.txt"

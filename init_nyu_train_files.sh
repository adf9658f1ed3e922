#!/usr/bin/env bash
# NYU Depth V2 training set: the BTS authors' preprocessed "sync" frames (~24k pairs, docs/design.md §7.1),
# Google-Drive file 1AysroWpfISmm-yRFGBgFTrLy6FjQwvwP -> dataset/nyu_depth_v2/sync.zip, unzipped to
# dataset/nyu_depth_v2/sync/<scene>/{rgb,sync_depth}_XXXXX.{jpg,png}.
# Idempotent and resumable (the download continues where it stopped; unzip skips existing files).
set -euo pipefail
cd "$(dirname "$0")"
source tools/dataset_common.sh
PY="$(dataset_python)"
NYU="${DATASET_DIR}/nyu_depth_v2"
SYNC_ID="1AysroWpfISmm-yRFGBgFTrLy6FjQwvwP"
DONE="${NYU}/sync/.complete"

fetch_list nyudepthv2_train_files_with_gt.txt
if [[ -f "${DONE}" ]]; then
  echo "NYU training frames already in ${NYU}/sync"
  exit 0
fi
mkdir -p "${NYU}"
"${PY}" -m tools.download_from_gdrive "${SYNC_ID}" "${NYU}/sync.zip"
if [[ ! -f "${NYU}/sync.zip.sha256" ]]; then
  (cd "${NYU}" && sha256sum sync.zip > sync.zip.sha256)
else
  (cd "${NYU}" && sha256sum --quiet -c sync.zip.sha256)
fi
echo "unpacking ${NYU}/sync.zip"
"${PY}" - "${NYU}/sync.zip" "${NYU}" <<'PYEOF'
import os, sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as zf:
    for info in zf.infolist():
        target = os.path.join(dest, info.filename)
        if info.is_dir() or (os.path.isfile(target) and os.path.getsize(target) == info.file_size):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target + ".part", "wb") as dst:
            dst.write(src.read())
        os.replace(target + ".part", target)
PYEOF
touch "${DONE}"
echo "done: data/gt path ${NYU}/sync/ (list: ${LISTS_DIR}/nyudepthv2_train_files_with_gt.txt)"

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
# Shell helpers shared by the init_nyu_*.sh and init_kitti_files.sh dataset scripts
# (sourced from the repository root with `set -euo pipefail` active).

# Where datasets go (relative to the repository root unless absolute).
DATASET_DIR="${BTS_DATASET_DIR:-dataset}"
# Where the filename lists go (the argument files read train_test_inputs/*.txt).
LISTS_DIR="${BTS_LISTS_DIR:-train_test_inputs}"
# Upstream's lists (train_test_inputs/ of the official repository), fetched when missing.
LISTS_URL="https://raw.githubusercontent.com/cleinc/bts/master/train_test_inputs"

# The Python to use: $PYTHON, else the project venv, else python3 on PATH.
dataset_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    echo "${PYTHON}"
  elif [[ -x ".venv/bin/python" ]]; then
    echo ".venv/bin/python"
  else
    echo "python3"
  fi
}

# fetch URL DEST: resumable download (wget -c / curl -C -) into DEST.part, renamed when complete.
# Upstream publishes no checksums for these files, so the first complete download records its
# SHA-256 in DEST.sha256 and later runs verify the cached file against it (a truncated or damaged
# file is then reported instead of being unpacked).
fetch() {
  local url="$1" dest="$2"
  if [[ -f "${dest}" ]]; then
    if [[ -f "${dest}.sha256" ]]; then
      (cd "$(dirname "${dest}")" && sha256sum --quiet -c "$(basename "${dest}").sha256") || {
        echo "error: ${dest} does not match ${dest}.sha256; delete both and re-run" >&2
        return 1
      }
    fi
    echo "already downloaded: ${dest}"
    return 0
  fi
  mkdir -p "$(dirname "${dest}")"
  echo "downloading ${url}"
  if [[ "${url}" == file://* ]]; then  # a local mirror or test fixture (wget has no file://)
    cp "${url#file://}" "${dest}.part"
  elif command -v wget >/dev/null 2>&1; then
    wget -c -O "${dest}.part" "${url}"
  elif command -v curl >/dev/null 2>&1; then
    curl -fL -C - -o "${dest}.part" "${url}"
  else
    echo "error: neither wget nor curl is installed" >&2
    return 1
  fi
  mv "${dest}.part" "${dest}"
  (cd "$(dirname "${dest}")" && sha256sum "$(basename "${dest}")" > "$(basename "${dest}").sha256")
}

# fetch_list NAME: upstream's filename list NAME into ${LISTS_DIR}/NAME unless it is there already.
fetch_list() {
  local name="$1"
  [[ -f "${LISTS_DIR}/${name}" ]] && return 0
  fetch "${LISTS_URL}/${name}" "${LISTS_DIR}/${name}"
}

# fetch_gdrive FILE_ID DEST: fetch's contract (resumable, SHA-256 recorded on the first complete
# download and verified afterwards) for a public Google-Drive file.
fetch_gdrive() {
  local id="$1" dest="$2"
  if [[ -f "${dest}" && -f "${dest}.sha256" ]]; then
    (cd "$(dirname "${dest}")" && sha256sum --quiet -c "$(basename "${dest}").sha256") || {
      echo "error: ${dest} does not match ${dest}.sha256; delete both and re-run" >&2
      return 1
    }
    echo "already downloaded: ${dest}"
    return 0
  fi
  [[ -f "${dest}" ]] || "$(dataset_python)" -m tools.download_from_gdrive "${id}" "${dest}"
  (cd "$(dirname "${dest}")" && sha256sum "$(basename "${dest}")" > "$(basename "${dest}").sha256")
}

# require_free_gb DIR GB WHAT: stop with one clear line unless DIR's file system has GB GB free
# (DIR need not exist yet: its nearest existing parent is measured).
require_free_gb() {
  local dir="$1" need="$2" what="$3" probe free_kb free_gb
  probe="${dir}"
  while [[ ! -d "${probe}" ]]; do probe="$(dirname "${probe}")"; done
  free_kb="$(df -Pk "${probe}" | awk 'NR == 2 {print $4}')"
  free_gb=$(( free_kb / 976563 ))  # 1 GB = 10^9 bytes
  if (( free_gb < need )); then
    echo "error: ${what} needs about ${need} GB free in ${dir}, but its disk has ${free_gb} GB;" \
      "free some space or set BTS_DATASET_DIR to a larger disk" >&2
    return 1
  fi
}

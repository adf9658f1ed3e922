# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""KITTI set-up steps after the downloads (design §7.2), used by ``init_kitti_files.sh``.

    python -m tools.kitti_setup urls OUT_FILE LIST [LIST ...]   archive URLs for the drives of the lists
    python -m tools.kitti_setup unpack DEST ZIP [ZIP ...]       extract image_02 frames / maps, calibration
    python -m tools.kitti_setup merge GT_ROOT                   train/ + val/ -> GT_ROOT/<drive>/

The raw-data archive list is derived from the Eigen filenames files themselves (every drive a
list names, plus the calibration archive of each date), instead of a hand-kept URL file. Unpacking
keeps only the left colour camera (``image_02``) and the calibration files, as upstream, and skips
files already extracted with the right size, so it is idempotent and resumable. The same unpacking
serves the annotated-depth archive (its ``image_02`` maps kept, ``image_03`` dropped) and the
raw-data archives.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import zipfile
from typing import Iterable, List, Optional, Sequence, Set, Tuple

log = logging.getLogger(__name__)

RAW_DATA_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data"
ANNOTATED_DEPTH_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_annotated.zip"
KEEP_CAMERA = "image_02"


def drives_in_lists(list_paths: Iterable[str]) -> Set[Tuple[str, str]]:
    """(date, drive) pairs named by the RGB column of Eigen filenames files."""
    drives = set()
    for path in list_paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                parts = line.split()[0].lstrip("/").split("/")
                if len(parts) < 2 or not parts[1].endswith("_sync"):
                    raise SystemExit(f"error: {path} line {number}: expected 'DATE/DRIVE_sync/...', "
                                     f"got {line.split()[0]!r}")
                drives.add((parts[0], parts[1]))
    return drives


def archive_urls(drives: Iterable[Tuple[str, str]]) -> List[str]:
    """Calibration archive per date, then one archive per drive (KITTI raw-data URL scheme)."""
    drives = sorted(set(drives))
    dates = sorted({date for date, _ in drives})
    urls = [f"{RAW_DATA_URL}/{date}_calib.zip" for date in dates]
    for _, drive in drives:
        name = drive[: -len("_sync")]
        urls.append(f"{RAW_DATA_URL}/{name}/{drive}.zip")
    return urls


def _wanted(member: str) -> bool:
    """Frames of the kept camera, and calibration text files."""
    parts = member.split("/")
    if member.endswith("/"):
        return False
    return KEEP_CAMERA in parts or (member.endswith(".txt") and "calib" in member)


def unpack_archive(zip_path: str, dest: str) -> int:
    """Extract the wanted members of one raw-data archive into ``dest``; returns files written."""
    written = 0
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as err:
        raise SystemExit(f"error: {zip_path}: not a readable zip archive ({err}); delete it and re-run")
    with archive:
        for info in archive.infolist():
            if not _wanted(info.filename):
                continue
            target = os.path.join(dest, info.filename)
            if os.path.isfile(target) and os.path.getsize(target) == info.file_size:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(target + ".part", target)
            written += 1
    return written


def merge_annotated_depth(gt_root: str) -> int:
    """Move ``gt_root/{train,val}/<drive>`` to ``gt_root/<drive>`` and drop ``image_03`` maps.

    Returns the number of drives moved. Idempotent: an already merged tree is left as it is.
    """
    moved = 0
    for split in ("train", "val"):
        split_dir = os.path.join(gt_root, split)
        if not os.path.isdir(split_dir):
            continue
        for drive in sorted(os.listdir(split_dir)):
            source = os.path.join(split_dir, drive)
            target = os.path.join(gt_root, drive)
            right = os.path.join(source, "proj_depth", "groundtruth", "image_03")
            if os.path.isdir(right):
                shutil.rmtree(right)
            if os.path.exists(target):
                shutil.rmtree(source)  # merged by an earlier run
            else:
                os.replace(source, target)
                moved += 1
        os.rmdir(split_dir)
    return moved


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "urls" and len(rest) >= 2:
        urls = archive_urls(drives_in_lists(rest[1:]))
        with open(rest[0] + ".part", "w", encoding="utf-8") as handle:  # local file, no TF start-up
            handle.write("\n".join(urls) + "\n")
        os.replace(rest[0] + ".part", rest[0])
        print(f"{len(urls)} archive URLs -> {rest[0]}")
    elif command == "unpack" and len(rest) >= 2:
        total = sum(unpack_archive(path, rest[0]) for path in rest[1:])
        print(f"extracted {total} files from {len(rest) - 1} archive(s) into {rest[0]}")
    elif command == "merge" and len(rest) == 1:
        print(f"merged {merge_annotated_depth(rest[0])} drive folders into {rest[0]}")
    else:
        raise SystemExit(__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main()

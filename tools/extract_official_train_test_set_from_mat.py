# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Extract the official NYU Depth V2 train/test split from ``nyu_depth_v2_labeled.mat`` (design §7.1).

    python -m tools.extract_official_train_test_set_from_mat nyu_depth_v2_labeled.mat splits.mat OUT
           [TEST_LIST]

Reads, with h5py (the labeled file is MATLAB v7.3 = HDF5): ``images`` (N, 3, 640, 480) uint8,
``rawDepths`` (N, 640, 480) metres (the raw depth, not the in-painted ``depths``) and
``sceneTypes`` (references to char arrays); and, with scipy, the official split ``trainNdxs`` /
``testNdxs`` (1-based, 795 / 654). Image ``i`` (0-based) of split S and scene type T becomes

    OUT/S/T/rgb_{i:05d}.jpg          only rows 7..473, columns 7..631 copied, the rest black
    OUT/S/T/sync_depth_{i:05d}.png   uint16 millimetres (rounded; 0 = no depth)

as the upstream extraction, so evaluation crops and the test list
(``bathroom/rgb_00045.jpg bathroom/sync_depth_00045.png 518.8579``) apply unchanged. The optional
TEST_LIST is written in that format, in index order. Existing complete files are kept, so a
re-run after an interruption only writes what is missing.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from tqdm import tqdm

from utils.datasets import get_dataset_facts
from utils.image_io import encode_image, ground_truth_to_uint16
from utils.optional import require

log = logging.getLogger(__name__)

# The valid RGB window of the labeled frames (numpy [7:474, 7:632]); outside it is set to black.
RGB_VALID_BOX = (7, 474, 7, 632)
JPEG_QUALITY = 95


def read_split(splits_path: str) -> Tuple[Set[int], Set[int]]:
    """1-based train and test indexes of the official split file."""
    import scipy.io

    try:
        split = scipy.io.loadmat(splits_path)
        train = {int(i) for i in np.asarray(split["trainNdxs"]).ravel()}
        test = {int(i) for i in np.asarray(split["testNdxs"]).ravel()}
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"error: {splits_path}: not an NYU split file with trainNdxs/testNdxs ({err})")
    if train & test:
        raise SystemExit(f"error: {splits_path}: {len(train & test)} indexes are in both splits")
    return train, test


def read_scene_types(mat) -> List[str]:
    """Scene type name of every frame, from the ``sceneTypes`` cell array of references."""
    refs = np.asarray(mat["sceneTypes"]).ravel()
    return ["".join(chr(c) for c in np.asarray(mat[ref]).ravel()) for ref in refs]


def frame_rgb(images, index: int) -> np.ndarray:
    """(480, 640, 3) uint8 of frame ``index``, black outside ``RGB_VALID_BOX``."""
    rgb = np.asarray(images[index]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
    top, bottom, left, right = RGB_VALID_BOX
    framed = np.zeros_like(rgb)
    framed[top:bottom, left:right] = rgb[top:bottom, left:right]
    return framed


def frame_depth_mm(raw_depths, index: int) -> np.ndarray:
    """(480, 640) uint16 millimetres of frame ``index``."""
    depth_m = np.asarray(raw_depths[index], np.float64).T  # (W, H) -> (H, W)
    return ground_truth_to_uint16(depth_m, get_dataset_facts("nyu").depth_scale)


def _save(image: np.ndarray, path: str, **kwargs) -> None:
    """Local write through a ``.part`` file (no TensorFlow start-up for plain files)."""
    with open(f"{path}.part", "wb") as handle:
        handle.write(encode_image(image, path, **kwargs))
    os.replace(f"{path}.part", path)


def extract(mat_path: str, splits_path: str, output_dir: str,
            test_list: Optional[str] = None) -> Dict[str, int]:
    """Write both splits under ``output_dir``; returns the number of frames per split."""
    import h5py

    train, test = read_split(splits_path)
    focal = get_dataset_facts("nyu").default_focal
    counts = {"train": 0, "test": 0}
    lines = []
    try:
        mat = h5py.File(mat_path, "r")
    except OSError as err:
        raise SystemExit(f"error: {mat_path}: cannot open as a MATLAB v7.3 (HDF5) file ({err})")
    with mat:
        for key in ("images", "rawDepths", "sceneTypes"):
            if key not in mat:
                raise SystemExit(f"error: {mat_path}: no '{key}' variable (not nyu_depth_v2_labeled.mat?)")
        images, raw_depths = mat["images"], mat["rawDepths"]
        scene_types = read_scene_types(mat)
        for i in tqdm(range(images.shape[0]), desc="extracting", unit="frame"):
            split = "train" if i + 1 in train else "test" if i + 1 in test else None
            if split is None:
                continue
            folder = os.path.join(output_dir, split, scene_types[i])
            os.makedirs(folder, exist_ok=True)
            rgb_path = os.path.join(folder, f"rgb_{i:05d}.jpg")
            depth_path = os.path.join(folder, f"sync_depth_{i:05d}.png")
            if not os.path.exists(rgb_path):
                _save(frame_rgb(images, i), rgb_path, quality=JPEG_QUALITY)
            if not os.path.exists(depth_path):
                _save(frame_depth_mm(raw_depths, i), depth_path)
            counts[split] += 1
            if split == "test":
                t = scene_types[i]
                lines.append(f"{t}/rgb_{i:05d}.jpg {t}/sync_depth_{i:05d}.png {focal}")
    if test_list:
        with open(test_list + ".part", "w", encoding="utf-8") as handle:  # local, no TF start-up
            handle.write("\n".join(lines) + "\n")
        os.replace(test_list + ".part", test_list)
    log.info("extracted %d train and %d test frames to %s", counts["train"], counts["test"], output_dir)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
    require("scipy", "requirements-mat.txt", "extract_official_train_test_set_from_mat.py")
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) not in (3, 4) or any(a.startswith("-") for a in argv):
        raise SystemExit("usage: python -m tools.extract_official_train_test_set_from_mat "
                         "nyu_depth_v2_labeled.mat splits.mat OUTPUT_DIR [TEST_LIST]")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = extract(*argv)
    print(f"train: {counts['train']} frames, test: {counts['test']} frames -> {argv[2]}")
    return counts


if __name__ == "__main__":
    main()

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Where predictions and ground truth live: the upstream file-name conventions.

``bts_test.py`` names each raw prediction PNG after its filenames-file line, and the official
offline evaluator (``tools/eval_with_pngs.py``) walks those PNGs and maps every name back to its
ground-truth file. Both sides of that convention are here, so they cannot drift apart:

* NYU ``bathroom/rgb_00045.jpg`` → ``bathroom_rgb_00045.png`` → ``{gt}/bathroom/sync_depth_00045.png``
* KITTI ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png`` →
  ``2011_09_26_drive_0002_sync_0000000069.png`` →
  ``{gt}/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png``
"""
from __future__ import annotations

import fnmatch
import os
from typing import List, Tuple

SKIPPED_NAME_PARTS = ("cmap", "gt")  # visualisations and GT copies written next to predictions


def upstream_output_name(list_column: str, dataset: str) -> str:
    """Upstream raw-PNG name (without extension) for an RGB path of a filenames file.

    NYU ``bathroom/rgb_00045.jpg`` → ``bathroom_rgb_00045``; KITTI
    ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png`` →
    ``2011_09_26_drive_0002_sync_0000000069``.
    """
    parts = [p for p in list_column.replace("\\", "/").split("/") if p not in ("", ".")]
    stem = os.path.splitext(parts[-1])[0]
    if dataset == "kitti":
        return f"{parts[1]}_{stem}" if len(parts) > 2 else stem
    return f"{parts[-2]}_{stem}" if len(parts) > 1 else stem


def find_prediction_pngs(pred_path: str) -> List[Tuple[str, str]]:
    """(official name, file path) of every prediction PNG under ``pred_path``, in the official
    walk order (names containing ``SKIPPED_NAME_PARTS`` skipped); the name is what
    :func:`gt_path_for` reads (flat folders: the file name)."""
    import tensorflow as tf

    walk = tf.io.gfile.walk if "://" in pred_path else os.walk
    found = []
    for root, _, filenames in walk(pred_path):
        for filename in fnmatch.filter(filenames, "*.png"):
            if any(part in filename for part in SKIPPED_NAME_PARTS):
                continue
            found.append((os.path.join(root.replace(pred_path, ""), filename),
                          os.path.join(root, filename)))
    return found


def gt_path_for(pred_name: str, gt_root: str, dataset: str) -> str:
    """The ground-truth PNG a prediction name designates (the official name mapping)."""
    stem = pred_name.split(".")[0]
    frame = stem.split("_")[-1]
    if dataset == "kitti":
        drive = stem.replace("_" + frame, "")
        return os.path.join(gt_root, drive, "proj_depth/groundtruth/image_02", frame + ".png")
    scene = stem.replace("_rgb_" + frame, "")
    return os.path.join(gt_root, scene, "sync_depth_" + frame + ".png")

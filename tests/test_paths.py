# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""utils.paths: prediction names ↔ ground-truth paths, and the official walk of prediction PNGs."""
import os

from utils import paths


def test_upstream_output_names_map_back_to_ground_truth():
    name = paths.upstream_output_name("living_room/rgb_00100.jpg", "nyu")
    assert name == "living_room_rgb_00100"
    assert paths.gt_path_for(name + ".png", "G", "nyu") == "G/living_room/sync_depth_00100.png"
    column = "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    name = paths.upstream_output_name(column, "kitti")
    assert name == "2011_09_26_drive_0002_sync_0000000069"
    assert paths.gt_path_for(name + ".png", "G", "kitti") == (
        "G/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png")
    assert paths.upstream_output_name("/kitchen_0028b/rgb_00045.jpg", "nyu") == "kitchen_0028b_rgb_00045"


def test_prediction_walk_skips_visualisations_and_names_nested_files_by_relative_path(tmp_path):
    for name in ("a_rgb_00001.png", "a_rgb_00001_cmap.png", "gt_copy.png", "notes.txt",
                 os.path.join("sub", "b_rgb_00002.png")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = paths.find_prediction_pngs(str(tmp_path))
    assert sorted(name for name, _ in found) == ["/sub/b_rgb_00002.png", "a_rgb_00001.png"]
    assert all(os.path.isfile(path) and path.endswith(name.lstrip("/")) for name, path in found)

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""tools.synthetic_data: exact planar depth, upstream layouts and lists, determinism."""
import hashlib
import os

import numpy as np
import pytest

import bts_dataloader as dl
from tools import synthetic_data as sd
from utils import image_io


def world_points_from_depth(scene, depth):
    """Back-project depth (z in the camera) with the pinhole model, then rotate into the world."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    cam = np.stack([(u - scene.cx) / scene.focal * depth, (v - scene.cy) / scene.focal * depth, depth], -1)
    return cam @ scene.rotation.T


@pytest.mark.parametrize("dataset", ["nyu", "kitti"])
def test_rendered_depth_lies_on_the_planes_of_the_scene(dataset):
    frame = sd.render_frame(dataset, 60, 80, (11, 0, 2))
    scene, depth, surface = frame["scene"], frame["depth"], frame["surface"]
    points = world_points_from_depth(scene, depth)
    checked = 0
    for sid in np.unique(surface[depth > 0]):
        normal, offset = sd.surface_plane(scene, int(sid))
        mask = (surface == sid) & (depth > 0)
        np.testing.assert_allclose(points[mask] @ normal, offset, atol=1e-9)
        checked += mask.sum()
    assert checked == (depth > 0).sum() > 0.5 * depth.size
    assert depth.max() <= (10.0 if dataset == "nyu" else 80.0)


def test_floor_depth_matches_the_closed_form_for_a_level_camera():
    cam_height, focal = 1.5, 100.0
    room = sd.Box((-3.0, cam_height - 3.0, -1.0), (3.0, cam_height, 50.0))
    scene = sd.Scene(focal, 40.0, 30.0, np.eye(3), room, (), (), np.full((6, 3), 0.5), np.ones(6))
    depth, surface, _ = sd.trace(scene, 60, 80)
    v = 55  # a row below the horizon that sees the floor (surface 3: y hi)
    assert surface[v, 40] == 3
    assert depth[v, 40] == pytest.approx(cam_height * focal / (v - 30.0), rel=1e-12)


def test_nyu_layout_lists_and_depth_png_in_millimetres(tmp_path):
    paths = sd.generate_dataset("nyu", str(tmp_path), num_train=5, num_test=3, height=48, width=64, seed=1)
    train = open(paths["train_filenames"]).read().splitlines()
    assert len(train) == 5 and train[0].startswith("/bathroom_0000/rgb_00000.jpg /bathroom_0000/sync_depth_00000.png ")
    assert float(train[0].split()[2]) == pytest.approx(518.8579 * 64 / 640, abs=1e-4)
    test = open(paths["test_filenames"]).read().splitlines()
    assert test[1].split()[:2] == ["bedroom/rgb_00001.jpg", "bedroom/sync_depth_00001.png"]
    assert os.path.isfile(os.path.join(paths["data_path_eval"], "bedroom", "rgb_00001.jpg"))
    samples = dl.read_filenames_file(paths["train_filenames"], paths["data_path"], paths["gt_path"])
    depth = image_io.read_depth_png(samples[0].depth_path, image_io.depth_scale("nyu"))
    rendered = sd.render_frame("nyu", 48, 64, (1, 0, 0))["depth"]
    np.testing.assert_allclose(depth, rendered, atol=0.5e-3 + 1e-6)  # rounded to the millimetre
    assert image_io.load_image(samples[0].rgb_path).shape == (48, 64, 3)


def test_real_size_nyu_list_carries_the_upstream_focal(tmp_path):
    paths = sd.generate_dataset("nyu", str(tmp_path), num_train=1, num_test=0, height=480, width=640, seed=0)
    assert open(paths["train_filenames"]).read().split()[2] == "518.8579"


def test_kitti_layout_sparse_ground_truth_and_frames_without_it(tmp_path):
    paths = sd.generate_dataset("kitti", str(tmp_path), num_train=6, num_test=4, height=40, width=120, seed=2)
    test = [line.split() for line in open(paths["test_filenames"]).read().splitlines()]
    assert [cols[1] == "None" for cols in test] == [False, False, False, True]
    train = [line.split() for line in open(paths["train_filenames"]).read().splitlines()]
    date = train[0][0].split("/")[0]
    assert train[0][0] == f"{date}/{date}_drive_0001_sync/image_02/data/0000000000.png"
    assert train[0][1] == f"{date}_drive_0001_sync/proj_depth/groundtruth/image_02/0000000000.png"
    assert float(train[0][2]) == pytest.approx(sd.KITTI_FOCALS[date] * 120 / 1242, abs=1e-4)
    samples = dl.read_filenames_file(paths["train_filenames"], paths["data_path"], paths["gt_path"])
    depth = image_io.read_depth_png(samples[0].depth_path, image_io.depth_scale("kitti"))
    dense = sd.render_frame("kitti", 40, 120, (2, 3, 0), sd.KITTI_FOCALS[date])["depth"]
    valid = depth > 0
    assert 0.05 < valid.mean() < 0.4 and not valid[:12].any()  # sparse, nothing in the top rows
    np.testing.assert_allclose(depth[valid], dense[valid], atol=0.5 / 256 + 1e-6)  # x256 units


def _digest(folder):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(root, name), "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def test_generation_is_deterministic_per_seed(tmp_path):
    runs = [sd.generate_dataset("nyu", str(tmp_path / name), 3, 1, 32, 40, seed=seed)
            for name, seed in (("a", 4), ("b", 4), ("c", 5))]
    a, b, c = (_digest(r["root"]) for r in runs)
    assert a == b != c


def test_cli_writes_the_dataset(tmp_path, capsys):
    sd.main(["--dataset", "kitti", "--output", str(tmp_path), "--num_train", "2", "--num_test", "1",
             "--height", "24", "--width", "48", "--seed", "0"])
    assert "train_filenames" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "eigen_train_files_with_gt.txt")

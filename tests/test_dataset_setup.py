# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Dataset set-up steps on tiny fixtures: NYU .mat extraction, KITTI unpacking, the init scripts."""
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from tools import extract_official_train_test_set_from_mat as nyu_mat
from tools import kitti_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = ["bathroom", "kitchen", "bathroom", "office", "kitchen"]


def write_labeled_mat(path, num=5, seed=0):
    """A MATLAB v7.3-style file with the layout of nyu_depth_v2_labeled.mat (HDF5, transposed)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num, 480, 640, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (num, 480, 640)).astype(np.float32)
    depths[:, :10, :10] = 0.0
    with h5py.File(path, "w") as mat:
        mat["images"] = images.transpose(0, 3, 2, 1)  # MATLAB 480x640x3xN -> (N, 3, 640, 480)
        mat["rawDepths"] = depths.transpose(0, 2, 1)
        refs = mat.create_group("#refs#")
        handles = []
        for k, name in enumerate(SCENES[:num]):
            chars = np.array([ord(c) for c in name], np.uint16)[:, None]
            handles.append(refs.create_dataset(f"s{k}", data=chars).ref)
        mat.create_dataset("sceneTypes", data=np.array([handles], dtype=h5py.ref_dtype))
    return images, depths


def write_splits(path):
    scipy.io.savemat(path, {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2], [4], [5]])})


def test_mat_extraction_writes_the_official_layout_with_framed_rgb_and_mm_depth(tmp_path):
    images, depths = write_labeled_mat(tmp_path / "labeled.mat")
    write_splits(tmp_path / "splits.mat")
    out = tmp_path / "official_splits"
    counts = nyu_mat.extract(str(tmp_path / "labeled.mat"), str(tmp_path / "splits.mat"), str(out),
                             str(tmp_path / "test_list.txt"))
    assert counts == {"train": 2, "test": 3}
    assert (out / "train" / "bathroom" / "rgb_00000.jpg").is_file()  # index 0 = MATLAB index 1
    assert (out / "train" / "bathroom" / "rgb_00002.jpg").is_file()
    assert sorted(os.listdir(out / "test")) == ["kitchen", "office"]
    lines = (tmp_path / "test_list.txt").read_text().splitlines()
    assert lines == ["kitchen/rgb_00001.jpg kitchen/sync_depth_00001.png 518.8579",
                     "office/rgb_00003.jpg office/sync_depth_00003.png 518.8579",
                     "kitchen/rgb_00004.jpg kitchen/sync_depth_00004.png 518.8579"]
    depth = np.asarray(Image.open(out / "test" / "office" / "sync_depth_00003.png"))
    assert depth.dtype == np.uint16
    np.testing.assert_array_equal(depth, np.round(depths[3].astype(np.float64) * 1000).astype(np.uint16))
    rgb = np.asarray(Image.open(out / "test" / "office" / "rgb_00003.jpg")).astype(int)
    for border in (rgb[:7], rgb[474:], rgb[:, :7], rgb[:, 632:]):  # black up to JPEG ringing
        assert border.mean() < 12
    with h5py.File(tmp_path / "labeled.mat", "r") as mat:  # the frame before JPEG, exactly
        framed = nyu_mat.frame_rgb(mat["images"], 3)
    expected = np.zeros_like(images[3])
    expected[7:474, 7:632] = images[3][7:474, 7:632]
    np.testing.assert_array_equal(framed, expected)
    inner = rgb[20:460, 20:620]
    assert np.abs(inner.mean() - images[3][20:460, 20:620].mean()) < 2.0  # same content (JPEG)


def test_mat_extraction_rerun_keeps_finished_files(tmp_path):
    write_labeled_mat(tmp_path / "labeled.mat", num=3)
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[2], [3]])})
    args = [str(tmp_path / "labeled.mat"), str(tmp_path / "splits.mat"), str(tmp_path / "out")]
    nyu_mat.main(args)
    target = tmp_path / "out" / "test" / "kitchen" / "rgb_00001.jpg"
    os.utime(target, (1, 1))
    nyu_mat.main(args)
    assert os.path.getmtime(target) == 1


def test_mat_extraction_rejects_a_wrong_file_in_one_line(tmp_path):
    with h5py.File(tmp_path / "other.mat", "w") as mat:
        mat["depths"] = np.zeros((1, 4, 4))
    write_splits(tmp_path / "splits.mat")
    with pytest.raises(SystemExit, match="no 'images' variable"):
        nyu_mat.extract(str(tmp_path / "other.mat"), str(tmp_path / "splits.mat"), str(tmp_path / "o"))
    with pytest.raises(SystemExit, match="usage:"):
        nyu_mat.main(["only_one_argument"])


def test_kitti_archive_urls_come_from_the_drives_of_the_lists(tmp_path):
    listing = tmp_path / "eigen.txt"
    listing.write_text(
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png "
        "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377\n"
        "2011_10_03/2011_10_03_drive_0047_sync/image_02/data/0000000001.png None 718.856\n"
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000070.png None 721.5377\n")
    urls = kitti_setup.archive_urls(kitti_setup.drives_in_lists([str(listing)]))
    base = kitti_setup.RAW_DATA_URL
    assert urls == [f"{base}/2011_09_26_calib.zip", f"{base}/2011_10_03_calib.zip",
                    f"{base}/2011_09_26_drive_0002/2011_09_26_drive_0002_sync.zip",
                    f"{base}/2011_10_03_drive_0047/2011_10_03_drive_0047_sync.zip"]


def make_drive_zip(path, drive="2011_09_26_drive_0002_sync"):
    with zipfile.ZipFile(path, "w") as zf:
        for cam in ("image_00", "image_02", "image_03"):
            zf.writestr(f"2011_09_26/{drive}/{cam}/data/0000000000.png", cam.encode())
        zf.writestr(f"2011_09_26/{drive}/velodyne_points/data/0000000000.bin", b"v")
        zf.writestr("2011_09_26/calib_cam_to_cam.txt", b"calib")


def test_kitti_unpack_keeps_left_colour_camera_and_calibration_idempotently(tmp_path):
    make_drive_zip(tmp_path / "drive.zip")
    dest = tmp_path / "kitti"
    assert kitti_setup.unpack_archive(str(tmp_path / "drive.zip"), str(dest)) == 2
    found = sorted(os.path.relpath(os.path.join(r, f), dest) for r, _, fs in os.walk(dest) for f in fs)
    assert found == ["2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000000.png",
                     "2011_09_26/calib_cam_to_cam.txt"]
    assert kitti_setup.unpack_archive(str(tmp_path / "drive.zip"), str(dest)) == 0


def test_kitti_merge_moves_train_and_val_drives_and_drops_right_camera(tmp_path):
    for split, drive in (("train", "d1_sync"), ("val", "d2_sync")):
        for cam in ("image_02", "image_03"):
            folder = tmp_path / split / drive / "proj_depth" / "groundtruth" / cam
            folder.mkdir(parents=True)
            (folder / "0000000005.png").write_bytes(b"x")
    assert kitti_setup.merge_annotated_depth(str(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == ["d1_sync", "d2_sync"]
    assert os.listdir(tmp_path / "d2_sync" / "proj_depth" / "groundtruth") == ["image_02"]
    assert kitti_setup.merge_annotated_depth(str(tmp_path)) == 0


def run_script(name, dataset_dir, *args):
    env = dict(os.environ, BTS_DATASET_DIR=str(dataset_dir), PYTHON=sys.executable,
               BTS_LISTS_DIR=str(dataset_dir / "train_test_inputs"))
    return subprocess.run(["bash", os.path.join(ROOT, name), *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", ["init_nyu_test_files.sh", "init_nyu_train_files.sh", "init_kitti_files.sh",
                                  "init_nyu_data_raw.sh", "init_nyu_data_raw_multiple.sh"])
def test_init_scripts_are_strict_bash(name):
    text = open(os.path.join(ROOT, name)).read()
    assert "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", os.path.join(ROOT, name)]).returncode == 0


def test_init_nyu_test_files_runs_offline_on_cached_downloads_and_is_idempotent(tmp_path):
    nyu = tmp_path / "nyu_depth_v2"
    nyu.mkdir()
    write_labeled_mat(nyu / "nyu_depth_v2_labeled.mat", num=3)
    scipy.io.savemat(nyu / "splits.mat", {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[2], [3]])})
    first = run_script("init_nyu_test_files.sh", tmp_path)
    assert first.returncode == 0, first.stderr
    assert (nyu / "official_splits" / "test" / "kitchen" / "sync_depth_00001.png").is_file()
    assert len((nyu / "nyudepthv2_test_files_with_gt.txt").read_text().splitlines()) == 2
    published = tmp_path / "train_test_inputs" / "nyudepthv2_test_files_with_gt.txt"
    assert published.read_text() == (nyu / "nyudepthv2_test_files_with_gt.txt").read_text()
    second = run_script("init_nyu_test_files.sh", tmp_path)
    assert second.returncode == 0 and "already extracted" in second.stdout


def test_init_kitti_files_runs_offline_on_cached_archives(tmp_path):
    kitti = tmp_path / "kitti"
    downloads = kitti / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / "data_depth_annotated.zip", "w") as zf:
        for cam in ("image_02", "image_03"):
            zf.writestr(f"train/2011_09_26_drive_0002_sync/proj_depth/groundtruth/{cam}/0000000005.png", b"gt")
    make_drive_zip(downloads / "2011_09_26_drive_0002_sync.zip")
    with zipfile.ZipFile(downloads / "2011_09_26_calib.zip", "w") as zf:
        zf.writestr("2011_09_26/calib_velo_to_cam.txt", b"calib")
    listing = tmp_path / "eigen.txt"
    listing.write_text("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000000.png "
                       "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png 721.5377\n")
    result = run_script("init_kitti_files.sh", tmp_path, str(listing))
    assert result.returncode == 0, result.stderr
    assert (kitti / "2011_09_26" / "2011_09_26_drive_0002_sync" / "image_02" / "data" / "0000000000.png").is_file()
    assert not (kitti / "2011_09_26" / "2011_09_26_drive_0002_sync" / "image_03").exists()
    gt = kitti / "data_depth_annotated" / "2011_09_26_drive_0002_sync" / "proj_depth" / "groundtruth"
    assert os.listdir(gt) == ["image_02"]
    assert not (downloads / "2011_09_26_drive_0002_sync.zip").exists()  # deleted once unpacked
    again = run_script("init_kitti_files.sh", tmp_path, str(listing))
    assert again.returncode == 0, again.stderr

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Image and depth files: uint16 PNG convention, readers, colormap, .npy, point clouds, atomic writes."""
import os

import numpy as np
import pytest
from PIL import Image

from utils import image_io


def test_uint16_png_round_trip_nyu_scale_truncates_like_upstream(tmp_path):
    depth = np.array([[0.0, 0.001, 1.2345, 9.9999, 10.0]], np.float32)
    path = str(tmp_path / "raw" / "a.png")
    stored = image_io.save_depth_png(path, depth, 1000.0)
    np.testing.assert_array_equal(stored, [[0, 1, 1234, 9999, 10000]])
    with Image.open(path) as png:
        assert png.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(png), stored)
    back = image_io.read_depth_png(path, 1000.0)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, stored.astype(np.float32) / np.float32(1000.0))
    # the same float32 product as the official writer (float32 depth × scale, astype uint16)
    np.testing.assert_array_equal(stored, (depth * np.float32(1000.0)).astype(np.uint16))


def test_uint16_values_beyond_range_clip_never_wrap():
    depth = np.array([65.5, 65.536, 70.0, 1e9, np.inf, np.nan, -3.0], np.float32)
    values = image_io.depth_to_uint16(depth, 1000.0)
    # 65.536 m and 70 m would wrap to 0 and 4464 with a plain cast; they must saturate at 65535.
    np.testing.assert_array_equal(values, [65500, 65535, 65535, 65535, 65535, 0, 0])
    kitti = image_io.depth_to_uint16(np.array([80.0, 255.99, 256.0, 300.0], np.float32), 256.0)
    np.testing.assert_array_equal(kitti, [20480, 65533, 65535, 65535])


def test_ground_truth_is_rounded_where_predictions_are_truncated():
    depth = np.array([0.0, 0.0004, 0.0006, 1.2346, 70.0])
    np.testing.assert_array_equal(image_io.ground_truth_to_uint16(depth, 1000.0), [0, 0, 1, 1235, 65535])
    np.testing.assert_array_equal(image_io.depth_to_uint16(depth, 1000.0), [0, 0, 0, 1234, 65535])


def test_quantize_depth_equals_the_png_read_back(tmp_path):
    depth = np.random.default_rng(0).uniform(0, 80, (6, 7)).astype(np.float32)
    path = str(tmp_path / "k.png")
    image_io.save_depth_png(path, depth, 256.0)
    np.testing.assert_array_equal(image_io.quantize_depth(depth, 256.0),
                                  image_io.read_depth_png(path, 256.0))
    assert np.all(depth - image_io.quantize_depth(depth, 256.0) < 1 / 256)


def test_colormap_uses_a_fixed_range_and_black_for_invalid(tmp_path):
    a = np.array([[1.0, 5.0, 0.0], [np.nan, 10.0, 20.0]], np.float32)
    b = np.array([[1.0, 9.0, 2.0], [3.0, 4.0, 6.0]], np.float32)
    rgb_a = image_io.save_colormap_png(str(tmp_path / "a.png"), a, max_depth=10.0)
    rgb_b = image_io.colorize_depth(b, max_depth=10.0)
    assert rgb_a.shape == (2, 3, 3) and rgb_a.dtype == np.uint8
    np.testing.assert_array_equal(rgb_a[0, 0], rgb_b[0, 0])  # 1 m has one colour in every image
    np.testing.assert_array_equal(rgb_a[1, 1], rgb_a[1, 2])  # beyond max_depth saturates
    assert not rgb_a[0, 2].any() and not rgb_a[1, 0].any()  # 0 and NaN are black
    assert rgb_a[0, 0].any() and not np.array_equal(rgb_a[0, 0], rgb_a[0, 1])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb_a)


def test_colormap_is_matplotlibs_and_tensorboard_uses_the_same_colours():
    import tensorflow as tf
    from matplotlib import colormaps

    from utils import visualization

    depth = np.linspace(0.0, 12.0, 97, dtype=np.float32).reshape(1, 97)
    depth[0, 0] = np.nan
    valid = np.isfinite(depth) & (depth > 0)
    for name in ("plasma_r", "magma"):
        rgb = image_io.colorize_depth(depth, 10.0, name)
        # reference: matplotlib's own lookup of depth / max_depth, clipped to [0, 1]
        reference = (colormaps[name](np.clip(depth / np.float32(10.0), 0, 1))[..., :3] * 255.0
                     + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(rgb[valid], reference[valid])
        assert not rgb[~valid].any()
        logged = visualization.colorize(tf.constant(depth[None, ..., None]), 10.0, name)
        np.testing.assert_array_equal(np.round(logged.numpy()[0] * 255.0).astype(np.uint8), rgb)


def test_readers_decode_and_reject_bad_files_with_one_line_naming_the_file(tmp_path):
    from utils.io import DataError

    rgb = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(image_io.load_image(str(tmp_path / "rgb.png")), rgb)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d8.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    cases = [(lambda: image_io.read_depth_png(str(tmp_path / "d8.png"), 1000.0),
              "d8.png: expected a 16-bit"),
             (lambda: image_io.load_image(str(tmp_path / "bad.jpg")),
              "bad.jpg: unreadable or corrupt image"),
             (lambda: image_io.load_image(str(tmp_path / "none.jpg")), "file not found:")]
    for call, expected in cases:
        with pytest.raises(DataError) as err:
            call()
        assert expected in str(err.value) and "\n" not in str(err.value)


def test_npy_round_trip_in_metres(tmp_path):
    depth = np.random.default_rng(1).uniform(0, 10, (5, 4))
    image_io.save_depth_npy(str(tmp_path / "d.npy"), depth)
    loaded = np.load(tmp_path / "d.npy")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, depth.astype(np.float32))


def _plane_depth(height, width, intrinsics, normal, offset):
    """Depth of the plane n·X = offset seen through a pinhole camera."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    return offset / (rays @ np.asarray(normal, np.float64))


def test_point_cloud_of_a_plane_lies_on_that_plane(tmp_path):
    intrinsics = (500.0, 480.0, 31.5, 23.5)
    normal = np.array([0.2, -0.3, 1.0]) / np.linalg.norm([0.2, -0.3, 1.0])
    depth = _plane_depth(48, 64, intrinsics, normal, 3.0)
    depth[0, 0] = 0.0  # invalid pixels are left out
    depth[5, 7] = np.nan
    rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = str(tmp_path / "ply" / "plane.ply")
    count = image_io.save_point_cloud(path, depth, rgb, intrinsics)
    points, colors = image_io.read_ply(path)
    assert count == len(points) == 48 * 64 - 2
    np.testing.assert_allclose(points @ normal, 3.0, rtol=1e-5)
    mask = np.isfinite(depth) & (depth > 0)
    np.testing.assert_array_equal(colors, rgb[mask])
    np.testing.assert_allclose(points[:, 2], depth[mask], rtol=1e-6)


def test_default_intrinsics_scale_with_image_size_and_flags_win():
    assert image_io.default_intrinsics("nyu", 480, 640) == (518.8579, 518.8579, 320.0, 240.0)
    fx, fy, cx, cy = image_io.default_intrinsics("nyu", 240, 320)
    assert (fx, fy, cx, cy) == pytest.approx((518.8579 / 2, 518.8579 / 2, 160.0, 120.0))
    assert image_io.default_intrinsics("kitti", 375, 1242, fx=700.0, cy=180.0)[::3] == (700.0, 180.0)
    with pytest.raises(ValueError):
        image_io.default_intrinsics("nyu", 480, 640, fx=-1.0)


def test_writes_are_atomic_and_leave_nothing_on_failure(tmp_path):
    image_io.save_depth_png(str(tmp_path / "ok.png"), np.ones((3, 3)), 1000.0)
    assert os.listdir(tmp_path) == ["ok.png"]  # no temporary file left behind
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception):
        image_io.save_depth_png(str(blocker / "sub" / "a.png"), np.ones((3, 3)), 1000.0)
    assert sorted(os.listdir(tmp_path)) == ["file", "ok.png"]

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The raw NYU path (tools/nyu_raw.py, init_nyu_data_raw*.sh) on raw scenes fabricated in the
Kinect dumps' formats: 16-bit PGM depth with little-endian samples, 8-bit PPM RGB, 12-byte
accelerometer dumps, ``X-<epoch seconds>-<counter>`` names at a jittered 30 Hz."""
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_BTS_SIZE, TINY_ENCODER, write_random_depth, write_random_rgb
from tools import nyu_raw
from utils.datasets import get_dataset_facts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = nyu_raw.FRAME_SIZE
FAULTY = "d-1315166703.129542-2466101449.pgm"
WALL_RAW = 975  # raw disparity of the fronto-parallel wall: 351.3 / (1092.5 - 975) m
WALL_M = nyu_raw.DEPTH_PARAM_1 / (nyu_raw.DEPTH_PARAM_2 - WALL_RAW)
PATCH = (slice(200, 240), slice(300, 360))  # "no reading" (2047) pixels in the raw depth frames
LINE = r"^/(?P<s>[a-z_0-9]+)/rgb_(?P<i>\d{5})\.jpg /(?P=s)/sync_depth_(?P=i)\.png 518\.8579$"  # upstream's


# ---------------------------------------------------------------- the dump formats
def write_pgm(path, raw):
    """A Kinect depth dump: PGM header, samples little-endian (what imread + swapbytes undo)."""
    path.write_bytes(b"P5 640 480 65535\n" + np.asarray(raw, "<u2").tobytes())


def write_ppm(path, rgb):
    path.write_bytes(b"P6 640 480 255\n" + np.asarray(rgb, np.uint8).tobytes())


def write_accel(path, accel_x=12, accel_y=-810, accel_z=40, tilt=0):
    path.write_bytes(struct.pack("<3hb3xi", accel_x, accel_y, accel_z, tilt, 0))  # freenect_raw_tilt_state


def name(kind, seconds, counter):
    return f"{kind}-{seconds:.6f}-{counter}." + {"d": "pgm", "r": "ppm", "a": "dump"}[kind]


def wall_frame(seed):
    """The wall's raw depth (with the no-reading patch) and an RGB frame told apart by its blue."""
    raw = np.full((H, W), WALL_RAW, np.uint16)
    raw[PATCH] = 2047
    rows, cols = np.mgrid[0:H, 0:W]
    rgb = np.stack([cols * 255 // (W - 1), rows * 255 // (H - 1), np.full((H, W), seed * 29 % 256)], -1)
    return raw, rgb.astype(np.uint8)


def make_scene(raw_dir, scene, num_depth, faulty_at=None, seed=0):
    """A scene of ``num_depth`` depth frames (30 Hz, jittered), RGB 4 ms after each, a dump every
    third frame, files created in shuffled order. Only the frames the driver samples (every 7th)
    hold pixels: the others are empty, so reading one would fail the test."""
    folder = raw_dir / scene
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    t0 = 1315166703.129542 - 7 / 30  # frame 7 is then the known faulty frame's time
    files = []
    for k in range(num_depth):
        t = t0 + k / 30 + rng.uniform(-0.002, 0.002)
        depth_name = FAULTY if k == faulty_at else name("d", t, 2466101449 + 1000 * k)
        files.append((depth_name, k))
        files.append((name("r", t + 0.004, 2465000000 + 1000 * k), k))
        if k % 3 == 0:
            files.append((name("a", t - 0.001, 2464000000 + k), None))
    rng.shuffle(files)
    for file_name, k in files:
        path = folder / file_name
        if file_name.startswith("a-"):
            write_accel(path)
        elif k % 7 or file_name == FAULTY:
            path.write_bytes(b"")
        else:
            raw, rgb = wall_frame(seed + k)
            write_pgm(path, raw) if file_name.startswith("d-") else write_ppm(path, rgb)
    (folder / "INDEX.txt").write_text("not a frame\n")
    return folder


def scenes_file(tmp_path, *scenes):
    path = tmp_path / "scenes.txt"
    path.write_text("".join(f"{s}\n" for s in scenes))
    return str(path)


def convert(tmp_path, *extra, scenes=("kitchen_0028b",)):
    raw, out = tmp_path / "raw", tmp_path / "sync"
    argv = ["--raw_dir", str(raw), "--out_dir", str(out), "--list", str(tmp_path / "list.txt"),
            "--scenes", scenes_file(tmp_path, *scenes), "--workers", "1", *extra]
    return nyu_raw.main(argv)


# ---------------------------------------------------------------- get_synched_frames.m
def test_synchronisation_pairs_each_depth_frame_with_the_nearest_rgb_and_dump_as_the_toolbox(tmp_path):
    base = 1315166703.0
    # Times in seconds after base; exact binary fractions where a tie is tested.
    depth = {"d0": 0.000, "d1": 0.033, "d2": 0.067, "d3": 0.101, "d4": 0.134, "d5": 0.168, "d6": 0.203125}
    rgb = {"r0": 0.010, "r1": 0.045, "r3": 0.110, "r4": 0.140, "r5": 0.150, "r6": 0.175,  # r2 missing
           "r7": 0.1875, "r8": 0.21875}
    accel = {"a0": -0.002, "a1": 0.099, "a2": 0.201}
    counters = {"r4": 5, "r5": 4}  # an out-of-order frame counter: time order is what counts
    folder = tmp_path / "scene"
    folder.mkdir()
    names = {}
    for label, offset in {**depth, **rgb, **accel}.items():
        names[label] = name(label[0], base + offset, counters.get(label, int(label[1:])))
    for label in reversed(sorted(names)):  # created out of time order
        (folder / names[label]).write_bytes(b"")
    (folder / "INDEX.txt").write_text("")
    frames = nyu_raw.synchronise_scene(str(folder))
    # By hand: nearest in time; d2 has no RGB of its own (r2 missing) and gets r1 again; r5 and r7
    # are nearest to no depth frame and dropped; d6 is exactly between r7 and r8: the later wins.
    expected = [("d0", "r0", "a0"), ("d1", "r1", "a0"), ("d2", "r1", "a1"), ("d3", "r3", "a1"),
                ("d4", "r4", "a1"), ("d5", "r6", "a2"), ("d6", "r8", "a2")]
    assert [(f.depth, f.rgb, f.accel) for f in frames] == [tuple(names[x] for x in row) for row in expected]
    assert frames[2].time_diff == pytest.approx(0.022, abs=1e-6)
    assert frames[6].time_diff == 0.015625


def test_synchronisation_errors_name_the_scene_and_file(tmp_path):
    (tmp_path / "only_depth").mkdir()
    (tmp_path / "only_depth" / name("d", 1315166703.5, 1)).write_bytes(b"")
    with pytest.raises(nyu_raw.RawFileError, match=r"only_depth: 1 depth .* and 0 RGB"):
        nyu_raw.synchronise_scene(str(tmp_path / "only_depth"))
    with pytest.raises(nyu_raw.RawFileError, match=r"r-later-7\.ppm: no timestamp"):
        nyu_raw.synchronise(["d-1315166703.5-1.pgm", "r-later-7.ppm"])
    frames = nyu_raw.synchronise(["d-1315166703.5-1.pgm", "r-1315166703.6-2.ppm"])  # no dumps: fine
    assert frames[0].accel is None


# ---------------------------------------------------------------- decode, constants, undistortion
def test_raw_depth_decodes_like_imread_then_swapbytes(tmp_path):
    raw = np.random.default_rng(0).integers(0, 2048, (H, W)).astype(np.uint16)
    write_pgm(tmp_path / "d.pgm", raw)
    np.testing.assert_array_equal(nyu_raw.read_raw_depth(str(tmp_path / "d.pgm")), raw)
    big_endian = np.asarray(Image.open(tmp_path / "d.pgm"))  # a standard PGM reader (imread)
    np.testing.assert_array_equal(big_endian.astype(np.uint16).byteswap(), raw)
    assert nyu_raw.depth_rel2depth_abs(np.array([WALL_RAW, 2047, 1060, 1092.5])).tolist() == \
        [pytest.approx(WALL_M), 0.0, 10.0, 10.0]  # 1060 -> 10.8 m clipped; 1092.5 -> inf clipped


def test_camera_constants_tie_to_the_dataset_table_and_the_toolbox_motion():
    assert round(nyu_raw.RGB_INTRINSICS[0], 4) == get_dataset_facts("nyu").default_focal
    rotation = nyu_raw.DEPTH_TO_RGB_ROTATION
    np.testing.assert_allclose(rotation, -np.eye(3), atol=0.01)  # camera_params.m negates the listing
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert nyu_raw.DEPTH_TO_RGB_TRANSLATION[0] == pytest.approx(0.025031875)  # T = [t_x; t_z; t_y]
    assert nyu_raw.DEPTH_TO_RGB_TRANSLATION[2] == pytest.approx(6.6238747e-04)


@pytest.mark.parametrize("camera", ["rgb", "depth"])
def test_undistortion_map_matches_opencv_undistort_points(camera):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (a core requirement) is the reference")
    intrinsics, distortion = ((nyu_raw.RGB_INTRINSICS, nyu_raw.RGB_DISTORTION) if camera == "rgb"
                              else (nyu_raw.DEPTH_INTRINSICS, nyu_raw.DEPTH_DISTORTION))
    fx, fy, cx, cy = intrinsics
    camera_matrix = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    coords, inside = nyu_raw.distortion_map(intrinsics, distortion)
    rows, cols = np.mgrid[0:H:7, 0:W:7]
    picked = (rows * W + cols).ravel()
    source = np.stack([coords[1, picked], coords[0, picked]], -1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    back = cv2.undistortPoints(source, camera_matrix, np.array(distortion), R=None, P=camera_matrix,
                               criteria=criteria).reshape(-1, 2)
    # Each undistorted pixel samples the point that OpenCV undistorts back onto that pixel.
    np.testing.assert_allclose(back, np.stack([cols.ravel(), rows.ravel()], -1), atol=1e-3)
    map_x, map_y = cv2.initUndistortRectifyMap(camera_matrix, np.array(distortion), None, camera_matrix,
                                               (W, H), cv2.CV_32FC1)
    np.testing.assert_allclose(coords[1].reshape(H, W), map_x, atol=2e-3)
    np.testing.assert_allclose(coords[0].reshape(H, W), map_y, atol=2e-3)
    outside = (map_x < 0) | (map_x >= W - 1) | (map_y < 0) | (map_y >= H - 1)
    assert (inside == ~outside).mean() > 0.999  # rect's floor() rule, up to float32 maps at the edge


def test_undistort_fills_255_outside_and_interpolates_bilinearly_inside():
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    ramp = 0.1 * cols + 0.2 * rows  # bilinear interpolation reproduces an affine image exactly
    out = nyu_raw.undistort(ramp, nyu_raw.RGB_INTRINSICS, nyu_raw.RGB_DISTORTION)
    coords, inside = nyu_raw.distortion_map(nyu_raw.RGB_INTRINSICS, nyu_raw.RGB_DISTORTION)
    expected = 0.1 * coords[1].reshape(H, W) + 0.2 * coords[0].reshape(H, W)
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-9)
    assert (out[~inside] == 255).all() and 0.01 < (~inside).mean() < 0.1  # a thin white rim


# ---------------------------------------------------------------- project_depth_map.m geometry
def _distort(x, y, distortion):
    k1, k2, p1, p2, k3 = distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def _undistort(xd, yd, distortion):
    x, y = xd.copy(), yd.copy()
    for _ in range(60):  # fixed point of x = xd - (distort(x) - x)
        dx, dy = _distort(x, y, distortion)
        x, y = x - (dx - xd), y - (dy - yd)
    return x, y


def render_plane(normal, distance):
    """Raw (distorted) Kinect disparity of the plane n·P = distance (depth camera, metres), as the
    toolbox's model sees it: distorted pixel -> undistorted pixel u (0-based) -> ray (u+1-c)/f."""
    fx, fy, cx, cy = nyu_raw.DEPTH_INTRINSICS
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    x, y = _undistort((cols - cx) / fx, (rows - cy) / fy, nyu_raw.DEPTH_DISTORTION)
    ray_x, ray_y = (x * fx + 1) / fx, (y * fy + 1) / fy  # the 1-based grid of depth_plane2depth_world
    inv_z = (normal[0] * ray_x + normal[1] * ray_y + normal[2]) / distance
    raw = np.round(nyu_raw.DEPTH_PARAM_2 - nyu_raw.DEPTH_PARAM_1 * inv_z).astype(np.uint16)
    raw[PATCH] = 2047
    return raw


def expected_in_rgb(normal, distance, margin=3.0):
    """Ray-cast each RGB pixel onto the plane: the depth-camera depth there, and which pixels must
    be valid / holes (the depth frame's extent, the no-reading patch, the toolbox's last row and
    column), leaving a ``margin``-pixel band at each boundary unchecked."""
    fx, fy, cx, cy = nyu_raw.RGB_INTRINSICS
    fxd, fyd, cxd, cyd = nyu_raw.DEPTH_INTRINSICS
    inverse = np.linalg.inv(nyu_raw.DEPTH_TO_RGB_ROTATION)
    shift = inverse @ nyu_raw.DEPTH_TO_RGB_TRANSLATION
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u + 1 - cx) / fx, (v + 1 - cy) / fy, np.ones_like(u)], -1) @ inverse.T
    normal = np.asarray(normal)
    scale = (distance + normal @ shift) / (rays @ normal)
    points = scale[..., None] * rays - shift  # in the depth camera
    z = points[..., 2]
    col, row = points[..., 0] / z * fxd + cxd - 1, points[..., 1] / z * fyd + cyd - 1  # undistorted, 0-based
    xd, yd = _distort((col - cxd) / fxd, (row - cyd) / fyd, nyu_raw.DEPTH_DISTORTION)
    raw_col, raw_row = xd * fxd + cxd, yd * fyd + cyd
    rs, cs = PATCH

    def in_patch(grow):
        return ((raw_row >= rs.start - grow) & (raw_row <= rs.stop - 1 + grow)
                & (raw_col >= cs.start - grow) & (raw_col <= cs.stop - 1 + grow))

    def in_frame(grow):
        return (col >= -grow) & (col <= W - 1 + grow) & (row >= -grow) & (row <= H - 1 + grow)

    edge = (u == W - 1) | (v == H - 1)
    valid = in_frame(-margin) & ~in_patch(margin) & ~edge
    holes = ~in_frame(margin) | in_patch(-margin) | edge
    return z, valid, holes


@pytest.mark.parametrize("plane", [((0.0, 0.0, 1.0), WALL_M), ((0.25, -0.15, 1.0), 2.5)],
                         ids=["fronto_parallel_wall", "tilted_plane"])
def test_planes_come_back_at_their_depths_with_holes_only_where_the_geometry_predicts(plane):
    normal, distance = plane
    normal = np.asarray(normal) / np.linalg.norm(normal)
    raw = render_plane(normal, distance)
    rgb = np.zeros((H, W, 3), np.uint8)
    depth, _ = nyu_raw.project_depth_map(raw, rgb)
    z, valid, holes = expected_in_rgb(normal, distance)
    assert valid.mean() > 0.7 and holes.mean() > 0.1
    assert (depth[holes] == 0).all()
    assert (depth[valid] > 0).all()
    if normal[2] == 1.0:  # constant raw value: exact up to float rounding
        np.testing.assert_allclose(depth[valid], WALL_M, rtol=1e-12)
        # To the pixel: the coverage ends where the depth frame's first and last columns (1-based
        # grid) project, rounded half away from zero (1 px off with a 0-based grid or floor()).
        fxd, fyd, cxd, cyd = nyu_raw.DEPTH_INTRINSICS
        fx, fy, cx, cy = nyu_raw.RGB_INTRINSICS
        checked = 0
        for yy in range(100, 400, 25):
            points = np.array([[(xx - cxd) / fxd, (yy - cyd) / fyd, 1.0] for xx in (1, W)]) * WALL_M
            points = points @ nyu_raw.DEPTH_TO_RGB_ROTATION.T + nyu_raw.DEPTH_TO_RGB_TRANSLATION
            x, y = points[:, 0] * fx / points[:, 2] + cx, points[:, 1] * fy / points[:, 2] + cy
            if (np.abs((np.r_[x, y] % 1) - 0.5) < 0.05).any():
                continue  # too close to a rounding tie to tell
            (x_left, x_right), (v_left, v_right) = np.floor(x + 0.5) - 1, np.floor(y + 0.5) - 1
            assert np.flatnonzero(depth[int(v_left)]).min() == x_left
            assert np.flatnonzero(depth[int(v_right)]).max() == x_right
            checked += 1
        assert checked >= 6
    else:  # raw values are integers (±0.5), projections rounded to the pixel (±0.5 px)
        grad_v, grad_u = np.gradient(z)
        tolerance = 0.5 * z ** 2 / nyu_raw.DEPTH_PARAM_1 * 1.05 + 0.55 * (np.abs(grad_u) + np.abs(grad_v))
        assert (np.abs(depth - z)[valid] <= tolerance[valid]).all()
        assert 1.5 < z[valid].min() and z[valid].max() < 4.0  # really a slanted plane


def test_the_nearest_surface_wins_the_z_buffer():
    raw, rgb = wall_frame(0)
    far_only = raw.copy()
    far_only[:, 320:] = 2047
    raw[:, 320:] = 800  # a near right half (1.21 m) beside the far wall (2.99 m)
    near = nyu_raw.DEPTH_PARAM_1 / (nyu_raw.DEPTH_PARAM_2 - 800)
    row = nyu_raw.project_depth_map(raw, rgb)[0][300]
    alone = nyu_raw.project_depth_map(far_only, rgb)[0][300]
    near_cols = np.flatnonzero(np.isclose(row, near, rtol=1e-9))
    far_cols = np.flatnonzero(np.isclose(row, WALL_M, rtol=1e-9))
    # Parallax moves the near half over the far one in the RGB camera (fx·t_x·(1/1.21 - 1/2.99)
    # ≈ 6 px): there the far wall alone had depth, and the near surface is what is left.
    overlap = np.arange(near_cols.min(), np.flatnonzero(alone > 0).max() + 1)
    assert 4 <= len(overlap) <= 9
    assert np.isclose(row[overlap[1:]], near, rtol=1e-9).all()  # its first column may be a seam blend
    assert far_cols.max() < near_cols.min()


# ---------------------------------------------------------------- the BTS driver through the CLI
def test_driver_samples_every_7th_frame_skips_the_faulty_one_and_writes_upstreams_files(tmp_path, capsys):
    import re

    make_scene(tmp_path / "raw", "kitchen_0028b", num_depth=23, faulty_at=7)
    assert convert(tmp_path) == 0
    out = tmp_path / "sync" / "kitchen_0028b"
    # Frames 0, 7, 14, 21 are sampled; 7 is the faulty one and uses up no index.
    assert sorted(os.listdir(out)) == [".nyu_raw_complete", "rgb_00000.jpg", "rgb_00001.jpg", "rgb_00002.jpg",
                                       "sync_depth_00000.png", "sync_depth_00001.png", "sync_depth_00002.png"]
    lines = (tmp_path / "list.txt").read_text().splitlines()
    assert lines == [f"/kitchen_0028b/rgb_{i:05d}.jpg /kitchen_0028b/sync_depth_{i:05d}.png 518.8579"
                     for i in range(3)]
    assert all(re.match(LINE, line) for line in lines)
    png = Image.open(out / "sync_depth_00001.png")
    assert png.mode in ("I;16", "I;16B", "I")
    depth_mm = np.asarray(png).astype(np.uint16)
    raw, rgb = wall_frame(14)  # output 1 = synchronised frame 14
    depth_m, rgb_ud = nyu_raw.project_depth_map(raw, rgb)
    np.testing.assert_array_equal(depth_mm, nyu_raw.depth_to_millimetres(depth_m))
    assert set(np.unique(depth_mm).tolist()) == {0, 2990}  # 2989.787 mm, rounded
    jpeg = np.asarray(Image.open(out / "rgb_00001.jpg")).astype(float)
    assert np.abs(jpeg - rgb_ud).mean() < 3  # the undistorted RGB of that frame, through JPEG
    assert abs(np.median(jpeg[..., 2]) - 14 * 29 % 256) < 3  # frame 14's blue, not another's
    assert "3 frames of 1 scenes" in capsys.readouterr().out


def test_millimetres_are_rounded_half_away_from_zero_and_saturated_as_matlab_uint16():
    depth = np.array([0.0, 0.5, 1.0625, 2.0625, 0.0004, 66.0, np.nan, -1.0])
    assert nyu_raw.depth_to_millimetres(depth).tolist() == [0, 500, 1063, 2063, 0, 65535, 0, 0]
    assert nyu_raw.matlab_round(np.array([-2.5, 2.5, 0.49])).tolist() == [-3.0, 3.0, 0.0]


def test_a_rerun_does_no_work_and_keeps_every_file(tmp_path, capsys):
    make_scene(tmp_path / "raw", "kitchen_0028b", num_depth=8)
    assert convert(tmp_path) == 0
    capsys.readouterr()
    files = sorted((tmp_path / "sync").rglob("*")) + [tmp_path / "list.txt"]
    stamps = {p: os.stat(p).st_mtime_ns for p in files}
    shutil.rmtree(tmp_path / "raw" / "kitchen_0028b")  # a finished scene needs its raw files no more
    assert convert(tmp_path) == 0
    out = capsys.readouterr().out
    assert "(0 converted now)" in out and "(unchanged)" in out
    assert {p: os.stat(p).st_mtime_ns for p in files} == stamps
    assert sorted((tmp_path / "sync").rglob("*")) + [tmp_path / "list.txt"] == files


def test_a_truncated_file_stops_its_scene_in_one_line_and_the_others_go_on(tmp_path, capsys):
    make_scene(tmp_path / "raw", "kitchen_0028b", num_depth=8, seed=0)
    make_scene(tmp_path / "raw", "bathroom_0001", num_depth=8, seed=1)
    bad = sorted((tmp_path / "raw" / "bathroom_0001").glob("d-*.pgm"))[7]
    bad.write_bytes(bad.read_bytes()[:1000])
    scenes = ("kitchen_0028b", "bathroom_0001")
    assert convert(tmp_path, scenes=scenes) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"error: {bad}: truncated: 983 of 614400 data bytes" in err
    assert any("1 of 2 scenes failed (bathroom_0001)" in line and "was not written" in line for line in err)
    assert nyu_raw.scene_is_complete(str(tmp_path / "sync"), "kitchen_0028b")
    assert sorted(os.listdir(tmp_path / "sync")) == ["kitchen_0028b"]  # nothing of the failed scene
    assert not (tmp_path / "list.txt").exists()
    # --skip_unreadable: the frame is skipped like the faulty one, the scene finishes.
    assert convert(tmp_path, "--skip_unreadable", scenes=scenes) == 0
    assert sorted(os.listdir(tmp_path / "sync" / "bathroom_0001")) == [".nyu_raw_complete", "rgb_00000.jpg",
                                                                       "sync_depth_00000.png"]
    assert len((tmp_path / "list.txt").read_text().splitlines()) == 2 + 1


def test_a_corrupt_header_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "d.pgm").write_bytes(b"P2 640 480 65535\n" + bytes(100))
    with pytest.raises(nyu_raw.RawFileError, match=r"d\.pgm: not a binary PGM file"):
        nyu_raw.read_raw_depth(str(tmp_path / "d.pgm"))
    (tmp_path / "r.ppm").write_bytes(b"P6 320 240 255\n" + bytes(320 * 240 * 3))
    with pytest.raises(nyu_raw.RawFileError, match=r"r\.ppm: 320x240 frame, expected the Kinect's 640x480"):
        nyu_raw.read_raw_rgb(str(tmp_path / "r.ppm"))


def test_missing_scenes_and_an_earlier_list_are_reported(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"284 of the 284 scenes .* are not in .*raw \(first: basement_0001a\)"):
        nyu_raw.main(["--raw_dir", str(tmp_path / "raw"), "--out_dir", str(tmp_path / "sync"),
                      "--list", str(tmp_path / "list.txt")])
    make_scene(tmp_path / "raw", "kitchen_0028b", num_depth=1)
    (tmp_path / "list.txt").write_text("/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579\n")
    assert convert(tmp_path) == 0
    assert (tmp_path / "list.txt.bak").read_text().startswith("/kitchen_0028b/rgb_00045.jpg")
    assert (tmp_path / "list.txt").read_text().splitlines() == [
        "/kitchen_0028b/rgb_00000.jpg /kitchen_0028b/sync_depth_00000.png 518.8579"]


# ---------------------------------------------------------------- archives and the init scripts
def test_unpack_puts_files_in_raw_scene_folders_keeps_training_scenes_and_is_idempotent(tmp_path):
    archive = tmp_path / "nyu_depth_v2_raw.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("nyu_depth_v2_raw/kitchen_0028b/r-1315166703.1-1.ppm", b"rgb")  # nested
        zf.writestr("bathroom_0001/d-1315166703.1-1.pgm", b"depth")  # top level
        zf.writestr("kitchen_0004/d-1315166703.1-1.pgm", b"a test scene")
        zf.writestr("README.txt", b"top-level file")
    scenes = set(nyu_raw.read_scene_names(nyu_raw.TRAIN_SCENES_FILE))
    assert nyu_raw.unpack_archive(str(archive), str(tmp_path / "raw"), scenes) == 2
    found = sorted(str(p.relative_to(tmp_path / "raw")) for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert found == ["bathroom_0001/d-1315166703.1-1.pgm", "kitchen_0028b/r-1315166703.1-1.ppm"]
    assert nyu_raw.unpack_archive(str(archive), str(tmp_path / "raw"), scenes) == 0
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit, match=r"bad\.zip: not a readable zip archive"):
        nyu_raw.unpack_archive(str(tmp_path / "bad.zip"), str(tmp_path / "raw"))


def run_script(name, dataset_dir, **env):
    env = dict(os.environ, BTS_DATASET_DIR=str(dataset_dir / "dataset"), PYTHON=sys.executable,
               BTS_LISTS_DIR=str(dataset_dir / "train_test_inputs"), **env)
    return subprocess.run(["bash", os.path.join(ROOT, name)], env=env, capture_output=True, text=True,
                          timeout=300)


def zip_scenes(archive, raw_dir, scenes):
    with zipfile.ZipFile(archive, "w") as zf:
        for scene in scenes:
            for path in sorted((raw_dir / scene).iterdir()):
                zf.write(path, f"{scene}/{path.name}")


def test_init_nyu_data_raw_fetches_records_the_checksum_unpacks_and_is_idempotent(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "nyu_depth_v2_raw.zip", "w") as zf:
        zf.writestr("bathroom_0001/INDEX.txt", b"index")
    first = run_script("init_nyu_data_raw.sh", tmp_path, NYU_RAW_BASE_URL=f"file://{mirror}", NYU_RAW_NEED_GB="0")
    assert first.returncode == 0, first.stderr
    nyu = tmp_path / "dataset" / "nyu_depth_v2"
    assert (nyu / "raw" / "bathroom_0001" / "INDEX.txt").read_bytes() == b"index"
    assert sorted(os.listdir(nyu / "downloads")) == ["nyu_depth_v2_raw.zip.sha256", "nyu_depth_v2_raw.zip.unpacked"]
    assert "python -m tools.nyu_raw" in first.stdout
    again = run_script("init_nyu_data_raw.sh", tmp_path, NYU_RAW_BASE_URL="file:///nowhere", NYU_RAW_NEED_GB="0")
    assert again.returncode == 0 and "already extracted" in again.stdout


def test_init_scripts_check_free_space_first_with_a_clear_message(tmp_path):
    for script in ("init_nyu_data_raw.sh", "init_nyu_data_raw_multiple.sh"):
        result = run_script(script, tmp_path, NYU_RAW_BASE_URL="file:///nowhere", NYU_RAW_NEED_GB="999999999")
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith("error: the raw NYU set")
        assert "needs about 999999999 GB free" in result.stderr
        assert not (tmp_path / "dataset" / "nyu_depth_v2" / "downloads").exists()


@pytest.mark.slow
def test_raw_archives_to_a_sync_tree_and_list_that_bts_main_trains_on(tmp_path):
    """./init_nyu_data_raw_multiple.sh on fixture archives, the documented command, then
    ``bts_main.py arguments_train_nyu.txt`` (tiny encoder, small crops) on what they made."""
    fixtures = tmp_path / "fixtures"
    make_scene(fixtures, "kitchen_0028b", num_depth=15, faulty_at=7, seed=0)
    make_scene(fixtures, "bathroom_0001", num_depth=8, seed=1)
    make_scene(fixtures, "kitchen_0004", num_depth=1, seed=2)  # not a training scene
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    entries = [line.split() for line in open(os.path.join(ROOT, "tools", "nyu_raw_archives.txt"))
               if line.strip() and not line.startswith("#")]
    downloads = tmp_path / "work" / "dataset" / "nyu_depth_v2" / "downloads"
    downloads.mkdir(parents=True)
    for entry in entries:  # every archive of the list; the Google-Drive ones as cached downloads
        target = (downloads if len(entry) > 1 else mirror) / entry[0]
        scenes = {"kitchens_part1.zip": ["kitchen_0028b", "kitchen_0004"],
                  "bathrooms_part1.zip": ["bathroom_0001"]}.get(entry[0], [])
        zip_scenes(target, fixtures, scenes)
    work = tmp_path / "work"
    script = run_script("init_nyu_data_raw_multiple.sh", work, NYU_RAW_BASE_URL=f"file://{mirror}",
                        NYU_RAW_NEED_GB="0")
    assert script.returncode == 0, script.stderr
    assert sorted(os.listdir(work / "dataset" / "nyu_depth_v2" / "raw")) == ["bathroom_0001", "kitchen_0028b"]
    assert len(list(downloads.glob("*.sha256"))) == len(entries) and not list(downloads.glob("*.zip"))
    assert "already extracted" in run_script("init_nyu_data_raw_multiple.sh", work,
                                             NYU_RAW_BASE_URL="file:///nowhere", NYU_RAW_NEED_GB="0").stdout

    env = dict(os.environ, BTS_DATASET_DIR="dataset", BTS_LISTS_DIR="train_test_inputs",
               PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    (work / "scenes.txt").write_text("kitchen_0028b\nbathroom_0001\n")
    command = subprocess.run([sys.executable, "-m", "tools.nyu_raw", "--scenes", "scenes.txt", "--workers", "2"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert command.returncode == 0, command.stderr
    listing = (work / "train_test_inputs" / "nyudepthv2_train_files_with_gt.txt").read_text().splitlines()
    assert listing == ["/kitchen_0028b/rgb_00000.jpg /kitchen_0028b/sync_depth_00000.png 518.8579",
                       "/kitchen_0028b/rgb_00001.jpg /kitchen_0028b/sync_depth_00001.png 518.8579",
                       "/bathroom_0001/rgb_00000.jpg /bathroom_0001/sync_depth_00000.png 518.8579",
                       "/bathroom_0001/rgb_00001.jpg /bathroom_0001/sync_depth_00001.png 518.8579"]
    # arguments_train_nyu.txt also evaluates online on the official test split (./init_nyu_test_files.sh):
    # one stand-in frame of it.
    test_dir = work / "dataset" / "nyu_depth_v2" / "official_splits" / "test" / "kitchen"
    write_random_rgb(str(test_dir / "rgb_00001.jpg"), H, W, seed=1)
    write_random_depth(str(test_dir / "sync_depth_00001.png"), H, W, 1000.0, 10.0, seed=2)
    (work / "train_test_inputs" / "nyudepthv2_test_files_with_gt.txt").write_text(
        "kitchen/rgb_00001.jpg kitchen/sync_depth_00001.png 518.8579\n")
    train = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bts_main.py"), os.path.join(ROOT, "arguments_train_nyu.txt"),
         "--encoder", TINY_ENCODER, "--bts_size", str(TINY_BTS_SIZE), "--pretrained_model", "",
         "--num_epochs", "1", "--batch_size", "1", "--input_height", "64", "--input_width", "96"],
        cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert train.returncode == 0, train.stdout + train.stderr
    assert "finished at step 4" in train.stdout

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""NYU Depth V2 training frames from the raw Kinect dumps, without MATLAB (README "Datasets").

    python -m tools.nyu_raw [--raw_dir DIR] [--out_dir DIR] [--list FILE] [--scenes FILE]
                            [--workers N] [--skip_unreadable]
    python -m tools.nyu_raw --unpack ARCHIVE [ARCHIVE ...] [--raw_dir DIR] [--scenes FILE]

The first form does what upstream BTS's ``utils/sync_project_frames_multi_threads.m`` does with the
official NYU toolbox (``toolbox_nyu_depth_v2``) in MATLAB: ``raw/<scene>/{d,r,a}-<time>-<n>.*`` ->
``sync/<scene>/rgb_%05d.jpg`` + ``sync_depth_%05d.png`` and the filenames list that
``arguments_train_nyu.txt`` reads. The second is the extraction step of ``./init_nyu_data_raw.sh``
and ``./init_nyu_data_raw_multiple.sh``. Defaults follow ``tools/dataset_common.sh``:
``$BTS_DATASET_DIR`` (``dataset``)/nyu_depth_v2/{raw,sync} and ``$BTS_LISTS_DIR``
(``train_test_inputs``)/nyudepthv2_train_files_with_gt.txt.

Written from the toolbox's documented behaviour; what each step reproduces, from which file:

* :func:`synchronise` - ``get_synched_frames.m``. File names are sorted as text, as the toolbox
  sorts ``ls`` (for the dumps' ten-digit epoch seconds that is time order, whatever order the file
  system lists them in). Depth frames are primary: every ``d-`` file is kept. The RGB and the
  accelerometer pointers only move forward, each advancing while the next file is no farther in
  time, so each depth frame gets its nearest RGB frame and dump, a tie going to the later file; RGB
  frames nearest to no depth frame are dropped, and a depth frame whose own RGB frame is missing
  gets the nearest one left (possibly its neighbour's). The time is the first field after ``X-``
  (seconds). Choices: files are told apart by the ``d-``/``r-``/``a-`` prefixes (the toolbox's
  regexps ``'^d-*'`` take any name starting with the letter; the dumps hold only these and
  ``INDEX.txt``); a name whose time is not a number is an error naming it (the toolbox would match
  with NaN); a scene without accelerometer dumps is accepted (the toolbox fails; BTS never reads
  them); no depth or no RGB frame is an error.
* :func:`read_raw_depth` - ``imread`` + ``swapbytes``: the dumps hold little-endian samples in a
  PGM, whose standard says big-endian. :func:`read_raw_rgb` - ``imread`` of the 8-bit PPM. A
  truncated or malformed file is a one-line error naming it.
* :func:`undistort` - ``undistort.m`` (Bouguet's ``rect`` with R = I and the camera's own matrix):
  output pixel (u, v) (0-based) samples the input bilinearly at K·d(K⁻¹·(u, v, 1)), d the
  distortion of ``apply_distortion.m`` (radial k1, k2, k3, tangential p1, p2: OpenCV's model and
  coefficient order); where floor() of that point is outside [0, n-2] the output is 255.
* :func:`undistort_depth` - ``undistort_depth.m``, which the driver's ``project_depth_map.m`` calls:
  the same sampling with the neighbours flagged in the noise mask weighted 0 and the others
  renormalised (0 where all four are flagged or outside). The toolbox passes the mask *after*
  undistorting it and indexes it at the input pixels; reproduced. (This only changes pixels within
  about a pixel of no-reading ones; the older toolbox's plain ``undistort`` differs only there.)
* :func:`depth_rel2depth_abs` - ``depth_rel2depth_abs.m``: 351.3 / (1092.5 - raw), clipped to
  [0, 10] m (``camera_params.m``'s ``depthParam1``, ``depthParam2``, ``maxDepth``).
* :func:`project_depth_map` - ``project_depth_map.m`` with ``depth_plane2depth_world.m``,
  ``depth_world2rgb_world.m``, ``rgb_world2rgb_plane.m`` and ``camera_params.m``: noise mask = the
  pixels at the frame's largest raw value (the Kinect's 2047, "no reading"), undistorted (> 0 =
  noise, so outside the frame is noise); undistorted raw values below 600, or noise, become 2047
  (-> 0 m); back-projection on the 1-based pixel grid with the depth intrinsics; the rigid motion
  exactly as ``camera_params.m`` builds it (R = inv(reshape(-listed, 3, 3)'), T = [t_x; t_z; t_y]);
  pinhole projection with the RGB intrinsics; MATLAB ``round`` (half away from zero); points kept
  where 0 < x < W and 0 < y < H (1-based, so the last column and row are never written); z-buffer:
  the nearest point wins, and the value written is the point's depth in the *depth* camera
  (``depth2``), as the toolbox writes it; then clipped to [0, 10] m, NaN -> 0. The RGB frame is
  undistorted channel by channel with the RGB parameters and rounded like MATLAB's ``uint8``.
* :func:`convert_scene` / :func:`main` - ``sync_project_frames_multi_threads.m``: the scenes of
  upstream's ``train_scenes.txt`` (vendored as ``tools/nyu_train_scenes.txt``), every 7th
  synchronised frame from the first, the one faulty depth frame skipped without using up an output
  index, ``rgb_%05d.jpg`` = the undistorted RGB (JPEG quality 75, MATLAB ``imwrite``'s default) and
  ``sync_depth_%05d.png`` = ``uint16(depth * 1000)`` (MATLAB rounds and saturates). Scenes run in
  parallel (``--workers`` processes, spawn-safe) with a progress bar per scene and one overall.
  Choices: the faulty frame is skipped before its RGB file is read (the driver reads it first,
  which matters only if that file is unreadable). A corrupt or truncated raw file stops its scene
  with one line naming the file, and nothing of that scene is kept; with ``--skip_unreadable`` the
  frame is skipped like the faulty one instead (a warning names it). Other scenes go on either
  way; the list is written only when every scene finished, and the exit status is 1 otherwise.
  Resumable: a scene is built in ``<out>/<scene>.partial/`` and renamed into place when complete
  (with a ``.nyu_raw_complete`` marker), so finished scenes are skipped and an interrupted one is
  redone. List lines are upstream's: ``/<scene>/rgb_00045.jpg /<scene>/sync_depth_00045.png
  518.8579`` (the NYU focal of ``utils.datasets``), scenes in list order, frames in index order;
  a different file already at ``--list`` (upstream's list, say) is kept as ``<list>.bak``. The
  PNGs are compressed at zlib level 3 (the values are MATLAB's; only the bytes differ).

Resampling is SciPy's (``scipy.ndimage.map_coordinates``, order 1: the same bilinear weights in
float64 as the toolbox), so results match it to float rounding.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import logging
import math
import multiprocessing
import os
import queue
import shutil
import sys
import zipfile
import zlib
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from utils.datasets import get_dataset_facts
from utils.image_io import encode_image

log = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_SCENES_FILE = os.path.join(HERE, "nyu_train_scenes.txt")  # upstream's utils/train_scenes.txt
LIST_NAME = "nyudepthv2_train_files_with_gt.txt"  # what arguments_train_nyu.txt reads
COMPLETE_MARKER = ".nyu_raw_complete"

# ---------------------------------------------------------------- camera_params.m (toolbox)
FRAME_SIZE = (480, 640)  # (H, W) of both Kinect streams
RGB_INTRINSICS = (5.1885790117450188e+02, 5.1946961112127485e+02,  # fx, fy, cx, cy (px)
                  3.2558244941119034e+02, 2.5373616633400465e+02)
RGB_DISTORTION = (2.0796615318809061e-01, -5.8613825163911781e-01,  # k1, k2, p1, p2, k3
                  7.2231363135888329e-04, 1.0479627195765181e-03, 4.9856986684705107e-01)
DEPTH_INTRINSICS = (5.8262448167737955e+02, 5.8269103270988637e+02,
                    3.1304475870804731e+02, 2.3844389626620386e+02)
DEPTH_DISTORTION = (-9.9897236553084481e-02, 3.9065324602765344e-01,
                    1.9290592870229277e-03, -1.9422022475975055e-03, -5.1031725053400578e-01)
# The nine rotation values as camera_params.m lists them; it negates them, reshapes column-major
# and inverts the transpose (so R is close to -I: the sign cancels in the perspective division).
_LISTED_ROTATION = (9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03,
                    -5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03,
                    -4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01)
DEPTH_TO_RGB_ROTATION = np.linalg.inv(-np.reshape(_LISTED_ROTATION, (3, 3), order="F").T)
# T = [t_x; t_z; t_y] in depth_world2rgb_world.m (the toolbox's order, kept).
DEPTH_TO_RGB_TRANSLATION = np.array([2.5031875059141302e-02, -2.9342312935846411e-04,
                                     6.6238747008330102e-04])
DEPTH_PARAM_1, DEPTH_PARAM_2 = 351.3, 1092.5  # metres = p1 / (p2 - raw)
TOOLBOX_MAX_DEPTH = 10.0  # camera_params.m maxDepth (m): every clip in the toolbox uses it
NO_READING_RAW = 2047  # the value project_depth_map.m gives noisy / invalid pixels
MIN_VALID_RAW = 600  # undistorted raw values below this are invalid (interpolated into the void)

# ---------------------------------------------------------------- the BTS driver
SAMPLE_STEP = 7
FAULTY_DEPTH_FRAMES = frozenset({"d-1315166703.129542-2466101449.pgm"})
JPEG_QUALITY = 75  # MATLAB imwrite's default
PNG_LEVEL = 3  # zlib level of the depth PNGs: 3.5x faster than Pillow's 6 for 3 % more bytes
RAW_PREFIXES = {"d-": "depth", "r-": "rgb", "a-": "accel"}


class RawFileError(Exception):
    """A raw dump file that cannot be used; ``str()`` is one line naming the file."""


@dataclasses.dataclass(frozen=True)
class SyncedFrame:
    """One depth frame with its nearest RGB frame and accelerometer dump (file names)."""

    depth: str
    rgb: str
    accel: Optional[str]
    time_diff: float  # |t_depth - t_rgb| in seconds (the toolbox's timeDiff)


# ---------------------------------------------------------------- get_synched_frames.m
def timestamp(name: str) -> float:
    """Seconds in a dump name ``X-<seconds>-<counter>.<ext>``; RawFileError if it has none."""
    try:
        seconds = float(name[2:].split("-")[0])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise RawFileError(f"{name}: no timestamp in the file name (expected X-<seconds>-<n>.ext)")
    return seconds


def _nearest_forward(t_depth: float, times: List[float], start: int) -> int:
    """Advance from ``start`` while the next time is no farther from ``t_depth`` (toolbox loop)."""
    index, best = start, abs(t_depth - times[start])
    while index + 1 < len(times):
        diff = abs(t_depth - times[index + 1])
        if diff > best:
            break
        best, index = diff, index + 1
    return index


def synchronise(names: Iterable[str]) -> List[SyncedFrame]:
    """Pair every depth frame with the nearest RGB frame and dump, as ``get_synched_frames.m``."""
    kinds: Dict[str, List[str]] = {"depth": [], "rgb": [], "accel": []}
    for name in sorted(names):  # text order, as the toolbox's sort(ls)
        kind = RAW_PREFIXES.get(name[:2])
        if kind:
            kinds[kind].append(name)
    if not kinds["depth"] or not kinds["rgb"]:
        raise RawFileError(f"{len(kinds['depth'])} depth (d-*.pgm) and {len(kinds['rgb'])} RGB (r-*.ppm) "
                           "frames: not a raw NYU scene folder")
    rgb_times = [timestamp(n) for n in kinds["rgb"]]
    accel_times = [timestamp(n) for n in kinds["accel"]]
    frames, rgb_at, accel_at = [], 0, 0
    for depth in kinds["depth"]:
        t_depth = timestamp(depth)
        rgb_at = _nearest_forward(t_depth, rgb_times, rgb_at)
        accel = None
        if accel_times:
            accel_at = _nearest_forward(t_depth, accel_times, accel_at)
            accel = kinds["accel"][accel_at]
        frames.append(SyncedFrame(depth, kinds["rgb"][rgb_at], accel, abs(t_depth - rgb_times[rgb_at])))
    return frames


def synchronise_scene(scene_dir: str) -> List[SyncedFrame]:
    """:func:`synchronise` over the files of one raw scene folder."""
    try:
        names = os.listdir(scene_dir)
    except OSError as err:
        raise RawFileError(f"{scene_dir}: cannot list the scene folder ({err.strerror})") from None
    try:
        return synchronise(names)
    except RawFileError as err:
        raise RawFileError(f"{scene_dir}: {err}") from None


# ---------------------------------------------------------------- imread of the dumps
def _read_pnm(path: str, magic: bytes, channels: int) -> np.ndarray:
    """Samples of a binary PGM/PPM as a flat array (uint8, or '>u2' for maxval > 255)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise RawFileError(f"{path}: cannot read ({err.strerror})") from None
    tokens, pos = [], 0
    while len(tokens) < 4:  # magic, width, height, maxval; '#' comments allowed between them
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise RawFileError(f"{path}: truncated header (expected a {magic.decode()} PNM file)")
        tokens.append(data[start:pos])
        if len(tokens) == 1 and tokens[0] != magic:
            raise RawFileError(f"{path}: not a binary {'PGM' if channels == 1 else 'PPM'} file "
                               f"(starts with {data[:2]!r}, expected {magic!r})")
    try:
        width, height, maxval = (int(t) for t in tokens[1:])
    except ValueError:
        raise RawFileError(f"{path}: malformed header {b' '.join(tokens)!r}") from None
    if (height, width) != FRAME_SIZE:
        raise RawFileError(f"{path}: {width}x{height} frame, expected the Kinect's "
                           f"{FRAME_SIZE[1]}x{FRAME_SIZE[0]}")
    pos += 1  # the single whitespace byte after maxval
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
    count = width * height * channels
    if len(data) - pos < count * dtype.itemsize:
        raise RawFileError(f"{path}: truncated: {max(len(data) - pos, 0)} of {count * dtype.itemsize} "
                           "data bytes")
    return np.frombuffer(data, dtype=dtype, count=count, offset=pos)


def read_raw_depth(path: str) -> np.ndarray:
    """(480, 640) uint16 raw Kinect disparity of a ``d-*.pgm`` dump (imread + swapbytes)."""
    samples = _read_pnm(path, b"P5", 1)
    if samples.dtype.itemsize != 2:
        raise RawFileError(f"{path}: 8-bit PGM, expected the Kinect's 16-bit depth dump")
    return samples.astype(np.uint16).byteswap().reshape(FRAME_SIZE)  # imread's value, bytes swapped


def read_raw_rgb(path: str) -> np.ndarray:
    """(480, 640, 3) uint8 RGB of an ``r-*.ppm`` dump."""
    samples = _read_pnm(path, b"P6", 3)
    if samples.dtype.itemsize != 1:
        raise RawFileError(f"{path}: 16-bit PPM, expected the Kinect's 8-bit RGB dump")
    return samples.reshape(FRAME_SIZE + (3,)).copy()


# ---------------------------------------------------------------- undistort.m / undistort_depth.m
def apply_distortion(x: np.ndarray, y: np.ndarray, distortion: Sequence[float]
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Distorted normalised coordinates (``apply_distortion.m``; k1, k2, p1, p2, k3)."""
    k1, k2, p1, p2, k3 = distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


@functools.lru_cache(maxsize=4)
def distortion_map(intrinsics: Tuple[float, ...], distortion: Tuple[float, ...],
                   size: Tuple[int, int] = FRAME_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """Where every undistorted pixel samples the distorted frame.

    Returns ``(coords, inside)``: ``coords`` (2, H·W) input (row, col) of the output pixels in C
    order, 0-based; ``inside`` (H, W) bool, True where floor() of that point is in [0, n-2]
    (``rect``'s good points). Constant per camera, so cached.
    """
    fx, fy, cx, cy = intrinsics
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    xd, yd = apply_distortion((cols - cx) / fx, (rows - cy) / fy, distortion)
    src_col, src_row = fx * xd + cx, fy * yd + cy
    inside = ((np.floor(src_col) >= 0) & (np.floor(src_col) <= width - 2)
              & (np.floor(src_row) >= 0) & (np.floor(src_row) <= height - 2))
    coords = np.stack([src_row.ravel(), src_col.ravel()])
    coords.setflags(write=False)
    inside.setflags(write=False)
    return coords, inside


def _sample(image: np.ndarray, coords: np.ndarray, inside: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear samples of a 2-D float64 image at ``coords``, ``fill`` where not ``inside``."""
    from scipy import ndimage

    flat_inside = inside.ravel()
    out = np.full(inside.size, fill, dtype=np.float64)
    out[flat_inside] = ndimage.map_coordinates(image, coords[:, flat_inside], order=1, mode="nearest")
    return out.reshape(inside.shape)


def undistort(image: np.ndarray, intrinsics: Sequence[float], distortion: Sequence[float],
              fill: float = 255.0) -> np.ndarray:
    """``undistort.m`` of a (H, W) or (H, W, C) image -> float64 of the same shape."""
    coords, inside = distortion_map(tuple(intrinsics), tuple(distortion), image.shape[:2])
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return _sample(image, coords, inside, fill)
    return np.stack([_sample(image[..., c], coords, inside, fill) for c in range(image.shape[2])], -1)


def undistort_depth(depth: np.ndarray, noise_mask: np.ndarray, intrinsics: Sequence[float],
                    distortion: Sequence[float]) -> np.ndarray:
    """``undistort_depth.m``: bilinear undistortion that gives ``noise_mask`` input pixels weight 0
    and renormalises the others; 0 where no neighbour is usable or the point is outside."""
    coords, inside = distortion_map(tuple(intrinsics), tuple(distortion), depth.shape)
    usable = (~noise_mask).astype(np.float64)
    # Σ aᵢ·mᵢ·Iᵢ / Σ aᵢ·mᵢ = the toolbox's renormalised weights (aᵢ bilinear, mᵢ usable).
    weighted = _sample(np.asarray(depth, np.float64) * usable, coords, inside, 0.0)
    weight = _sample(usable, coords, inside, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, weighted / np.where(weight > 0, weight, 1.0), 0.0)


# ---------------------------------------------------------------- project_depth_map.m
def matlab_round(values: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves away from zero (numpy rounds them to even); NaN stays NaN."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def depth_rel2depth_abs(raw: np.ndarray) -> np.ndarray:
    """Raw Kinect disparity -> metres, clipped to [0, 10] (``depth_rel2depth_abs.m``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = DEPTH_PARAM_1 / (DEPTH_PARAM_2 - np.asarray(raw, np.float64))
    depth[depth > TOOLBOX_MAX_DEPTH] = TOOLBOX_MAX_DEPTH
    depth[depth < 0] = 0.0
    return depth


def depth_plane2depth_world(depth_m: np.ndarray) -> np.ndarray:
    """(H·W, 3) points in the depth camera (m) of an undistorted depth map (1-based pixel grid)."""
    fx, fy, cx, cy = DEPTH_INTRINSICS
    height, width = depth_m.shape
    yy, xx = np.mgrid[1:height + 1, 1:width + 1]
    return np.stack([((xx - cx) * depth_m / fx).ravel(), ((yy - cy) * depth_m / fy).ravel(),
                     depth_m.ravel()], axis=1)


def depth_world2rgb_world(points: np.ndarray) -> np.ndarray:
    """Depth-camera points -> RGB-camera points (``depth_world2rgb_world.m``: R·p + T)."""
    rotation, shift = DEPTH_TO_RGB_ROTATION, DEPTH_TO_RGB_TRANSLATION
    # Written out: an (N, 3) @ (3, 3) product goes through BLAS, 20x slower for this shape.
    return np.stack([rotation[i, 0] * points[:, 0] + rotation[i, 1] * points[:, 1]
                     + rotation[i, 2] * points[:, 2] + shift[i] for i in range(3)], axis=1)


def rgb_world2rgb_plane(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Pinhole projection with the RGB intrinsics -> 1-based (x, y) (``rgb_world2rgb_plane.m``)."""
    fx, fy, cx, cy = RGB_INTRINSICS
    with np.errstate(divide="ignore", invalid="ignore"):
        return points[:, 0] * fx / points[:, 2] + cx, points[:, 1] * fy / points[:, 2] + cy


def project_depth_map(raw_depth: np.ndarray, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``project_depth_map.m``: the depth frame in the undistorted RGB camera, and that RGB frame.

    Args:
      raw_depth: (480, 640) uint16 raw disparity, bytes already swapped (:func:`read_raw_depth`).
      rgb: (480, 640, 3) uint8 raw RGB frame.
    Returns:
      depth_m: (480, 640) float64 metres in [0, 10], 0 = no depth.
      rgb_undistorted: (480, 640, 3) uint8.
    """
    rgb_ud = undistort(rgb, RGB_INTRINSICS, RGB_DISTORTION)
    rgb_ud = np.clip(np.floor(rgb_ud + 0.5), 0, 255).astype(np.uint8)  # MATLAB uint8()

    noise = (raw_depth == raw_depth.max()).astype(np.float64) * 255
    noise = undistort(noise, DEPTH_INTRINSICS, DEPTH_DISTORTION) > 0
    raw_ud = undistort_depth(raw_depth.astype(np.float64), noise, DEPTH_INTRINSICS, DEPTH_DISTORTION)
    raw_ud[raw_ud < MIN_VALID_RAW] = NO_READING_RAW  # "fix issues introduced by distortion"
    raw_ud[noise] = NO_READING_RAW

    depth2 = depth_rel2depth_abs(raw_ud)  # (H, W) metres in the depth camera
    x_proj, y_proj = rgb_world2rgb_plane(depth_world2rgb_world(depth_plane2depth_world(depth2)))
    height, width = raw_depth.shape
    with np.errstate(invalid="ignore"):
        x_proj, y_proj = matlab_round(x_proj), matlab_round(y_proj)
        good = (x_proj > 0) & (x_proj < width) & (y_proj > 0) & (y_proj < height)
    target = (y_proj[good].astype(np.int64) - 1) * width + (x_proj[good].astype(np.int64) - 1)
    # Z-buffer: the toolbox writes points far to near, so the nearest one is left at each pixel.
    nearest = np.full(height * width, np.inf)
    np.minimum.at(nearest, target, depth2.ravel()[good])
    depth_out = np.where(np.isinf(nearest), 0.0, nearest).reshape(height, width)
    depth_out[depth_out > TOOLBOX_MAX_DEPTH] = TOOLBOX_MAX_DEPTH
    depth_out[~(depth_out >= 0)] = 0.0  # negatives and NaN
    return depth_out, rgb_ud


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """The driver's ``uint16(depth * 1000)``: rounded half away from zero, saturated, NaN -> 0."""
    scaled = np.nan_to_num(np.asarray(depth_m, np.float64) * get_dataset_facts("nyu").depth_scale)
    return np.clip(matlab_round(scaled), 0, np.iinfo(np.uint16).max).astype(np.uint16)


# ---------------------------------------------------------------- sync_project_frames_multi_threads.m
def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def scene_is_complete(out_dir: str, scene: str) -> bool:
    return os.path.isfile(os.path.join(out_dir, scene, COMPLETE_MARKER))


def completed_frames(out_dir: str, scene: str) -> int:
    """Frames of a finished scene, from its marker."""
    with open(os.path.join(out_dir, scene, COMPLETE_MARKER), encoding="utf-8") as handle:
        return int(json.load(handle)["frames"])


def convert_scene(raw_dir: str, out_dir: str, scene: str, skip_unreadable: bool = False,
                  progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Convert one scene into ``out_dir/scene`` (built in ``scene.partial``, renamed when done).

    Returns the number of frames written; RawFileError (one line naming the file) when a file is
    unusable and ``skip_unreadable`` is off, leaving nothing of the scene behind.
    """
    final = os.path.join(out_dir, scene)
    if scene_is_complete(out_dir, scene):
        return completed_frames(out_dir, scene)
    if os.path.exists(final):
        raise RawFileError(f"{final} exists but was not written by tools.nyu_raw (no {COMPLETE_MARKER}); "
                           "move it away to convert this scene")
    scene_dir = os.path.join(raw_dir, scene)
    frames = synchronise_scene(scene_dir)
    sampled = frames[::SAMPLE_STEP]
    staging = final + ".partial"
    shutil.rmtree(staging, ignore_errors=True)  # an interrupted earlier run
    os.makedirs(staging)
    index, skipped = 0, []
    try:
        for done, frame in enumerate(sampled, start=1):
            if frame.depth in FAULTY_DEPTH_FRAMES:
                skipped.append(frame.depth)
            else:
                try:
                    rgb = read_raw_rgb(os.path.join(scene_dir, frame.rgb))
                    raw_depth = read_raw_depth(os.path.join(scene_dir, frame.depth))
                except RawFileError as err:
                    if not skip_unreadable:
                        raise
                    log.warning("warning: skipped a frame of %s: %s", scene, err)
                    skipped.append(frame.depth)
                else:
                    depth_m, rgb_ud = project_depth_map(raw_depth, rgb)
                    _write(os.path.join(staging, f"rgb_{index:05d}.jpg"),
                           encode_image(rgb_ud, ".jpg", quality=JPEG_QUALITY))
                    _write(os.path.join(staging, f"sync_depth_{index:05d}.png"),
                           encode_image(depth_to_millimetres(depth_m), ".png", compress_level=PNG_LEVEL))
                    index += 1
            if progress:
                progress(done, len(sampled))
        marker = {"frames": index, "synchronised_frames": len(frames), "sample_step": SAMPLE_STEP,
                  "skipped": skipped}
        with open(os.path.join(staging, COMPLETE_MARKER), "w", encoding="utf-8") as handle:
            json.dump(marker, handle, indent=1)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def list_lines(out_dir: str, scenes: Sequence[str]) -> List[str]:
    """Upstream's list lines for the finished scenes, in scene then index order."""
    focal = get_dataset_facts("nyu").default_focal
    return [f"/{scene}/rgb_{i:05d}.jpg /{scene}/sync_depth_{i:05d}.png {focal}"
            for scene in scenes for i in range(completed_frames(out_dir, scene))]


def write_list(path: str, lines: Sequence[str]) -> bool:
    """Write the list atomically; False if it already holds exactly these lines. A different
    earlier file (e.g. upstream's list) is kept as ``path.bak``."""
    text = "".join(f"{line}\n" for line in lines)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
        if not os.path.exists(path + ".bak"):
            os.replace(path, path + ".bak")
            log.warning("note: replaced %s (the earlier file is now %s.bak)", path, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".part", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".part", path)
    return True


def read_scene_names(path: str) -> List[str]:
    """Scene names, one a line (blank lines and '#' comments ignored)."""
    try:
        with open(path, encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except OSError as err:
        raise SystemExit(f"error: --scenes {path}: cannot read ({err.strerror})") from None
    bad = [n for n in names if "/" in n or n.startswith(".")]
    if not names or bad:
        raise SystemExit(f"error: --scenes {path}: expected one scene folder name a line"
                         + (f", got {bad[0]!r}" if bad else ", found none"))
    return names


# ---------------------------------------------------------------- parallel run with progress bars
class _Progress:
    """An overall bar (scenes) and one bar per running scene (frames); quiet when not a TTY."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.overall = tqdm(total=total, desc="scenes", unit="scene", position=0, disable=None)
        self.bars: Dict[str, object] = {}
        self.finished: Set[str] = set()

    def update(self, scene: str, done: int, total: int) -> None:
        if scene in self.finished:  # a late message from a worker
            return
        bar = self.bars.get(scene)
        if bar is None:
            bar = self.bars[scene] = self._tqdm(total=total, desc=scene, unit="frame", leave=False,
                                                position=len(self.bars) + 1, disable=None)
        bar.update(done - bar.n)

    def finish(self, scene: str, frames: int, error: Optional[str]) -> None:
        """Close the scene's bar and report it in one line (above the bars)."""
        self.finished.add(scene)
        bar = self.bars.pop(scene, None)
        if bar is not None:
            bar.close()
        self._tqdm.write(f"error: {error}" if error else f"{scene}: {frames} frames", file=sys.stderr)
        self.overall.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


_PROGRESS_QUEUE = None  # set in each worker process by _init_worker


def _init_worker(progress_queue) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def _convert_in_worker(raw_dir: str, out_dir: str, scene: str, skip_unreadable: bool
                       ) -> Tuple[str, int, Optional[str]]:
    """(scene, frames, error line or None); progress goes to the parent through the queue."""
    def report(done: int, total: int) -> None:
        if _PROGRESS_QUEUE is not None:
            _PROGRESS_QUEUE.put((scene, done, total))

    try:
        return scene, convert_scene(raw_dir, out_dir, scene, skip_unreadable, report), None
    except (RawFileError, OSError) as err:  # a bad raw file; a full or read-only disk
        return scene, 0, str(err)


def convert_scenes(raw_dir: str, out_dir: str, scenes: Sequence[str], workers: int = 1,
                   skip_unreadable: bool = False) -> Dict[str, Tuple[int, Optional[str]]]:
    """Convert the unfinished ``scenes``; returns scene -> (frames, error line or None)."""
    todo = [s for s in scenes if not scene_is_complete(out_dir, s)]
    results: Dict[str, Tuple[int, Optional[str]]] = {}
    bars = _Progress(len(todo))
    try:
        if workers <= 1 or len(todo) <= 1:
            for scene in todo:
                _, frames, error = _run_here(raw_dir, out_dir, scene, skip_unreadable, bars)
                results[scene] = (frames, error)
                bars.finish(scene, frames, error)
            return results
        context = multiprocessing.get_context("spawn")
        progress_queue = context.Queue()
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                                                    initializer=_init_worker,
                                                    initargs=(progress_queue,)) as pool:
            pending = {pool.submit(_convert_in_worker, raw_dir, out_dir, s, skip_unreadable) for s in todo}
            while pending:
                finished, pending = concurrent.futures.wait(
                    pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                _drain(progress_queue, bars)
                for future in finished:
                    scene, frames, error = future.result()
                    results[scene] = (frames, error)
                    bars.finish(scene, frames, error)
    finally:
        bars.close()
    return results


def _run_here(raw_dir: str, out_dir: str, scene: str, skip_unreadable: bool, bars: _Progress
              ) -> Tuple[str, int, Optional[str]]:
    try:
        frames = convert_scene(raw_dir, out_dir, scene, skip_unreadable,
                               lambda done, total: bars.update(scene, done, total))
        return scene, frames, None
    except (RawFileError, OSError) as err:  # a bad raw file; a full or read-only disk
        return scene, 0, str(err)


def _drain(progress_queue, bars: _Progress) -> None:
    while True:
        try:
            scene, done, total = progress_queue.get_nowait()
        except queue.Empty:
            return
        bars.update(scene, done, total)


# ---------------------------------------------------------------- archives -> raw/<scene>/
def unpack_archive(archive: str, raw_dir: str, scenes: Optional[Set[str]] = None) -> int:
    """Extract the dump files of ``archive`` into ``raw_dir/<scene>/`` (the scene = the folder that
    holds a file, however deep the archive nests it), only scenes in ``scenes`` when given. Files
    already there with the right size are skipped; each file is written atomically. Returns the
    number of files written."""
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as err:
        raise SystemExit(f"error: {archive}: not a readable zip archive ({err}); delete it and re-run") from None
    written = 0
    with zf:
        for info in zf.infolist():
            parts = info.filename.replace("\\", "/").split("/")
            if info.is_dir() or len(parts) < 2 or parts[-2] in ("", ".", ".."):
                continue
            scene, name = parts[-2], parts[-1]
            if scenes is not None and scene not in scenes:
                continue
            target = os.path.join(raw_dir, scene, name)
            if os.path.isfile(target) and os.path.getsize(target) == info.file_size:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                with zf.open(info) as src, open(target + ".part", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                os.remove(target + ".part")
                raise SystemExit(f"error: {archive}: {info.filename} is damaged ({err}); delete the "
                                 "archive and re-run") from None
            os.replace(target + ".part", target)
            written += 1
    return written


# ---------------------------------------------------------------- command line
def _default_paths() -> Tuple[str, str, str]:
    dataset = os.environ.get("BTS_DATASET_DIR") or "dataset"
    lists = os.environ.get("BTS_LISTS_DIR") or "train_test_inputs"
    nyu = os.path.join(dataset, "nyu_depth_v2")
    return os.path.join(nyu, "raw"), os.path.join(nyu, "sync"), os.path.join(lists, LIST_NAME)


def build_parser() -> argparse.ArgumentParser:
    raw, sync, listing = _default_paths()
    parser = argparse.ArgumentParser(
        prog="python -m tools.nyu_raw", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--raw_dir", default=raw, help="the extracted raw scenes, <raw_dir>/<scene>/")
    parser.add_argument("--out_dir", default=sync, help="where the <scene>/ frame folders go")
    parser.add_argument("--list", default=listing, help="the filenames list to write")
    parser.add_argument("--scenes", default=TRAIN_SCENES_FILE,
                        help="scene names, one a line (shipped: upstream's train_scenes.txt)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="scenes converted in parallel (processes)")
    parser.add_argument("--skip_unreadable", action="store_true",
                        help="skip frames with a corrupt or truncated file instead of stopping the scene")
    parser.add_argument("--unpack", nargs="+", metavar="ARCHIVE",
                        help="only extract these zip archives into --raw_dir (the scenes of --scenes)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    scenes = read_scene_names(args.scenes)
    if args.unpack:
        for archive in args.unpack:
            count = unpack_archive(archive, args.raw_dir, set(scenes))
            log.info("%s: %d files extracted into %s", archive, count, args.raw_dir)
        return 0
    from utils.optional import require

    require("scipy", "requirements-mat.txt", "tools.nyu_raw")  # the resampling
    if args.workers < 1:
        raise SystemExit(f"error: --workers {args.workers}: expected at least 1")
    missing = [s for s in scenes if not scene_is_complete(args.out_dir, s)
               and not os.path.isdir(os.path.join(args.raw_dir, s))]
    if missing:
        raise SystemExit(f"error: {len(missing)} of the {len(scenes)} scenes of {args.scenes} are not in "
                         f"{args.raw_dir} (first: {missing[0]}); run ./init_nyu_data_raw_multiple.sh "
                         "(or ./init_nyu_data_raw.sh), or pass --scenes FILE to convert a subset")
    results = convert_scenes(args.raw_dir, args.out_dir, scenes, args.workers, args.skip_unreadable)
    failed = sorted(s for s, (_, error) in results.items() if error)
    if failed:
        print(f"error: {len(failed)} of {len(scenes)} scenes failed ({', '.join(failed[:5])}"
              f"{', ...' if len(failed) > 5 else ''}); {args.list} was not written. Fix or re-download "
              "the files named above and re-run: finished scenes are kept", file=sys.stderr)
        return 1
    lines = list_lines(args.out_dir, scenes)
    changed = write_list(args.list, lines)
    print(f"{len(lines)} frames of {len(scenes)} scenes in {args.out_dir} ({len(results)} converted now); "
          f"list {args.list}{'' if changed else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

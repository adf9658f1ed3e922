# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Image and depth files: the numpy readers of RGB images and 16-bit depth PNGs (one-line
``DataError`` naming the file), and the writers of predictions: raw uint16 PNG, colormapped PNG
(the one colormap rule, also used for TensorBoard), .npy, coloured .ply.

Every writer goes through ``utils.io`` (temporary name + rename), so an interrupted run never
leaves a half-written file under a final name, on local disks and ``gs://`` alike.

Raw PNG convention (design §6.1): uint16 = depth_m × scale, scale 1000 (NYU) or 256 (KITTI),
multiplied in float32 and truncated like the official writer (``astype(np.uint16)``); unlike it,
values at or beyond 65535/scale are clipped to 65535 instead of wrapping, and NaN / negative
depths become 0 (= invalid in the dataset convention).
"""
from __future__ import annotations

import functools
import io
import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.datasets import INTRINSICS_FRAME_SIZE, get_dataset_facts
from utils.io import DataError, atomic_write_bytes, first_line

UINT16_MAX = 65535
DEFAULT_COLORMAP = "plasma_r"  # perceptual; near = bright yellow, far = dark purple, invalid = black
Intrinsics = Tuple[float, float, float, float]  # fx, fy, cx, cy in pixels


# -------------------------------------------------------------------------------------------
# Raw uint16 depth PNG
# -------------------------------------------------------------------------------------------
def depth_scale(dataset: str) -> float:
    """Stored PNG value per metre: 1000 (NYU) or 256 (KITTI)."""
    return get_dataset_facts(dataset).depth_scale


def depth_to_uint16(depth_m: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) metres → uint16 PNG values: float32 ×scale, truncated; clipped, never wrapped."""
    scaled = np.asarray(depth_m, dtype=np.float32) * np.float32(scale)  # float32, as upstream
    scaled = np.where(np.isnan(scaled) | (scaled < 0), np.float32(0), scaled)
    return np.minimum(scaled, np.float32(UINT16_MAX)).astype(np.uint16)


def ground_truth_to_uint16(depth_m: np.ndarray, scale: float) -> np.ndarray:
    """Dataset ground truth in metres → uint16 PNG values, *rounded* as the upstream NYU
    extraction does; clipped to [0, 65535], 0 stays 0 (predictions: :func:`depth_to_uint16`)."""
    return np.clip(np.round(np.asarray(depth_m) * scale), 0, UINT16_MAX).astype(np.uint16)


def uint16_to_depth(values: np.ndarray, scale: float) -> np.ndarray:
    """PNG values → float32 metres exactly as the official reader (``astype(float32) / scale``)."""
    return np.asarray(values).astype(np.float32) / scale


def quantize_depth(depth_m: np.ndarray, scale: float) -> np.ndarray:
    """The float32 depth a raw PNG of ``depth_m`` reads back as (the evaluated prediction)."""
    return uint16_to_depth(depth_to_uint16(depth_m, scale), scale)


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 (H, W[, 3]) or uint16 (H, W) array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG",
                                                      compress_level=compress_level)
    return buffer.getvalue()


def save_depth_png(path: str, depth_m: np.ndarray, scale: float) -> np.ndarray:
    """Write a raw 16-bit depth PNG; returns the stored uint16 values."""
    values = depth_to_uint16(depth_m, scale)
    atomic_write_bytes(path, encode_png(values))
    return values


def read_file_bytes(path: str) -> bytes:
    """The bytes of ``path`` (local, gs://, ram://); DataError 'file not found: P' otherwise."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    except tf.errors.NotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (tf.errors.OpError, OSError) as err:
        raise DataError(f"cannot read {path}: {first_line(err)}") from None


def _open_image(path: str, data: Optional[bytes] = None) -> Image.Image:
    """Fully decoded Pillow image of ``path`` (or of its ``data`` bytes); DataError if corrupt."""
    data = read_file_bytes(path) if data is None else data
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    return image


def load_image(path: str, data: Optional[bytes] = None) -> np.ndarray:
    """An RGB image file (local or gs://, or its ``data`` bytes) -> (H, W, 3) uint8."""
    return np.asarray(_open_image(path, data).convert("RGB"), np.uint8)


def load_depth_png(path: str, data: Optional[bytes] = None) -> np.ndarray:
    """A 16-bit single-channel PNG (or its ``data`` bytes) -> (H, W) uint16 raw values."""
    image = _open_image(path, data)
    if image.format != "PNG" or image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(f"{path}: expected a 16-bit single-channel PNG depth map, got "
                        f"{image.format} mode {image.mode} (8-bit PNG?)")
    return np.asarray(image).astype(np.uint16)


def read_depth_png(path: str, scale: float) -> np.ndarray:
    """(H, W) float32 metres from a raw depth PNG (official reader semantics; 0 = invalid)."""
    return uint16_to_depth(load_depth_png(path), scale)


# -------------------------------------------------------------------------------------------
# Colormap, npy, RGB
# -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def colormap_lut(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(256, 3) uint8 RGB table of a matplotlib colormap: entry i is the colour of i / 255."""
    from matplotlib import colormaps

    lut = (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)  # cached and shared
    return lut


def colorize_depth(depth_m: np.ndarray, max_depth: float, cmap: str = DEFAULT_COLORMAP
                   ) -> np.ndarray:
    """uint8 RGB (..., 3) of depth (...) over the FIXED range [0, max_depth] (comparable images).

    The one colormap rule (saved ``cmap/`` PNGs, the demo, TensorBoard): depth / max_depth clipped
    to [0, 1], table entry floor(x · 256) (the last one for x = 1), as matplotlib indexes its
    256-entry maps. Depths beyond max_depth saturate; invalid pixels (≤ 0, NaN, inf) are black.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    normalised = np.clip(np.where(valid, depth, 0) / np.float32(max_depth), 0.0, 1.0)
    index = np.minimum((normalised * np.float32(256)).astype(np.int32), 255)
    rgb = colormap_lut(cmap)[index]
    rgb[~valid] = 0
    return rgb


def save_colormap_png(path: str, depth_m: np.ndarray, max_depth: float,
                      cmap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Write the colormapped depth PNG; returns its RGB array (for the demo)."""
    rgb = colorize_depth(depth_m, max_depth, cmap)
    atomic_write_bytes(path, encode_png(rgb))
    return rgb


def save_rgb_png(path: str, image: np.ndarray) -> None:
    """Write a uint8 RGB image as PNG."""
    atomic_write_bytes(path, encode_png(np.asarray(image, dtype=np.uint8)))


def encode_image(image: np.ndarray, path: str, **pillow_options) -> bytes:
    """File bytes of a uint8 RGB or uint16 depth array: JPEG when ``path`` ends with ``.jpg`` or
    ``.jpeg``, else PNG; ``pillow_options`` go to Pillow's ``save`` (e.g. ``quality=95``)."""
    buffer = io.BytesIO()
    kind = "JPEG" if path.lower().endswith((".jpg", ".jpeg")) else "PNG"
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=kind, **pillow_options)
    return buffer.getvalue()


def save_image(path: str, image: np.ndarray, **pillow_options) -> None:
    """Write :func:`encode_image` of ``image`` to ``path`` atomically."""
    atomic_write_bytes(path, encode_image(image, path, **pillow_options))


def encode_npy(depth_m: np.ndarray) -> bytes:
    """``.npy`` bytes of float32 depth in metres."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(depth_m, dtype=np.float32))
    return buffer.getvalue()


def save_depth_npy(path: str, depth_m: np.ndarray) -> None:
    """Write float32 depth in metres as ``.npy``."""
    atomic_write_bytes(path, encode_npy(depth_m))


# -------------------------------------------------------------------------------------------
# Point clouds
# -------------------------------------------------------------------------------------------
def default_intrinsics(dataset: str, height: int, width: int, fx: Optional[float] = None,
                       fy: Optional[float] = None, cx: Optional[float] = None,
                       cy: Optional[float] = None) -> Intrinsics:
    """(fx, fy, cx, cy) in px for an image of (height, width); given values win.

    Defaults are the dataset's ``default_intrinsics``, which describe its native frame
    (``INTRINSICS_FRAME_SIZE``: NYU 480×640, KITTI 375×1242). For another image size the image is
    taken to be the whole native field of view resized, so fx, cx scale with width / native
    width and fy, cy with height / native height. (A KB-cropped KITTI prediction is pasted back
    to its full frame by the predictor, so it keeps the native intrinsics.)
    """
    d_fx, d_fy, d_cx, d_cy = get_dataset_facts(dataset).default_intrinsics
    native_h, native_w = INTRINSICS_FRAME_SIZE[dataset]
    sx, sy = width / native_w, height / native_h
    values = (fx if fx is not None else d_fx * sx, fy if fy is not None else d_fy * sy,
              cx if cx is not None else d_cx * sx, cy if cy is not None else d_cy * sy)
    if not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(f"intrinsics must be finite with fx, fy > 0, got {values}")
    return tuple(float(v) for v in values)


def depth_to_points(depth_m: np.ndarray, intrinsics: Intrinsics) -> Tuple[np.ndarray, np.ndarray]:
    """Back-project valid pixels: returns (N, 3) float32 points (x right, y down, z forward)
    and the (H, W) boolean mask of the pixels used (depth finite and > 0).

    Pixel (row v, column u) at depth z: x = (u − cx)·z / fx, y = (v − cy)·z / fy.
    """
    fx, fy, cx, cy = intrinsics
    depth = np.asarray(depth_m, dtype=np.float64)
    mask = np.isfinite(depth) & (depth > 0)
    rows, cols = np.nonzero(mask)
    z = depth[rows, cols]
    points = np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1)
    return points.astype(np.float32), mask


def encode_ply(points: np.ndarray, colors: np.ndarray) -> bytes:
    """Binary little-endian PLY of (N, 3) float32 points with (N, 3) uint8 colours."""
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = colors[:, i]
    header = ("ply\nformat binary_little_endian 1.0\ncomment bts-tf depth point cloud\n"
              f"element vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    return header.encode("ascii") + vertex.tobytes()


def read_ply(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float32, colours (N, 3) uint8) from a PLY written by :func:`encode_ply`."""
    with open(path, "rb") as handle:
        data = handle.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    count = int(next(line.split()[-1] for line in data[:end].decode("ascii").splitlines()
                     if line.startswith("element vertex")))
    vertex = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                              ("red", "u1"), ("green", "u1"), ("blue", "u1")],
                           count=count)
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    colors = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    return points, colors


def encode_point_cloud(depth_m: np.ndarray, rgb: np.ndarray, intrinsics: Intrinsics
                       ) -> Tuple[bytes, int]:
    """(binary ``.ply`` bytes, number of points) of the valid depth pixels coloured by ``rgb``."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.shape[:2] != np.shape(depth_m):
        raise ValueError(f"colour image {rgb.shape[:2]} and depth {np.shape(depth_m)} differ in size")
    points, mask = depth_to_points(depth_m, intrinsics)
    return encode_ply(points, rgb[mask][:, :3]), len(points)


def save_point_cloud(path: str, depth_m: np.ndarray, rgb: np.ndarray,
                     intrinsics: Intrinsics) -> int:
    """Write a coloured ``.ply`` of the valid depth pixels; returns the number of points."""
    data, count = encode_point_cloud(depth_m, rgb, intrinsics)
    atomic_write_bytes(path, data)
    return count

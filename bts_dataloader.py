# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""BTS input pipeline: one ``tf.data`` chain per mode, from image files or TFRecord shards (design §5).

Public API (other modules code against exactly this):

* ``read_filenames_file(path, data_path="", gt_path="", *, without_gt=False) -> list[Sample]``:
  parse an upstream list (``rgb depth focal`` per line, ``None`` for a missing depth;
  ``without_gt``: a test list of ``rgb focal`` lines, the KITTI benchmark's). Roots are joined the PyTorch way
  (``os.path.join(root, "./" + column)``, so NYU's leading ``/`` does not reset the root; ``gs://``
  roots work). Blank lines are skipped; an empty file, a wrong column count or a bad focal is a
  one-line :class:`DataError` naming the file and line. A KITTI training line may add the right
  camera's ``rgb depth`` as columns 4-5 (``Sample.right_rgb_path/right_depth_path``).
* ``normalize_image(image01, mode="torch")``: (..., 3) float in [0, 1] -> encoder input. Modes:
  ``torch`` (ImageNet mean/std, our DenseNets), ``tf`` (x*2-1), ``caffe`` (BGR, x*255 - mean),
  ``raw`` (unchanged). An encoder's mode is ``utils.encoders.encoder_facts(name).normalization``.
* ``make_dataset(cfg, mode, *, samples=None, epoch=0, last_batch) -> tf.data.Dataset`` with ``cfg`` a
  ``utils.configs.PipelineConfig`` and mode in train / eval / test; ``samples`` replaces the
  config's file list (validation splits).

  - train: ONE epoch (callers repeat by calling again with the next ``epoch`` and resume with
    ``.skip(n)``), shuffled with a seed derived from (``cfg.seed`` or 0, epoch) whenever
    ``cfg.seed`` is set or ``cfg.deterministic``; batches of ``cfg.batch_size`` (the last one
    dropped, kept smaller or filled up: ``last_batch``): ``{"image": (B,h,w,3) float32
    normalised, "depth": (B,h,w,1) float32 metres (0 = invalid), "focal": (B,) float32}``,
    h, w = ``cfg.input_height/width``. Augmentation per sample in design §5.5 order (NYU border crop / KITTI KB crop if
    ``--do_kb_crop``, rotation if ``--do_random_rotate`` by ``--degree``, random crop, flip,
    photometric), drawn with stateless random ops seeded by (seed, epoch, line index), so a
    resumed epoch gives the very same batches. No ``py_function`` anywhere. Frames that are not
    480x640 (synthetic demo data) get the NYU border box scaled to their size. With
    ``cfg.use_right`` (KITTI, PT ``--use_right``) a line whose draw 10 is > 0.5 reads its right
    camera (columns 4-5 of a 5-column line) instead (:func:`choose_cameras`).
  - eval: batch 1, no augmentation: ``{"image": (1,H,W,3)`` normalised full image (KB-cropped for
    KITTI with ``--do_kb_crop``), ``"depth": (1,Hgt,Wgt,1)`` full-size ground truth in metres (zeros
    when the line has none), ``"has_depth": (1,) bool, "focal": (1,) float32, "index": (1,) int64}``.
  - test: like eval without ``depth`` / ``has_depth``.
  - With ``cfg.tfrecord_path`` (a shard prefix ``PREFIX`` -> ``PREFIX-*-of-*.tfrecord``, or a glob)
    the samples come from TFRecord shards written by ``bts_convert_data.py`` (``tf.train.Example``
    holding the encoded RGB bytes, the 16-bit PNG depth bytes, focal, has_depth, the line index and
    source line), read through ``tf.io.gfile`` and interleaved in parallel, then decoded by the very
    same functions as files: with augmentation off both give identical tensors. In train mode a
    seeded epoch's record order is a function of (seed, epoch): shard order from the epoch seed,
    a deterministic parallel interleave, a seeded shuffle (2048), so ``.skip(n)`` resumes it.
  - ``open_shards(tfrecord_path) -> ShardSet`` (files, records per file, ``len`` = records) for
    steps per epoch: counts from ``PREFIX.manifest.json`` (written by the converter; a shard whose
    size differs is truncated) or by reading shards that have none; a missing shard of a prefix,
    a truncated or corrupt one is a one-line DataError naming it.

* The numpy readers (``load_image``, ``load_depth_png``, ``read_depth_png``: one-line errors for a
  missing file, an unreadable image, an 8-bit PNG where a 16-bit depth PNG is expected) live in
  ``utils.image_io``; ``check_sample_bytes`` here decodes a whole sample with them.
* Rotation: ``tf.raw_ops.ImageProjectiveTransformV3`` has no XLA kernel (``jit_compile=True``
  fails on it, so it cannot run on TPU either). ``apply_transform`` therefore has two
  implementations with the same sampling (bilinear image, nearest depth, zero fill): the kernel,
  and a gather-based one that compiles with XLA. The training chain runs its augmentation as one
  ``jit_compile=True`` function built on the gather version (fused by XLA it is also the cheapest
  on CPU); ``rotate_image_and_depth`` compiles under XLA as it is.
* Errors inside a running pipeline (a missing or corrupt file, an 8-bit depth PNG, image and depth
  of different sizes, a corrupt shard record) are raised by TF while iterating. Iterate inside
  ``with data_errors(samples):`` to get one :class:`DataError` line naming the list file, line and
  path (or the shard) instead of a TF trace; ``samples`` in reading order names an undecodable
  file quickly. ``check_files_exist(samples)`` finds missing local files before iterating.
* Policy for bad samples: the pipeline never skips one. Training (``bts_trainer``) checks that
  every listed file exists before step 1 and stops at the first sample that does not decode, with
  that one line; the converter skips and reports bad lines instead (``--strict`` to fail).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from utils.configs import PipelineConfig
from utils.datasets import DatasetFacts, get_dataset_facts, kb_crop_offsets
from utils.encoders import normalization_affine
from utils.image_io import load_depth_png, load_image
from utils.io import DataError
from utils.io import first_line as _first_line

log = logging.getLogger(__name__)

MODES = ("train", "eval", "test")
TFRECORD_SUFFIX = ".tfrecord"
SHARD_PATTERN = re.compile(r"-(\d{5})-of-(\d{5})\.tfrecord$")
MANIFEST_SUFFIX = ".manifest.json"  # written by bts_convert_data.py next to the shards
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Leading bytes of the RGB formats tf.io.decode_image reads: JPEG, PNG, GIF, BMP.
RGB_MAGICS = (b"\xff\xd8\xff", PNG_SIGNATURE, b"GIF8", b"BM")
# Number of uniform draws per training sample (see _augment_draws); the first 10 do not depend on
# it (a longer stateless draw starts with the same values).
_NUM_DRAWS = 11
RIGHT_CAMERA_DRAW = 10  # --use_right: the sample reads the right camera when this draw > 0.5
_ERROR_TAG = re.compile(r"BTS_DATA_ERROR<<(.*?)>>", re.S)
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Sample:
    """One line of a filenames file, with the roots already joined."""

    rgb_path: str
    depth_path: Optional[str]  # None when the list says 'None' (no ground truth)
    focal: float  # px
    line_number: int  # 1-based line in the list file
    line: str  # the line as written
    source: str = ""  # the list file
    # KITTI's right camera (image_03): columns 4 and 5 of a 5-column line, which PT's --use_right
    # reads; None on a 3-column line.
    right_rgb_path: Optional[str] = None
    right_depth_path: Optional[str] = None

    @property
    def where(self) -> str:
        """'list.txt line 12' for error messages."""
        return f"{self.source or '<samples>'} line {self.line_number}"


# ---------------------------------------------------------------------------------------------
# Filenames files
# ---------------------------------------------------------------------------------------------
def join_root(root: str, column: str) -> str:
    """PT's ``os.path.join(root, "./" + column)`` without the ``./`` (GCS object names keep it)."""
    relative = column.lstrip("/")
    while relative.startswith("./"):
        relative = relative[2:].lstrip("/")
    return os.path.join(root, relative) if root else relative


def parse_filenames_line(text: str, line_number: int, source: str, data_path: str = "",
                         gt_path: str = "", *, without_gt: bool = False) -> Sample:
    """Parse ``rgb depth focal``; a one-line DataError naming ``source`` and the line otherwise.

    ``without_gt``: a test list without ground truth (``--dataset kitti_benchmark``): lines are
    ``rgb focal``, or ``rgb depth focal`` whose depth column is ignored; no Sample has a depth.
    """
    columns = text.split()
    where = f"{source} line {line_number}"
    if without_gt and len(columns) == 2:
        columns = [columns[0], "None", columns[1]]
    if len(columns) not in ((3,) if without_gt else (3, 5)):  # 5: + the right camera's two
        expected = ("2 columns 'rgb_path focal' (or 3, 'rgb_path None focal')" if without_gt
                    else "3 columns 'rgb_path depth_path focal' (or 5, + the right camera's "
                         "'rgb_path depth_path')")
        raise DataError(f"{where}: expected {expected}, got {len(columns)}: {text.strip()!r}")
    try:
        focal = float(columns[2])
    except ValueError:
        raise DataError(f"{where}: focal {columns[2]!r} is not a number") from None
    if not math.isfinite(focal) or focal <= 0:
        raise DataError(f"{where}: focal {columns[2]!r} must be a positive number of pixels")
    depth = None if without_gt or columns[1] == "None" else join_root(gt_path, columns[1])
    right = [None, None]
    if len(columns) == 5:
        right = [join_root(data_path, columns[3]),
                 None if columns[4] == "None" else join_root(gt_path, columns[4])]
    return Sample(join_root(data_path, columns[0]), depth, focal, line_number, text.rstrip("\r\n"),
                  source, *right)


def read_filenames_file(path: str, data_path: str = "", gt_path: str = "", *,
                        without_gt: bool = False) -> List[Sample]:
    """Read an upstream filenames file (local or ``gs://``) into Samples (design §5.1);
    ``without_gt``: a test list of images only (:func:`parse_filenames_line`)."""
    if not path:
        raise DataError("is empty: no list of samples to read", "filenames_file")
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            text = handle.read()
    except (tf.errors.OpError, OSError) as err:
        raise DataError(f"cannot read filenames file {path}: {_first_line(err)}") from None
    samples = [parse_filenames_line(line, number, path, data_path, gt_path, without_gt=without_gt)
               for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not samples:
        raise DataError(f"filenames file {path} is empty")
    return samples


# ---------------------------------------------------------------------------------------------
# Small tensor -> tensor ops (each works eagerly and inside Dataset.map)
# ---------------------------------------------------------------------------------------------
def channel_affine(image, scale, bias) -> tf.Tensor:
    """``image * scale + bias`` with per-channel (3,) scale and bias on a (..., W, 3) tensor.

    Broadcasting over a last axis of size 3 is slow on CPU (not vectorised); with W*3 lanes
    per row, tiled, it is 3-4x faster and gives the same values.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)
    rows = tf.reshape(image, tf.concat([shape[:-2], [-1]], 0))  # (..., W*3)
    scale = tf.tile(tf.reshape(tf.cast(scale, tf.float32), [3]), [shape[-2]])
    bias = tf.tile(tf.reshape(tf.cast(bias, tf.float32), [3]), [shape[-2]])
    return tf.reshape(rows * scale + bias, shape)


def normalize_image(image01, mode: str = "torch") -> tf.Tensor:
    """(..., 3) float RGB in [0, 1] -> encoder input (design §5.6).

    torch: (x - mean) / std with ImageNet statistics; tf: 2x - 1; caffe: BGR, 255 x - mean; raw: x.
    """
    scale, bias, bgr = normalization_affine(mode, dtype=np.float32)  # float32 constants, as before
    image01 = tf.convert_to_tensor(image01, tf.float32)
    if bgr:
        image01 = image01[..., ::-1]
    return channel_affine(image01, scale.astype(np.float32), bias.astype(np.float32))


def rotation_transform(angle_rad, height, width) -> tf.Tensor:
    """(8,) projective transform (output -> input pixel) rotating about the image centre.

    Positive angles turn the content counter-clockwise, as PIL ``rotate`` and tfa ``rotate``.
    """
    return crop_transform(angle_rad, height, width, 0, 0, False, width)


def crop_transform(angle_rad, height, width, top, left, flip, out_width) -> tf.Tensor:
    """(8,) transform for: rotate a (height, width) image about its centre, crop at (top, left),
    then mirror the crop horizontally if ``flip``; all in one resampling.

    Output pixel (x, y) -> crop pixel x_r = left + (out_width - 1 - x if flip else x), y_r = top + y
    -> source pixel R(angle) (x_r - cx, y_r - cy) + (cx, cy) with c the centre ((w-1)/2, (h-1)/2).
    """
    angle = tf.cast(angle_rad, tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    x_offset = ((w - 1.0) - (cos * (w - 1.0) - sin * (h - 1.0))) / 2.0
    y_offset = ((h - 1.0) - (sin * (w - 1.0) + cos * (h - 1.0))) / 2.0
    flip = tf.cast(flip, tf.bool)
    sign = tf.where(flip, -1.0, 1.0)
    shift = tf.cast(left, tf.float32) + tf.where(flip, tf.cast(out_width, tf.float32) - 1.0, 0.0)
    top = tf.cast(top, tf.float32)
    return tf.stack([
        cos * sign, -sin, cos * shift - sin * top + x_offset,
        sin * sign, cos, sin * shift + cos * top + y_offset,
        0.0, 0.0,
    ])


def _round_half_away(x):
    """std::round (what ImageProjectiveTransform's NEAREST uses); tf.round rounds half to even."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def apply_transform(image, transform, output_shape, interpolation: str = "BILINEAR",
                    xla_compatible: bool = False) -> tf.Tensor:
    """Resample an (H, W, C) float image with an affine (8,) transform; zero outside the image.

    Two implementations with the same result (``fill_mode="CONSTANT"``, ``fill_value=0``: each
    bilinear corner outside the image reads 0; NEAREST rounds half away from zero and returns
    input values or 0 only):

    * ``xla_compatible=False``: ``tf.raw_ops.ImageProjectiveTransformV3``, the fastest on CPU
      (used by the tf.data pipeline, which runs on the host CPU even when training on TPU). This
      kernel has no XLA registration: under ``jit_compile=True`` it fails to compile.
    * ``xla_compatible=True``: the same sampling written with gathers, which compiles with XLA
      and runs on TPU (for augmentation on the accelerator; about 2x the CPU cost of the kernel).

    Args:
        image: (H, W, C) float tensor.
        transform: (8,) [a0, a1, a2, b0, b1, b2, 0, 0]; output (x, y) reads input
            (a0 x + a1 y + a2, b0 x + b1 y + b2).
        output_shape: (h, w) of the output.
        interpolation: "BILINEAR" or "NEAREST".
        xla_compatible: pick the gather implementation.
    Returns:
        (h, w, C) tensor of ``image``'s dtype.
    """
    if interpolation not in ("BILINEAR", "NEAREST"):
        raise ValueError(f"interpolation {interpolation!r} is unknown; expected BILINEAR or NEAREST")
    image = tf.convert_to_tensor(image)
    transform = tf.cast(tf.reshape(transform, [8]), tf.float32)
    if not xla_compatible:
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=image[tf.newaxis], transforms=transform[tf.newaxis],
            output_shape=tf.convert_to_tensor(output_shape, tf.int32), fill_value=0.0,
            interpolation=interpolation, fill_mode="CONSTANT")
        return out[0]
    return _gather_transform(image, transform, output_shape, interpolation)


def _gather_transform(image, transform, output_shape, interpolation: str) -> tf.Tensor:
    """XLA-compatible :func:`apply_transform` (gathers from the flattened image)."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    channels = image.shape[-1] if image.shape[-1] is not None else shape[2]
    flat = tf.reshape(image, tf.stack([-1, channels]))  # (H*W, C)
    ys = tf.range(output_shape[0], dtype=tf.float32)[:, tf.newaxis]
    xs = tf.range(output_shape[1], dtype=tf.float32)[tf.newaxis, :]
    src_x = transform[0] * xs + transform[1] * ys + transform[2]  # (h, w)
    src_y = transform[3] * xs + transform[4] * ys + transform[5]

    def read(xi, yi, weight):
        """weight * pixel at integer (xi, yi), 0 outside the image: (h, w, C)."""
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        values = tf.gather(flat, tf.where(inside, yi * width + xi, 0))
        weight = tf.where(inside, tf.cast(weight, image.dtype), tf.zeros([], image.dtype))
        return values * weight[..., tf.newaxis]

    if interpolation == "NEAREST":
        xi = tf.cast(_round_half_away(src_x), tf.int32)
        yi = tf.cast(_round_half_away(src_y), tf.int32)
        return read(xi, yi, tf.ones_like(src_x))
    x_floor, y_floor = tf.floor(src_x), tf.floor(src_y)
    fx, fy = src_x - x_floor, src_y - y_floor
    x0, y0 = tf.cast(x_floor, tf.int32), tf.cast(y_floor, tf.int32)
    return (read(x0, y0, (1.0 - fx) * (1.0 - fy)) + read(x0 + 1, y0, fx * (1.0 - fy))
            + read(x0, y0 + 1, (1.0 - fx) * fy) + read(x0 + 1, y0 + 1, fx * fy))


def rotate(image, angle_rad, interpolation: str = "BILINEAR", xla_compatible: bool = True) -> tf.Tensor:
    """Rotate an (H, W, C) float image about its centre on the same canvas, zero fill."""
    shape = tf.shape(image)
    return apply_transform(image, rotation_transform(angle_rad, shape[0], shape[1]), shape[:2],
                           interpolation, xla_compatible)


def rotate_image_and_depth(image01, depth_m, angle_rad,
                           xla_compatible: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
    """Rotate image (bilinear) and depth (nearest) together, as design §5.5 step 2.

    The default implementation compiles with ``jit_compile=True`` and runs on TPU.
    """
    return (rotate(image01, angle_rad, "BILINEAR", xla_compatible),
            rotate(depth_m, angle_rad, "NEAREST", xla_compatible))


def crop(image, top, left, height: int, width: int) -> tf.Tensor:
    """``image[top:top+height, left:left+width]`` with static output size."""
    return tf.slice(image, tf.stack([top, left, 0]), [height, width, -1])


def flip_left_right(image, flip) -> tf.Tensor:
    """Mirror an (H, W, C) tensor horizontally when ``flip`` (a bool tensor) is true."""
    return tf.cond(tf.cast(flip, tf.bool), lambda: tf.reverse(image, axis=[1]), lambda: image)


def augment_colour(image01, gamma, brightness, colour) -> tf.Tensor:
    """Colour augmentation (design §5.5 step 5) of an (H, W, 3) image:
    clip(x ** gamma * brightness * colour, 0, 1).

    x ** gamma is evaluated as exp(gamma * log x) (2-3x faster than pow on CPU; 0 stays 0).
    """
    image01 = tf.convert_to_tensor(image01, tf.float32)
    scale = tf.cast(brightness, tf.float32) * tf.cast(colour, tf.float32)  # (3,)
    powered = tf.exp(tf.math.log(image01) * tf.cast(gamma, tf.float32))
    return tf.clip_by_value(channel_affine(powered, scale, tf.zeros([3])), 0.0, 1.0)


def finish_image(image255, mode: str, colour_draws=None, brightness_range=(0.75, 1.25)) -> tf.Tensor:
    """Photometric augmentation (optional) and normalisation of an (h, w, 3) float image in
    [0, 255], with the 1/255 folded into the arithmetic (one pass fewer than converting first).

    ``colour_draws``: None (no colour augmentation) or (5,) uniforms -> gamma U(0.9, 1.1),
    brightness U(brightness_range), colour U(0.9, 1.1)^3. Equals
    ``normalize_image(augment_colour(image255 / 255, ...), mode)`` up to float rounding.
    """
    image255 = tf.convert_to_tensor(image255, tf.float32)
    if colour_draws is None:
        scale, bias, bgr = normalization_affine(mode, 1.0 / 255.0)
        image = image255[..., ::-1] if bgr else image255
        return channel_affine(image, scale.astype(np.float32), bias.astype(np.float32))
    gamma = _uniform(colour_draws[0], 0.9, 1.1)
    brightness = _uniform(colour_draws[1], *brightness_range)
    colour = _uniform(colour_draws[2:5], 0.9, 1.1)
    # (x / 255) ** g == exp(g * log x - g * log 255)
    powered = tf.exp(tf.math.log(image255) * gamma - gamma * math.log(255.0))
    image01 = tf.clip_by_value(channel_affine(powered, brightness * colour, tf.zeros([3])), 0.0, 1.0)
    return normalize_image(image01, mode)


def dataset_crop_box(facts: DatasetFacts, height, width, do_kb_crop: bool):
    """(top, left, crop_h, crop_w) of the train-time dataset crop, or None (design §5.3, §5.4).

    NYU: the border crop [45:472, 43:608] of a 480x640 frame; other frame sizes (synthetic demo
    data) get the same box scaled to the frame (floor of box * size / 480x640). KITTI: the KB crop
    when ``do_kb_crop``. ``height``/``width`` may be ints or scalar tensors.
    """
    if facts.train_border_crop is not None:
        ref_h, ref_w = facts.test_input_size  # the 480x640 frame the box is defined on
        top, left, box_h, box_w = facts.train_border_crop
        return ((top * height) // ref_h, (left * width) // ref_w,
                (box_h * height) // ref_h, (box_w * width) // ref_w)
    if do_kb_crop and facts.kb_crop_size is not None:
        return kb_crop_box(height, width)
    return None


def kb_crop_box(height, width):
    """(top, left, 352, 1216): bottom-aligned, horizontally centred (``utils.datasets.kb_crop_offsets``);
    ints or scalar tensors."""
    return tuple(kb_crop_offsets(height, width)) + get_dataset_facts("kitti").kb_crop_size


# ---------------------------------------------------------------------------------------------
# Decoding with checks that name the sample
# ---------------------------------------------------------------------------------------------
def _tagged(where, reason: str):
    """A string tensor carrying an error message that ``data_errors`` turns into a DataError."""
    return tf.strings.join(["BTS_DATA_ERROR<<", where, ": ", reason, ">>"])


def _check(condition, where, reason: str, value):
    """Return ``value`` after asserting ``condition``; the failure message names the sample."""
    assertion = tf.debugging.Assert(condition, [_tagged(where, reason)])
    with tf.control_dependencies([assertion]):
        return tf.identity(value)


def _starts_with(data, prefix: bytes):
    return tf.equal(tf.strings.substr(data, 0, len(prefix)), prefix)


def decode_rgb(data, where="") -> tf.Tensor:
    """Encoded JPEG/PNG bytes -> (H, W, 3) uint8; a tagged error for anything else."""
    known = tf.reduce_any(tf.stack([_starts_with(data, magic) for magic in RGB_MAGICS]))
    data = _check(known, where, "not a JPEG or PNG image (corrupt or wrong file)", data)
    # JPEG with the accurate integer DCT, as libjpeg's default used by PIL (the PyTorch loader);
    # TF's own default (INTEGER_FAST) differs by up to ~7 grey levels.
    image = tf.cond(
        _starts_with(data, RGB_MAGICS[0]),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def decode_depth(data, where="") -> tf.Tensor:
    """16-bit single-channel PNG bytes -> (H, W) uint16; 8-bit or colour PNGs are an error.

    ``decode_png(dtype=uint16)`` would silently scale an 8-bit PNG by 257, so the PNG header's
    bit depth (byte 24) and colour type (byte 25) are checked first.
    """
    is_png = _starts_with(data, PNG_SIGNATURE)
    data = _check(is_png, where, "depth is not a PNG file (expected a 16-bit PNG)", data)
    bit_depth = tf.strings.substr(data, 24, 1)
    colour_type = tf.strings.substr(data, 25, 1)
    ok = tf.logical_and(tf.equal(bit_depth, b"\x10"), tf.equal(colour_type, b"\x00"))
    data = _check(ok, where, "depth PNG is not 16-bit single-channel (8-bit PNG where a 16-bit "
                             "depth map is expected?)", data)
    depth = tf.io.decode_png(data, channels=1, dtype=tf.uint16)[..., 0]
    depth.set_shape([None, None])
    return depth


def depth_to_metres(depth_u16, depth_scale: float) -> tf.Tensor:
    """uint16 PNG values -> float32 metres (NYU / 1000, KITTI / 256; 0 stays invalid)."""
    return tf.cast(depth_u16, tf.float32) / depth_scale


def _check_same_size(image, depth, where):
    """Assert image and depth have the same height and width; returns both after the check."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(depth)[:2]))
    assertion = tf.debugging.Assert(same, [_tagged(where, "image and depth have different sizes")])
    with tf.control_dependencies([assertion]):
        return tf.identity(image), tf.identity(depth)


def _check_at_least(image, height, width, where, what: str, *others):
    """Assert ``image`` is at least height x width; returns image (and ``others``) after the check."""
    shape = tf.shape(image)
    ok = tf.logical_and(shape[0] >= height, shape[1] >= width)
    assertion = tf.debugging.Assert(ok, [_tagged(where, f"image is smaller than the {what}")])
    with tf.control_dependencies([assertion]):
        checked = tuple(tf.identity(t) for t in (image,) + others)
    return checked if others else checked[0]


# ---------------------------------------------------------------------------------------------
# Per-sample functions shared by files and TFRecords
# ---------------------------------------------------------------------------------------------
def _augment_draws(base_seed, index) -> tf.Tensor:
    """(11,) uniform [0, 1) draws of one sample, a pure function of (base seed, line index).

    0 angle, 1 crop top, 2 crop left, 3 flip, 4 do-colour, 5 gamma, 6 brightness, 7-9 colour,
    10 right camera (``--use_right``, :func:`choose_cameras`).
    """
    seed = tf.stack([tf.cast(base_seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.stateless_uniform([_NUM_DRAWS], seed=seed, dtype=tf.float32)


def _uniform(draw, low: float, high: float):
    return low + (high - low) * draw


def _offset(draw, room):
    """Integer offset uniform in [0, room] (PT random.randint(0, room))."""
    return tf.minimum(tf.cast(tf.floor(draw * tf.cast(room + 1, tf.float32)), tf.int32), room)


def train_sample(cfg: PipelineConfig, image_u8, depth_u16, draws, where=""):
    """Augmentation (design §5.5) of one decoded sample -> (image normalised (h,w,3), depth metres (h,w,1)).

    Checks and the dataset crop (a slice) run as plain TF ops; with rotation, the augmentation
    proper (:func:`augment_cropped`) is one XLA-compiled function when ``cfg.jit`` (default): XLA
    fuses the resampling gathers, colour and normalisation into a few loops (measured 31 -> 23
    CPU-ms per 416x544 NYU sample, decoding included), and the same code runs on TPU.
    """
    h, w = cfg.input_height, cfg.input_width
    image_u8, depth_u16 = _check_same_size(image_u8, depth_u16, where)
    shape = tf.shape(image_u8)
    box = dataset_crop_box(cfg.facts, shape[0], shape[1], cfg.do_kb_crop)
    if box is not None:
        top, left, box_h, box_w = box
        image_u8, depth_u16 = _check_at_least(image_u8, box_h, box_w, where, "dataset crop",
                                              depth_u16)
        image_u8 = crop(image_u8, top, left, box_h, box_w)
        depth_u16 = tf.slice(depth_u16, tf.stack([top, left]), [box_h, box_w])
    image_u8, depth_u16 = _check_at_least(image_u8, h, w, where, f"input size {h}x{w}", depth_u16)
    # XLA pays off with rotation (fused gathers); a plain crop + flip is cheaper as TF slices.
    use_jit = cfg.jit and cfg.do_random_rotate
    augment = _compiled_augment(cfg) if use_jit else functools.partial(augment_cropped, cfg)
    image, depth_raw = augment(image_u8, depth_u16, tf.convert_to_tensor(draws, tf.float32))
    # Units outside XLA, which would turn "/ 1000" into "* 0.001" (1 ulp off the exact quotient).
    depth_m = depth_raw / cfg.facts.depth_scale
    return tf.ensure_shape(image, [h, w, 3]), tf.ensure_shape(depth_m, [h, w, 1])


def augment_cropped(cfg: PipelineConfig, image_u8, depth_u16, draws):
    """Steps 2-6 of design §5.5 on a dataset-cropped sample at least input-size large.

    Returns the normalised (h, w, 3) image and the (h, w, 1) depth in PNG units (float32).

    Rotation + random crop + flip are one resampling per tensor (bilinear image, nearest depth,
    zero fill) evaluating only the h x w output pixels; without rotation, a slice and a reverse.
    """
    h, w = cfg.input_height, cfg.input_width
    image_u8 = tf.ensure_shape(image_u8, [None, None, 3])
    shape = tf.shape(image_u8)
    top = _offset(draws[1], shape[0] - h)
    left = _offset(draws[2], shape[1] - w)
    flip = draws[3] > 0.5
    depth_f = tf.cast(depth_u16, tf.float32)[..., tf.newaxis]
    xla = cfg.xla_compatible or (cfg.jit and cfg.do_random_rotate)
    if cfg.do_random_rotate or xla:
        # Under XLA a slice at a data-dependent offset is recompiled per offset value, so the
        # plain crop + flip is a resampling too: at angle 0 NEAREST picks exact pixels.
        angle = _uniform(draws[0], -cfg.degree, cfg.degree) * (math.pi / 180.0)
        angle = angle if cfg.do_random_rotate else tf.zeros_like(angle)
        transform = crop_transform(angle, shape[0], shape[1], top, left, flip, w)
        image_mode = "BILINEAR" if cfg.do_random_rotate else "NEAREST"
        image255 = apply_transform(tf.cast(image_u8, tf.float32), transform, [h, w], image_mode, xla)
        depth_f = apply_transform(depth_f, transform, [h, w], "NEAREST", xla)
    else:
        image255 = flip_left_right(tf.cast(crop(image_u8, top, left, h, w), tf.float32), flip)
        depth_f = flip_left_right(crop(depth_f, top, left, h, w), flip)
    facts = cfg.facts
    # Colour augmentation with p = 0.5, then normalisation (design §5.5 steps 5-6).
    image = tf.cond(draws[4] > 0.5,
                    lambda: finish_image(image255, cfg.normalization, draws[5:10], facts.brightness_range),
                    lambda: finish_image(image255, cfg.normalization))
    return image, depth_f


@functools.lru_cache(maxsize=None)
def _compiled_augment(cfg: PipelineConfig):
    """``augment_cropped`` for ``cfg`` as one ``jit_compile=True`` function (cached per config)."""
    return tf.function(functools.partial(augment_cropped, cfg), jit_compile=True)


def eval_image(cfg: PipelineConfig, image_u8, where=""):
    """Full image (KITTI: KB crop with --do_kb_crop) -> normalised float32 (H, W, 3)."""
    facts = cfg.facts
    if cfg.do_kb_crop and facts.kb_crop_size is not None:
        shape = tf.shape(image_u8)
        top, left, box_h, box_w = kb_crop_box(shape[0], shape[1])
        image_u8 = _check_at_least(image_u8, box_h, box_w, where, f"KB crop {box_h}x{box_w}")
        image_u8 = crop(image_u8, top, left, box_h, box_w)
    return normalize_image(tf.cast(image_u8, tf.float32) / 255.0, cfg.normalization)


# ---------------------------------------------------------------------------------------------
# TFRecord format (shared with bts_convert_data.py)
# ---------------------------------------------------------------------------------------------
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),  # encoded RGB (JPEG/PNG), as on disk
    "depth": tf.io.FixedLenFeature([], tf.string, default_value=b""),  # 16-bit PNG or empty
    "focal": tf.io.FixedLenFeature([], tf.float32),
    "has_depth": tf.io.FixedLenFeature([], tf.int64),
    "index": tf.io.FixedLenFeature([], tf.int64),  # 0-based line index in the list
    "source": tf.io.FixedLenFeature([], tf.string),  # 'list.txt line 12'
    "line": tf.io.FixedLenFeature([], tf.string),  # the line as written
}


def serialize_example(image_bytes: bytes, depth_bytes: Optional[bytes], focal: float, index: int,
                      source: str, line: str) -> bytes:
    """One ``tf.train.Example`` holding a sample's encoded files, unchanged (lossless, small)."""
    def _bytes(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    feature = {
        "image": _bytes(image_bytes),
        "depth": _bytes(depth_bytes or b""),
        "focal": tf.train.Feature(float_list=tf.train.FloatList(value=[focal])),
        "has_depth": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(depth_bytes is not None)])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        "source": _bytes(source.encode("utf-8")),
        "line": _bytes(line.encode("utf-8")),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)  # sorted map keys: same bytes in any process


def shard_name(prefix: str, shard: int, num_shards: int) -> str:
    """``PREFIX-00000-of-00064.tfrecord``."""
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{TFRECORD_SUFFIX}"


def find_shards(tfrecord_path: str) -> List[str]:
    """Sorted shard files of a prefix (``PREFIX-*-of-*.tfrecord``), a glob, or one file."""
    if any(ch in tfrecord_path for ch in "*?["):
        files = tf.io.gfile.glob(tfrecord_path)
    else:
        files = tf.io.gfile.glob(f"{tfrecord_path}-*-of-*{TFRECORD_SUFFIX}")
        if not files and tf.io.gfile.exists(tfrecord_path) and not tf.io.gfile.isdir(tfrecord_path):
            files = [tfrecord_path]
    files = [f for f in files if not f.endswith(MANIFEST_SUFFIX)]  # a glob like dir/* matches it
    if not files:
        raise DataError(f"{tfrecord_path}: no TFRecord shards found "
                        f"(looked for {tfrecord_path}-*-of-*{TFRECORD_SUFFIX} or a glob)", "tfrecord_path")
    totals = {m.group(2) for m in (SHARD_PATTERN.search(f) for f in files) if m}
    if len(totals) > 1:
        raise DataError(f"{tfrecord_path}: shards of different runs are mixed "
                        f"(-of-{', -of-'.join(sorted(totals))}); delete the stale ones", "tfrecord_path")
    if totals and len(files) < int(next(iter(totals))) and not any(ch in tfrecord_path for ch in "*?["):
        # A prefix means the whole set; a glob may pick a subset on purpose.
        total = int(next(iter(totals)))
        absent = sorted(set(shard_name(tfrecord_path, i, total) for i in range(total)) - set(files))
        raise DataError(f"{tfrecord_path}: {len(files)} of {total} shards found, "
                        f"{absent[0]} is missing (copy it, or convert again)", "tfrecord_path")
    return sorted(files)


@dataclasses.dataclass(frozen=True)
class ShardSet:
    """The TFRecord shards of ``--tfrecord_path`` and how many records each holds."""

    tfrecord_path: str
    files: Tuple[str, ...]
    records: Tuple[int, ...]

    def __len__(self) -> int:
        return sum(self.records)


def manifest_path(prefix: str) -> str:
    """``PREFIX.manifest.json``: what ``bts_convert_data.py`` wrote (records and bytes per shard)."""
    return f"{prefix}{MANIFEST_SUFFIX}"


def _read_manifest(prefix: str) -> Dict[str, dict]:
    """Shard base name -> {"records", "bytes"}; empty when there is no (usable) manifest."""
    path = manifest_path(prefix)
    try:
        if not tf.io.gfile.exists(path):
            return {}
        with tf.io.gfile.GFile(path, "r") as handle:
            return dict(json.load(handle)["shards"])
    except (tf.errors.OpError, OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring unreadable shard manifest %s (%s); counting records instead",
                    path, _first_line(err))
        return {}


def _count_shard(path: str) -> int:
    """Records in one shard, reading it once; a DataError naming it if truncated or corrupt."""
    try:
        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as err:
        raise DataError(f"TFRecord shard {path}: {_op_detail(err)} (truncated or corrupt; "
                        "convert it again with bts_convert_data.py)") from None


def open_shards(tfrecord_path: str) -> ShardSet:
    """Find the shards and count their records (for steps per epoch), checking each is whole.

    Shards written by ``bts_convert_data.py`` are checked against its manifest: a size that
    differs is a truncated (or replaced) shard, found without reading it. Shards without a
    manifest entry are counted by reading them once, which also finds a truncated or corrupt one.
    """
    files = find_shards(tfrecord_path)
    manifests: Dict[str, Dict[str, dict]] = {}
    known: Dict[str, int] = {}
    for path in files:
        match = SHARD_PATTERN.search(path)
        if not match:
            continue
        prefix = path[:match.start()]
        if prefix not in manifests:
            manifests[prefix] = _read_manifest(prefix)
        entry = manifests[prefix].get(path.rsplit("/", 1)[-1])
        if entry is None:
            continue
        size = tf.io.gfile.stat(path).length
        if size != entry["bytes"]:
            raise DataError(f"TFRecord shard {path} is {size} bytes but bts_convert_data.py wrote "
                            f"{entry['bytes']} (truncated or changed; convert it again)")
        known[path] = int(entry["records"])
    unlisted = [path for path in files if path not in known]
    if unlisted:
        log.info("counting the records of %d shard(s) without a manifest (reads them once)",
                 len(unlisted))
    known.update({path: _count_shard(path) for path in unlisted})
    records = [known[path] for path in files]
    return ShardSet(tfrecord_path, tuple(files), tuple(records))


# ---------------------------------------------------------------------------------------------
# The chains
# ---------------------------------------------------------------------------------------------
def epoch_seed(seed: Optional[int], epoch: int, deterministic: bool) -> int:
    """Base seed of one epoch: a function of (seed or 0, epoch) when reproducible, else random."""
    if seed is None and not deterministic:
        return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    return int(np.random.SeedSequence([int(seed or 0), int(epoch)]).generate_state(1, np.uint32)[0])


def _read_optional(path, has):
    return tf.cond(has, lambda: tf.io.read_file(path), lambda: tf.constant(b""))


def _files_source(samples: Sequence[Sample], order: Optional[np.ndarray] = None) -> tf.data.Dataset:
    """Dataset of raw per-sample records read from files, in ``order`` (default: list order)."""
    order = np.arange(len(samples)) if order is None else order
    picked = [samples[i] for i in order]
    slices = {
        "rgb_path": [s.rgb_path for s in picked],
        "depth_path": [s.depth_path or "" for s in picked],
        "has_depth": [s.depth_path is not None for s in picked],
        "focal": np.array([s.focal for s in picked], np.float32),
        "index": np.asarray(order, np.int64),
        "source": [f"{s.where} ({s.line})" for s in picked],
    }
    return tf.data.Dataset.from_tensor_slices(slices)


def _read_files(record: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {
        "image_bytes": tf.io.read_file(record["rgb_path"]),
        "depth_bytes": _read_optional(record["depth_path"], record["has_depth"]),
        "has_depth": record["has_depth"],
        "focal": record["focal"],
        "index": record["index"],
        "where": tf.strings.join([record["source"], " rgb ", record["rgb_path"], " depth ",
                                  record["depth_path"]]),
    }


def _parse_record(serialized, shard=None) -> Dict[str, tf.Tensor]:
    ex = tf.io.parse_single_example(serialized, FEATURES)
    origin = " [TFRecord]" if shard is None else tf.strings.join([" [TFRecord ", shard, "]"])
    return {
        "image_bytes": ex["image"],
        "depth_bytes": ex["depth"],
        "has_depth": ex["has_depth"] > 0,
        "focal": ex["focal"],
        "index": ex["index"],
        "where": tf.strings.join([ex["source"], " (", ex["line"], ")", origin]),
    }


def _records_source(cfg: PipelineConfig, mode: str, base_seed: int) -> tf.data.Dataset:
    """Serialized examples from the shards, interleaved (round-robin for eval/test = list order)."""
    files = find_shards(cfg.tfrecord_path)
    _RECENT_SHARDS[:] = files  # so data_errors can name a shard that turns out corrupt
    deterministic = cfg.deterministic or cfg.seed is not None
    if mode == "train":
        rng = np.random.default_rng(base_seed)
        files = [files[i] for i in rng.permutation(len(files))]
        cycle = min(len(files), 16)
    else:
        deterministic, cycle = True, len(files)
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": deterministic} if mode == "train" else {}
    # Each record keeps its shard's name, so a bad sample's error names the shard too.
    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20).map(lambda r: (r, f)),
        cycle_length=cycle, block_length=1, **parallel)
    if mode == "train":
        # With a seed the epoch's record order is a function of (seed, epoch) alone: shard order
        # from base_seed, a deterministic interleave and a seeded shuffle, so .skip(n) resumes it.
        records = records.shuffle(2048, seed=base_seed, reshuffle_each_iteration=False)
    return records.map(_parse_record, num_parallel_calls=AUTOTUNE)


def _train_map(cfg: PipelineConfig, base_seed: int):
    def fn(rec):
        image_u8 = decode_rgb(rec["image_bytes"], rec["where"])
        # Lists are checked in Python; a shard's records only here (a converted test list).
        depth_bytes = _check(rec["has_depth"], rec["where"],
                             "training needs ground truth, the depth column is 'None'",
                             rec["depth_bytes"])
        depth_u16 = decode_depth(depth_bytes, rec["where"])
        draws = _augment_draws(base_seed, rec["index"])
        image, depth = train_sample(cfg, image_u8, depth_u16, draws, rec["where"])
        return {"image": image, "depth": depth, "focal": rec["focal"]}

    return fn


def _eval_map(cfg: PipelineConfig, with_depth: bool):
    def fn(rec):
        image_u8 = decode_rgb(rec["image_bytes"], rec["where"])
        out = {"image": eval_image(cfg, image_u8, rec["where"]), "focal": rec["focal"],
               "index": rec["index"]}
        if with_depth:
            shape = tf.shape(image_u8)[:2]

            def read_depth():
                depth_u16 = decode_depth(rec["depth_bytes"], rec["where"])
                _, depth_u16 = _check_same_size(image_u8, depth_u16, rec["where"])
                return depth_to_metres(depth_u16, cfg.facts.depth_scale)

            depth = tf.cond(rec["has_depth"], read_depth, lambda: tf.zeros(shape, tf.float32))
            out["depth"] = depth[..., tf.newaxis]
            out["has_depth"] = rec["has_depth"]
        return out

    return fn


def train_order(num_samples: int, base_seed: int) -> np.ndarray:
    """The order in which one training epoch reads a list (a permutation of its indexes)."""
    return np.random.default_rng(base_seed).permutation(num_samples)


def right_camera_draws(base_seed: int, num_samples: int) -> np.ndarray:
    """(N,) float32: draw ``RIGHT_CAMERA_DRAW`` of :func:`_augment_draws` for line indexes 0..N-1."""
    draws = tf.data.Dataset.range(num_samples).map(
        lambda index: _augment_draws(base_seed, index)[RIGHT_CAMERA_DRAW],
        num_parallel_calls=AUTOTUNE, deterministic=True)
    return np.concatenate(list(draws.batch(8192).as_numpy_iterator()))


def choose_cameras(samples: Sequence[Sample], base_seed: int) -> List[Sample]:
    """PT ``--use_right``: ``samples`` with about half of them reading KITTI's right camera.

    Sample i reads its line's columns 4 and 5 (``image_03`` and its ground truth) instead of 1
    and 2 when its draw ``RIGHT_CAMERA_DRAW`` is > 0.5 (PT: ``random.random() > 0.5``): a
    function of (seed, epoch, line index) like its augmentation, so a resumed epoch reads the same
    files. A line without the right camera's columns, or a right-camera file that is not there
    (local paths; the trainer checks columns 1-2), is a one-line DataError naming the line.
    """
    lacking = next((s for s in samples if s.right_rgb_path is None), None)
    if lacking is not None:
        raise DataError(f"{lacking.where}: --use_right needs the right camera's 'rgb_path "
                        f"depth_path' as columns 4 and 5; the line has {len(lacking.line.split())} "
                        f"columns: {lacking.line.strip()!r}")
    right_views = [dataclasses.replace(s, rgb_path=s.right_rgb_path, depth_path=s.right_depth_path)
                   for s in samples]
    check_files_exist(right_views)
    right = right_camera_draws(base_seed, len(samples)) > 0.5
    return [view if use else s for s, view, use in zip(samples, right_views, right)]


def _remember(samples: Sequence[Sample]) -> None:
    """Keep the last few lists so ``data_errors`` can name the line of a failing path."""
    _RECENT_SAMPLES.insert(0, list(samples))
    del _RECENT_SAMPLES[4:]


_RECENT_SAMPLES: List[List[Sample]] = []
_RECENT_SHARDS: List[str] = []  # shards of the last TFRecord pipeline built


LAST_BATCHES = ("drop", "keep", "fill")


def make_dataset(cfg: PipelineConfig, mode: str, *, samples: Optional[Sequence[Sample]] = None,
                 epoch: int = 0, last_batch: str = "drop") -> tf.data.Dataset:
    """The input pipeline of ``mode`` (train / eval / test); see the module docstring.

    ``samples`` (a list read with ``read_filenames_file``) replaces the config's sources.
    ``last_batch`` (train): what becomes of an epoch's last ``N mod B`` samples: ``drop`` them
    (⌊N/B⌋ batches), ``keep`` them as a smaller last batch (⌈N/B⌉, as PT's DataLoader), or
    ``fill`` that batch up to B with the epoch's first samples again (⌈N/B⌉ batches of B: static
    shapes, equal replica shares).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is unknown; expected one of {MODES}")
    if last_batch not in LAST_BATCHES:
        raise ValueError(f"last_batch {last_batch!r} is unknown; expected one of {LAST_BATCHES}")
    seed, deterministic = cfg.seed, cfg.deterministic
    base_seed = epoch_seed(seed, epoch, deterministic)
    parallel = AUTOTUNE if cfg.num_threads in (0, -1) else cfg.num_threads
    use_records = samples is None and bool(cfg.tfrecord_path)

    if use_records:
        records = _records_source(cfg, mode, base_seed)
    else:
        if samples is None:
            samples = read_filenames_file(cfg.filenames_file, cfg.data_path, cfg.gt_path)
        if not samples:
            raise DataError("make_dataset got an empty sample list")
        if mode == "train" and cfg.use_right:  # this epoch's camera of every line
            samples = choose_cameras(samples, base_seed)
        _remember(samples)
        order = None
        if mode == "train":
            missing = next((s for s in samples if s.depth_path is None), None)
            if missing is not None:
                raise DataError(f"{missing.where}: training needs ground truth, the depth column is "
                                f"'None'")
            # Shuffle here (not with Dataset.shuffle) so the epoch's order is known and exact.
            order = train_order(len(samples), base_seed)
        records = _files_source(samples, order).map(_read_files, num_parallel_calls=parallel)

    if mode == "train":
        # Per-sample augmentation, then fixed-size batches (static shapes for XLA / TPU).
        if last_batch == "fill":  # B−1 more from the start (cycled): exactly ⌈N/B⌉ whole batches
            records = records.concatenate(records.repeat().take(cfg.batch_size - 1))
        data = records.map(_train_map(cfg, base_seed), num_parallel_calls=parallel)
        data = data.batch(cfg.batch_size, drop_remainder=last_batch != "keep")
    else:
        data = records.map(_eval_map(cfg, with_depth=(mode == "eval")), num_parallel_calls=parallel)
        data = data.batch(1)
    options = tf.data.Options()
    options.deterministic = deterministic or seed is not None or mode != "train"
    return data.prefetch(AUTOTUNE).with_options(options)


# ---------------------------------------------------------------------------------------------
# Turning pipeline failures into one line
# ---------------------------------------------------------------------------------------------
def _op_detail(err: BaseException) -> str:
    """The readable part of a TF error's first line (no function names, op names, iterator)."""
    detail = _first_line(err).split("transformation with iterator: ")[-1]
    detail = re.sub(r"Iterator::[\w:]+: ", "", detail)
    detail = re.sub(r"\{\{[^}]*\}\}\s*", "", detail)
    detail = re.sub(r"\s*\[Op:\w+\](\s*name:\s*\S*)?", "", detail)
    detail = detail.replace("' failed with ", ": ")  # TFRecordDataset's "at N' failed with ..."
    return detail.strip().rstrip(".'") or type(err).__name__


def describe_data_error(err: BaseException, samples: Optional[Sequence[Sample]] = None) -> str:
    """One line for a TF error raised while iterating a pipeline of this module.

    ``samples``: where to look first (in this order) for a file that does not decode, e.g. a
    training epoch from the failing step on; else the most recently built list is scanned.
    """
    message = getattr(err, "message", None) or str(err)
    tagged = _ERROR_TAG.search(message)
    if tagged:
        return tagged.group(1).strip()
    found = re.search(r"(?:Iterator::[\w:]+: |\} )?([^\s;]+); No such file or directory", message)
    if isinstance(err, tf.errors.NotFoundError) and found:
        path = found.group(1)
        for listed in ([samples] if samples else []) + _RECENT_SAMPLES:
            for s in listed:
                if path in (s.rgb_path, s.depth_path, s.right_rgb_path, s.right_depth_path):
                    return f"{s.where}: file not found: {path}"
        return f"file not found: {path}"
    if isinstance(err, tf.errors.DataLossError) and _RECENT_SHARDS:
        # TFRecordDataset's error names no file: read the shards until one fails (failure only).
        log.info("finding the damaged shard among %d (reads them)", len(_RECENT_SHARDS))
        for shard in list(_RECENT_SHARDS):
            try:
                _count_shard(shard)
            except DataError as named:
                return str(named)
    culprit = _find_unreadable(message, samples)
    return culprit or f"data pipeline failed: {_op_detail(err)}"


def _find_unreadable(message: str, samples: Optional[Sequence[Sample]] = None) -> Optional[str]:
    """The first of ``samples`` (or the most recent list) whose files do not decode (on failure)."""
    if not ("JPEG" in message or "PNG" in message or "image" in message.lower()):
        return None
    for listed in [samples] if samples else _RECENT_SAMPLES[:1]:
        for s in listed:
            for path, reader in ((s.rgb_path, load_image), (s.depth_path, load_depth_png),
                                 (s.right_rgb_path, load_image), (s.right_depth_path, load_depth_png)):
                if path is None:
                    continue
                try:
                    reader(path)
                except DataError as err:
                    return f"{s.where}: {err}"
    return None


@contextlib.contextmanager
def data_errors(samples: Optional[Sequence[Sample]] = None) -> Iterator[None]:
    """Re-raise TF errors met while iterating a pipeline as one-line :class:`DataError`s.

    ``samples``: the samples being read, in reading order, to name an undecodable file quickly.
    """
    try:
        yield
    except tf.errors.OpError as err:
        # A distributed iterator all-reduces across workers: a dead peer aborts that collective,
        # which is not a data fault (bts_main.py names the lost worker).
        if isinstance(err, tf.errors.UnavailableError) and "Collective" in (err.message or ""):
            raise
        raise DataError(describe_data_error(err, samples)) from None


def check_files_exist(samples: Sequence[Sample]) -> int:
    """A DataError naming the first line whose file is missing; returns how many were checked.

    Local and ``ram://`` paths only (~4 ms per 1000 local files); other schemes (``gs://``) cost
    one request each, so the pipeline reports their missing files when it reaches them.
    """
    checked = 0
    for s in samples:
        for path in (s.rgb_path, s.depth_path):
            if path is None or ("://" in path and not path.startswith("ram://")):
                continue
            checked += 1
            if not tf.io.gfile.exists(path):
                raise DataError(f"{s.where}: file not found: {path}")
    return checked


# ---------------------------------------------------------------------------------------------
# Whole-sample check (the numpy readers live in utils.image_io)
# ---------------------------------------------------------------------------------------------
def check_sample_bytes(sample: Sample, image_bytes: bytes, depth_bytes: Optional[bytes]) -> None:
    """Decode a sample's files fully; a DataError naming the line for anything unusable."""
    try:
        image = load_image(sample.rgb_path, image_bytes)
        if depth_bytes is not None:
            depth = load_depth_png(sample.depth_path, depth_bytes)
            if depth.shape != image.shape[:2]:
                raise DataError(f"image {image.shape[1]}x{image.shape[0]} and depth "
                                f"{depth.shape[1]}x{depth.shape[0]} have different sizes")
    except DataError as err:
        raise DataError(f"{sample.where}: {err}") from None

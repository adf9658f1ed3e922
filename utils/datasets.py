# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The one table of dataset facts (design §1.9, §3, §5, §6.3).

Every script, the data pipeline, the loss, the model's KITTI focal scaling and the evaluator read
these values from here, so a depth scale or a crop box is written exactly once.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

# Mean focal length (px) over the KITTI Eigen training list; PT divides by it (design §1.9).
KITTI_FOCAL_NORMALISER = 715.0873


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """Constants of one dataset.

    Crops are (top, left, height, width) boxes in pixels unless stated otherwise.
    """

    name: str
    depth_scale: float  # stored uint16 PNG value per metre
    max_depth: float  # network output range in metres
    loss_min_depth: float  # silog mask: gt > this (metres)
    min_depth_eval: float
    max_depth_eval: float
    rotation_degree: float  # upstream argument-file default for --degree
    brightness_range: Tuple[float, float]
    default_focal: float  # px, used when a list or an image has none
    train_border_crop: Optional[Tuple[int, int, int, int]]  # NYU only
    kb_crop_size: Optional[Tuple[int, int]]  # KITTI benchmark crop (height, width)
    scale_output_by_focal: bool  # KITTI: final depth × focal / 715.0873
    default_intrinsics: Tuple[float, float, float, float]  # fx, fy, cx, cy for point clouds
    train_input_size: Tuple[int, int]
    test_input_size: Tuple[int, int]


DATASETS = {
    "nyu": DatasetFacts(
        name="nyu",
        depth_scale=1000.0,
        max_depth=10.0,
        loss_min_depth=0.1,
        min_depth_eval=1e-3,
        max_depth_eval=10.0,
        rotation_degree=2.5,
        brightness_range=(0.75, 1.25),
        default_focal=518.8579,
        train_border_crop=(45, 43, 427, 565),  # numpy [45:472, 43:608]
        kb_crop_size=None,
        scale_output_by_focal=False,
        default_intrinsics=(518.8579, 518.8579, 320.0, 240.0),
        train_input_size=(416, 544),
        test_input_size=(480, 640),
    ),
    "kitti": DatasetFacts(
        name="kitti",
        depth_scale=256.0,
        max_depth=80.0,
        loss_min_depth=1.0,
        min_depth_eval=1e-3,
        max_depth_eval=80.0,
        rotation_degree=1.0,
        brightness_range=(0.9, 1.1),
        default_focal=721.5377,
        train_border_crop=None,
        kb_crop_size=(352, 1216),
        scale_output_by_focal=True,
        default_intrinsics=(721.5377, 721.5377, 609.5593, 172.854),
        train_input_size=(352, 704),
        test_input_size=(352, 1216),
    ),
}

# Evaluation crops on the full-size ground truth (design §6.3).
# NYU Eigen crop as a numpy slice box: rows [45, 471), cols [41, 601) of the 480×640 frame.
NYU_EIGEN_CROP = (45, 471, 41, 601)
# KITTI crops as fractions of (H, W): (top, bottom, left, right), truncated with int().
KITTI_GARG_CROP_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
KITTI_EIGEN_CROP_FRACTIONS = (0.3324324, 0.91351351, 0.0359477, 0.96405229)


@dataclasses.dataclass(frozen=True)
class TestOnlyDataset:
    """A test-time variant of a dataset of :data:`DATASETS`, for ``bts_test.py`` alone.

    It has no ground truth (nothing is scored) and uses every fact of ``base`` (depth scale,
    max depth, focal scaling, KB crop); ``utils.arguments.parse_args`` keeps its name in
    ``args.test_dataset`` and sets ``args.dataset`` to ``base``.
    """

    name: str
    base: str  # the DATASETS entry whose facts it uses
    kb_crop: bool  # the KB crop is always applied (as --do_kb_crop)
    description: str  # for --help and error messages


TEST_ONLY_DATASETS = {
    # The KITTI online depth-prediction benchmark's test images (352x1216, no public ground
    # truth): list lines 'image_path focal' (or upstream's 'image_path None focal'), predictions
    # written as raw/<image file name>.png, uint16 = depth x 256 (upstream bts_test.py).
    "kitti_benchmark": TestOnlyDataset(
        name="kitti_benchmark", base="kitti", kb_crop=True,
        description="KITTI online benchmark test images: no ground truth, no metrics"),
}


def get_dataset_facts(name: str) -> DatasetFacts:
    """Return the facts of ``name`` ('nyu' or 'kitti'); a clear error for anything else."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"--dataset {name!r} is not supported; expected one of {sorted(DATASETS)}"
        ) from None


def kb_crop_offsets(height, width) -> Tuple:
    """Top/left offsets of the KITTI benchmark crop (bottom-aligned, centred; design §5.4).

    ``height``/``width`` are ints or scalar tensors (the data pipeline) of a frame at least the
    crop size (callers check); then ``(width - 1216) // 2`` is upstream's ``int((w - 1216) / 2)``.
    """
    crop_h, crop_w = DATASETS["kitti"].kb_crop_size
    return height - crop_h, (width - crop_w) // 2


def cut_kb_crop(frame: np.ndarray) -> np.ndarray:
    """The 352×1216 KB crop of a full (H, W[, ...]) frame at :func:`kb_crop_offsets` (the inverse
    of :func:`paste_kb_crop`; upstream's online evaluation cuts the ground truth so)."""
    crop_h, crop_w = DATASETS["kitti"].kb_crop_size
    height, width = np.shape(frame)[:2]
    if height < crop_h or width < crop_w:
        raise ValueError(f"the KB crop needs a frame of at least {crop_h}x{crop_w}, got "
                         f"{height}x{width}")
    top, left = kb_crop_offsets(height, width)
    return frame[top:top + crop_h, left:left + crop_w]


def paste_kb_crop(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 352×1216 KB-crop prediction pasted into a zero float32 (height, width) canvas at
    :func:`kb_crop_offsets` (the predictor's map-back and the evaluator's, design §5.4)."""
    crop_h, crop_w = np.shape(crop)
    if (crop_h, crop_w) != DATASETS["kitti"].kb_crop_size:
        raise ValueError(f"--do_kb_crop expects a {DATASETS['kitti'].kb_crop_size} prediction, got "
                         f"{(crop_h, crop_w)}")
    top, left = kb_crop_offsets(height, width)
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top:top + crop_h, left:left + crop_w] = crop
    return canvas


# Frame size (height, width) that ``default_intrinsics`` describe: NYU's 480×640 Kinect frames and
# KITTI's 375×1242 raw frames (2011_09_26 calibration). Images of another size get scaled intrinsics.
INTRINSICS_FRAME_SIZE = {"nyu": (480, 640), "kitti": (375, 1242)}

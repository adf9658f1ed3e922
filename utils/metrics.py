# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Official BTS evaluation metrics, crops and result table (spec §6.2–6.3), in numpy.

The protocol, as the official ``eval_with_pngs.py`` / ``bts_eval.py``:

1. clip the prediction: < min → min, > max → max, inf → max, NaN → min;
2. valid ground truth: min_depth_eval < gt < max_depth_eval (strict), optionally ∧ an eval crop
   on the full-size ground truth (Garg wins over Eigen);
3. metrics per image over its valid pixels, then averaged over images.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from utils.datasets import KITTI_EIGEN_CROP_FRACTIONS, KITTI_GARG_CROP_FRACTIONS, NYU_EIGEN_CROP

METRIC_NAMES = ("silog", "abs_rel", "log10", "rms", "sq_rel", "log_rms", "d1", "d2", "d3")
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})


def compute_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """The nine metrics of spec §6.2 over matching 1-D arrays of valid depths (metres, > 0).

    silog = 100·√(mean(e²) − mean(e)²) with e = ln p − ln g; log10 = mean|log10 p − log10 g|.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "silog": float(np.sqrt(np.mean(err ** 2) - np.mean(err) ** 2) * 100.0),
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "log10": float(np.mean(np.abs(np.log10(pred) - np.log10(gt)))),
        "rms": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "sq_rel": float(np.mean(((gt - pred) ** 2) / gt)),
        "log_rms": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "d1": float(np.mean(thresh < 1.25)),
        "d2": float(np.mean(thresh < 1.25 ** 2)),
        "d3": float(np.mean(thresh < 1.25 ** 3)),
    }


def clip_prediction(pred: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Upstream clipping: below min → min, above max → max, inf → max, NaN → min."""
    pred = np.array(pred, dtype=np.float64, copy=True)
    pred[pred < min_depth] = min_depth
    pred[pred > max_depth] = max_depth
    pred[np.isinf(pred)] = max_depth
    pred[np.isnan(pred)] = min_depth
    return pred


def eval_crop_mask(height: int, width: int, dataset: str, *, eigen_crop: bool = False,
                   garg_crop: bool = False) -> np.ndarray:
    """Boolean (H, W) mask of the evaluation crop on the full-size ground truth (all True if none).

    KITTI Garg/Eigen boxes are fractions of (H, W) truncated with ``int()``; NYU Eigen is the
    fixed box rows [45, 471), cols [41, 601). Garg wins when both flags are given.
    """
    mask = np.zeros((height, width), dtype=bool)
    if garg_crop or (eigen_crop and dataset == "kitti"):
        fractions = KITTI_GARG_CROP_FRACTIONS if garg_crop else KITTI_EIGEN_CROP_FRACTIONS
        top, bottom, left, right = fractions
        mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    elif eigen_crop:
        top, bottom, left, right = NYU_EIGEN_CROP
        mask[top:bottom, left:right] = True
    else:
        mask[:] = True
    return mask


def valid_mask(gt: np.ndarray, min_depth: float, max_depth: float, dataset: str = "nyu", *,
               eigen_crop: bool = False, garg_crop: bool = False) -> np.ndarray:
    """min < gt < max (strict) ∧ the evaluation crop, on a full-size (H, W) ground truth."""
    gt = np.asarray(gt)
    valid = np.logical_and(gt > min_depth, gt < max_depth)
    return valid & eval_crop_mask(*gt.shape[:2], dataset, eigen_crop=eigen_crop, garg_crop=garg_crop)


def evaluate_image(gt: np.ndarray, pred: np.ndarray, min_depth: float, max_depth: float,
                   dataset: str = "nyu", *, eigen_crop: bool = False,
                   garg_crop: bool = False) -> Optional[Dict[str, float]]:
    """Metrics of one (H, W) prediction against its full-size ground truth; None if no valid pixel."""
    gt = np.asarray(gt, dtype=np.float64)
    gt = np.where(np.isfinite(gt), gt, 0.0)  # eval_with_pngs zeroes inf/NaN ground truth
    pred = clip_prediction(pred, min_depth, max_depth)
    mask = valid_mask(gt, min_depth, max_depth, dataset, eigen_crop=eigen_crop, garg_crop=garg_crop)
    if not mask.any():
        return None
    return compute_errors(gt[mask], pred[mask])


def average_metrics(per_image: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Mean of each metric over images (the official per-image averaging)."""
    rows = [row for row in per_image if row is not None]
    if not rows:
        raise ValueError("no image had a valid ground-truth pixel; nothing to average")
    return {name: float(np.mean([row[name] for row in rows])) for name in METRIC_NAMES}


def format_result_table(metrics: Mapping[str, float]) -> str:
    """The upstream two-line table: header then values (silog/abs_rel 4 decimals, others 3)."""
    header = "{:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}".format(*METRIC_NAMES)
    values = [metrics[name] for name in METRIC_NAMES]
    row = "{:7.4f}, {:7.4f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}".format(*values)
    return header + "\n" + row


def is_better(metric: str, new: float, best: Optional[float]) -> bool:
    """Whether ``new`` improves on ``best`` for ``metric`` (d1–d3 higher, the rest lower)."""
    if best is None:
        return True
    return new > best if metric in HIGHER_IS_BETTER else new < best

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Official BTS evaluation metrics, crops and result table (design §6.2, §6.3), in numpy.

The protocol, as the official ``eval_with_pngs.py`` / ``bts_eval.py``:

1. clip the prediction: < min → min, > max → max, inf → max, NaN → min;
2. valid ground truth: min_depth_eval < gt < max_depth_eval (strict);
3. KITTI ``--do_kb_crop``: the 352×1216 prediction is pasted into a zero canvas of GT size
   (after clipping, as ``eval_with_pngs.py``);
4. ∧ an eval crop on the full-size ground truth (Garg wins over Eigen);
5. metrics per image over its valid pixels (float32, as upstream), then averaged over images.

``protocol="official_online"`` (``--online_eval_protocol``) is upstream ``bts_main.py``'s
online evaluation instead: with ``--do_kb_crop`` the ground truth is cut to the 352×1216 KB crop
(step 3) and the crop fractions of step 4 are those of the crop. NYU, and KITTI without the KB
crop, score identically under both.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from utils.datasets import (KITTI_EIGEN_CROP_FRACTIONS, KITTI_GARG_CROP_FRACTIONS, NYU_EIGEN_CROP,
                            cut_kb_crop, paste_kb_crop)

METRIC_NAMES = ("silog", "abs_rel", "log10", "rms", "sq_rel", "log_rms", "d1", "d2", "d3")
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})
# How a KITTI KB-cropped prediction meets its ground truth (--online_eval_protocol): "offline"
# pastes it into the full frame (eval_with_pngs.py, the published numbers); "official_online"
# cuts the ground truth to the crop (upstream bts_main.py's online_eval).
EVAL_PROTOCOLS = ("offline", "official_online")


def compute_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """The nine metrics of design §6.2 over matching 1-D arrays of valid depths (metres, > 0).

    Computed exactly as the official ``eval_with_pngs.py``: in float32 (its depths are float32
    PNG values / scale) with the same numpy operations, and each result rounded to float32 (it
    stores per-image metrics in float32 arrays), so numbers agree with it bit for bit.
    silog = 100·√(mean(e²) − mean(e)²) with e = ln p − ln g; log10 = mean|log10 p − log10 g|.
    """
    gt = np.asarray(gt, dtype=np.float32)
    pred = np.asarray(pred, dtype=np.float32)
    thresh = np.maximum((gt / pred), (pred / gt))
    d1 = (thresh < 1.25).mean()
    d2 = (thresh < 1.25 ** 2).mean()
    d3 = (thresh < 1.25 ** 3).mean()
    rms = np.sqrt(((gt - pred) ** 2).mean())
    log_rms = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    err = np.log(pred) - np.log(gt)
    silog = np.sqrt(np.mean(err ** 2) - np.mean(err) ** 2) * 100
    log10 = np.mean(np.abs(np.log10(pred) - np.log10(gt)))
    values = {"silog": silog, "abs_rel": abs_rel, "log10": log10, "rms": rms, "sq_rel": sq_rel,
              "log_rms": log_rms, "d1": d1, "d2": d2, "d3": d3}
    return {name: float(np.float32(value)) for name, value in values.items()}


def clip_prediction(pred: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Upstream clipping on a float32 copy: below min → min, above max → max, inf → max,
    NaN → min (``bts_eval.py``'s rule; PNG predictions have no NaN)."""
    pred = np.array(pred, dtype=np.float32, copy=True)
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
                   dataset: str = "nyu", *, eigen_crop: bool = False, garg_crop: bool = False,
                   do_kb_crop: bool = False, protocol: str = "offline") -> Optional[Dict[str, float]]:
    """Metrics of one prediction against its full-size (H, W) ground truth; None if no valid pixel.

    Steps in the order of the official offline evaluator ``eval_with_pngs.py`` (which produced the
    published numbers): clip the prediction; zero non-finite GT; valid = min < gt < max; with
    ``do_kb_crop`` paste the 352×1216 prediction into a zero canvas of GT size (after clipping, so
    the pasted zeros stay zero; they lie outside the Garg crop); intersect with the eval crop.
    ``protocol="official_online"``: with ``do_kb_crop`` the ground truth is cut to the KB crop
    instead, and the eval crop is taken of that 352×1216 crop (upstream ``bts_main.py``'s
    ``online_eval``); otherwise it changes nothing.
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"evaluation protocol {protocol!r} is unknown; expected one of "
                         f"{', '.join(EVAL_PROTOCOLS)}")
    gt = np.array(gt, dtype=np.float32, copy=True)
    gt[~np.isfinite(gt)] = 0  # eval_with_pngs zeroes inf/NaN ground truth
    pred = clip_prediction(pred, min_depth, max_depth)
    if do_kb_crop and protocol == "official_online":
        gt = np.ascontiguousarray(cut_kb_crop(gt))  # the crop fractions below are the crop's
        if pred.shape != gt.shape:
            raise ValueError(f"--do_kb_crop expects a {gt.shape} prediction, got {pred.shape}")
    elif do_kb_crop:
        pred = paste_kb_crop(pred, *gt.shape)
    elif pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size "
                         "(KITTI KB-cropped predictions need --do_kb_crop)")
    mask = valid_mask(gt, min_depth, max_depth, dataset, eigen_crop=eigen_crop, garg_crop=garg_crop)
    if not mask.any():
        return None
    return compute_errors(gt[mask], pred[mask])


def average_metrics(per_image: Iterable[Optional[Mapping[str, float]]]) -> Dict[str, float]:
    """Mean of each metric over images, as the official evaluator: ``np.float32`` array ``.mean()``
    in the order given (per-image values were rounded to float32 by :func:`compute_errors`)."""
    rows = [row for row in per_image if row is not None]
    if not rows:
        raise ValueError("no image had a valid ground-truth pixel; nothing to average")
    return {name: float(np.array([row[name] for row in rows], dtype=np.float32).mean())
            for name in METRIC_NAMES}


# Column order and names of the official evaluator's table (``eval_with_pngs.py``).
PNG_EVAL_COLUMNS = (("d1", "d1"), ("d2", "d2"), ("d3", "d3"), ("abs_rel", "AbsRel"),
                    ("sq_rel", "SqRel"), ("rms", "RMSE"), ("log_rms", "RMSElog"), ("silog", "SILog"),
                    ("log10", "log10"))


def format_result_table(metrics: Mapping[str, float], style: str = "bts_eval") -> str:
    """The upstream two-line table: header then values.

    ``bts_eval`` (PT ``bts_eval.py`` / online eval): METRIC_NAMES order, silog/abs_rel 4 decimals,
    others 3. ``eval_with_pngs``: d1, d2, d3, AbsRel, SqRel, RMSE, RMSElog, SILog, log10, 3 decimals.
    """
    if style == "eval_with_pngs":
        header = ", ".join("{:>7}".format(title) for _, title in PNG_EVAL_COLUMNS)
        row = ", ".join("{:7.3f}".format(metrics[name]) for name, _ in PNG_EVAL_COLUMNS)
        return header + "\n" + row
    if style != "bts_eval":
        raise ValueError(f"table style {style!r} is unknown; expected bts_eval or eval_with_pngs")
    header = "{:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}, {:>7}".format(*METRIC_NAMES)
    values = [metrics[name] for name in METRIC_NAMES]
    row = "{:7.4f}, {:7.4f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}, {:7.3f}".format(*values)
    return header + "\n" + row


def is_better(metric: str, new: float, best: Optional[float]) -> bool:
    """Whether ``new`` improves on ``best`` for ``metric`` (d1–d3 higher, the rest lower)."""
    if best is None:
        return True
    return new > best if metric in HIGHER_IS_BETTER else new < best


def metrics_csv_text(names: Sequence[str], per_image: Sequence[Optional[Mapping[str, float]]],
                     mean: Optional[Mapping[str, float]] = None) -> str:
    """CSV of per-image metrics (full precision; empty cells when an image had no valid GT) with
    a final ``mean`` row."""
    lines = ["name," + ",".join(METRIC_NAMES)]
    for name, row in zip(names, per_image):
        cells = [repr(row[m]) if row is not None else "" for m in METRIC_NAMES]
        lines.append(_csv_cell(name) + "," + ",".join(cells))
    if mean is not None:
        lines.append("mean," + ",".join(repr(mean[m]) for m in METRIC_NAMES))
    return "\n".join(lines) + "\n"


def write_metrics_csv(path: str, names: Sequence[str],
                      per_image: Sequence[Optional[Mapping[str, float]]],
                      mean: Optional[Mapping[str, float]] = None, label: str = "--metrics_csv") -> None:
    """Write :func:`metrics_csv_text` atomically; a failure is one WriteError line naming
    ``label`` (the flag that chose the file) and ``path``."""
    from utils.io import WriteError, atomic_write_text, write_errors, write_failure_reason  # no TF here

    try:
        atomic_write_text(path, metrics_csv_text(names, per_image, mean))
    except write_errors() as err:
        raise WriteError(f"cannot write {label} {path}: {write_failure_reason(err)}") from None


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text

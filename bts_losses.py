# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Scale-invariant log (silog) loss of BTS (design §3).

    d = ln(pred) − ln(gt) over the valid pixels of the whole batch (pooled),
    L = scale · √( mean(d²) − variance_focus · mean(d)² ),  valid = gt > min_depth

Masked pixels may hold 0 or garbage in either tensor: they are replaced before the logarithm, so
values and gradients stay finite. A batch with no valid pixel has loss 0 and zero gradients.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

Tensor = Any  # a backend tensor: tf.Tensor under the TensorFlow backend

VARIANCE_FOCUS = 0.85
SCALE = 10.0


def silog_statistics(depth_pred: Tensor, depth_gt: Tensor, min_depth: float) -> Tensor:
    """Sufficient statistics (Σd, Σd², count) of the valid pixels, shape (3,) float32.

    Sums, unlike means, add across replicas, so a distributed step can pool the whole global
    batch exactly (``all_reduce`` then :func:`silog_from_statistics`).
    """
    depth_pred = ops.cast(depth_pred, "float32")
    depth_gt = ops.cast(depth_gt, "float32")
    valid = depth_gt > min_depth
    ones = ops.ones_like(depth_gt)
    # where() on the inputs (not only the output) keeps log() and its gradient finite.
    diff = ops.log(ops.where(valid, depth_pred, ones)) - ops.log(ops.where(valid, depth_gt, ones))
    diff = ops.where(valid, diff, ops.zeros_like(diff))
    count = ops.sum(ops.cast(valid, "float32"))
    return ops.stack([ops.sum(diff), ops.sum(ops.square(diff)), count])


def silog_from_statistics(statistics: Tensor, variance_focus: float = VARIANCE_FOCUS,
                          scale: float = SCALE) -> Tensor:
    """scale·√(mean(d²) − λ·mean(d)²) from (Σd, Σd², count).

    0 (with zero gradient) when count is 0 or the variance is ≤ 0 (an exact fit); NaN when the
    statistics are NaN/Inf, so a diverged run is seen, never reported as a perfect loss of 0.
    """
    sum_d, sum_d2, count = statistics[0], statistics[1], statistics[2]
    safe_count = ops.maximum(count, 1.0)
    mean_d = sum_d / safe_count
    variance = sum_d2 / safe_count - variance_focus * ops.square(mean_d)
    positive = variance > 0.0
    # sqrt'(0) is infinite: give a zero (sub)gradient at an exact fit or an empty batch. NaN
    # compares false both ways, so it falls through to ``variance`` and stays NaN.
    root = ops.where(positive, ops.sqrt(ops.where(positive, variance, ops.ones_like(variance))),
                     ops.where(variance <= 0.0, ops.zeros_like(variance), variance))
    return scale * root


def silog_loss(depth_pred: Tensor, depth_gt: Tensor, min_depth: float,
               variance_focus: float = VARIANCE_FOCUS, scale: float = SCALE) -> Tensor:
    """Silog loss (scalar float32) of predictions against ground truth in metres.

    Args:
      depth_pred: (B, H, W[, 1]) predicted depth, > 0 where valid.
      depth_gt: same shape; pixels with gt <= ``min_depth`` (0.1 NYU, 1.0 KITTI) are ignored.
    """
    return silog_from_statistics(silog_statistics(depth_pred, depth_gt, min_depth),
                                 variance_focus, scale)


@keras.saving.register_keras_serializable(package="bts")
class SilogLoss(keras.losses.Loss):
    """``keras.losses.Loss`` wrapper of :func:`silog_loss` (batch-pooled, so no per-sample reduction)."""

    def __init__(self, min_depth: float, variance_focus: float = VARIANCE_FOCUS, scale: float = SCALE,
                 name: str = "silog_loss", **kwargs):
        kwargs.pop("reduction", None)  # the loss is already pooled over the batch
        super().__init__(name=name, reduction="none", **kwargs)
        self.min_depth, self.variance_focus, self.scale = min_depth, variance_focus, scale

    def call(self, y_true, y_pred):
        return silog_loss(y_pred, y_true, self.min_depth, self.variance_focus, self.scale)

    def get_config(self):
        return {**super().get_config(), "min_depth": self.min_depth,
                "variance_focus": self.variance_focus, "scale": self.scale}

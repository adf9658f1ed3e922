# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Scale-invariant log (silog) loss of BTS (spec §3).

    d = ln(pred) − ln(gt) over the valid pixels of the whole batch (pooled),
    L = scale · √( mean(d²) − variance_focus · mean(d)² ),  valid = gt > min_depth

Masked pixels may hold 0 or garbage in either tensor: they are replaced before the logarithm, so
values and gradients stay finite. A batch with no valid pixel has loss 0 and zero gradients.
"""
from __future__ import annotations

import keras
import tensorflow as tf

VARIANCE_FOCUS = 0.85
SCALE = 10.0


def silog_statistics(depth_pred: tf.Tensor, depth_gt: tf.Tensor, min_depth: float) -> tf.Tensor:
    """Sufficient statistics (Σd, Σd², count) of the valid pixels, shape (3,) float32.

    Sums, unlike means, add across replicas, so a distributed step can pool the whole global
    batch exactly (``all_reduce`` then :func:`silog_from_statistics`).
    """
    depth_pred = tf.cast(depth_pred, tf.float32)
    depth_gt = tf.cast(depth_gt, tf.float32)
    valid = depth_gt > min_depth
    ones = tf.ones_like(depth_gt)
    # tf.where on the inputs (not only the output) keeps log() and its gradient finite.
    diff = tf.math.log(tf.where(valid, depth_pred, ones)) - tf.math.log(tf.where(valid, depth_gt, ones))
    diff = tf.where(valid, diff, tf.zeros_like(diff))
    count = tf.reduce_sum(tf.cast(valid, tf.float32))
    return tf.stack([tf.reduce_sum(diff), tf.reduce_sum(tf.square(diff)), count])


def silog_from_statistics(statistics: tf.Tensor, variance_focus: float = VARIANCE_FOCUS,
                          scale: float = SCALE) -> tf.Tensor:
    """scale·√(mean(d²) − λ·mean(d)²) from (Σd, Σd², count); 0 when count is 0."""
    sum_d, sum_d2, count = statistics[0], statistics[1], statistics[2]
    safe_count = tf.maximum(count, 1.0)
    mean_d = sum_d / safe_count
    variance = sum_d2 / safe_count - variance_focus * tf.square(mean_d)
    positive = variance > 0.0
    # sqrt'(0) is infinite: give a zero (sub)gradient at an exact fit or an empty batch.
    root = tf.where(positive, tf.sqrt(tf.where(positive, variance, tf.ones_like(variance))), 0.0)
    return scale * root


def silog_loss(depth_pred: tf.Tensor, depth_gt: tf.Tensor, min_depth: float,
               variance_focus: float = VARIANCE_FOCUS, scale: float = SCALE) -> tf.Tensor:
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

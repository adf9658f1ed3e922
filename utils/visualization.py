# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Tensor-side image helpers for TensorBoard: colormapped depth on a fixed scale, de-normalised RGB.

The scale is fixed ([0, max_depth] → the whole colormap) rather than min–max per image, so images
logged at different steps can be compared by eye.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from utils.encoders import encoder_facts, normalization_affine
from utils.image_io import colorize_depth

COLORMAP = "magma"


def colorize(depth: tf.Tensor, max_value: float, name: str = COLORMAP) -> tf.Tensor:
    """(B, H, W, 1) depth → (B, H, W, 3) float RGB in [0, 1]; ≥ max saturates, invalid is black.

    The colours of ``utils.image_io.colorize_depth`` (one table, one scaling rule), run eagerly
    on the host: images are logged from Python, outside any ``tf.function``.
    """
    rgb = colorize_depth(np.asarray(depth, dtype=np.float32)[..., 0], max_value, name)
    return tf.constant(rgb, dtype=tf.float32) / 255.0


def denormalize(image: tf.Tensor, encoder: str) -> tf.Tensor:
    """Undo the encoder's input normalisation: (B, H, W, 3) → RGB in [0, 1]."""
    scale, bias, bgr = normalization_affine(encoder_facts(encoder).normalization)
    image = (tf.cast(image, tf.float32) - bias.astype("float32")) / scale.astype("float32")
    if bgr:
        image = image[..., ::-1]
    return tf.clip_by_value(image, 0.0, 1.0)

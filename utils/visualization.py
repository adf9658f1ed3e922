# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Tensor-side image helpers for TensorBoard: colormapped depth on a fixed scale, de-normalised RGB.

The scale is fixed ([0, max_depth] → the whole colormap) rather than min–max per image, so images
logged at different steps can be compared by eye.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from utils.encoders import encoder_facts, normalization_affine

COLORMAP = "magma"


@functools.lru_cache(maxsize=4)
def colormap_lut(name: str = COLORMAP) -> np.ndarray:
    """(256, 3) float32 RGB table of a matplotlib colormap."""
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def colorize(depth: tf.Tensor, max_value: float, name: str = COLORMAP) -> tf.Tensor:
    """(B, H, W, 1) depth → (B, H, W, 3) float RGB in [0, 1]; 0 (invalid) and ≥ max saturate."""
    depth = tf.cast(depth, tf.float32)[..., 0]
    scaled = tf.clip_by_value(depth / max_value, 0.0, 1.0)
    scaled = tf.where(tf.math.is_finite(scaled), scaled, tf.ones_like(scaled))
    index = tf.cast(tf.round(scaled * 255.0), tf.int32)
    return tf.gather(tf.constant(colormap_lut(name)), index)


def denormalize(image: tf.Tensor, encoder: str) -> tf.Tensor:
    """Undo the encoder's input normalisation: (B, H, W, 3) → RGB in [0, 1]."""
    scale, bias, bgr = normalization_affine(encoder_facts(encoder).normalization)
    image = (tf.cast(image, tf.float32) - bias.astype("float32")) / scale.astype("float32")
    if bgr:
        image = image[..., ::-1]
    return tf.clip_by_value(image, 0.0, 1.0)

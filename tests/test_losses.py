# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""silog loss against a numpy reference, its invariances and its gradients."""
import math

import numpy as np
import pytest
import tensorflow as tf

from bts_losses import SilogLoss, silog_loss


def _numpy_silog(pred, gt, min_depth, variance_focus=0.85):
    mask = gt > min_depth
    d = np.log(pred[mask]) - np.log(gt[mask])
    return 10.0 * math.sqrt(np.mean(d ** 2) - variance_focus * np.mean(d) ** 2)


def _pair(seed=0, shape=(2, 8, 10, 1)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 9.0, size=shape).astype("float32")
    gt[rng.random(shape) < 0.3] = 0.0  # invalid pixels
    pred = (gt * np.exp(rng.normal(0, 0.2, size=shape))).astype("float32")
    pred[gt == 0] = rng.uniform(0.1, 5, size=int((gt == 0).sum()))
    return pred, gt


def test_silog_matches_numpy_reference_pooled_over_batch():
    pred, gt = _pair()
    assert float(silog_loss(pred, gt, 0.1)) == pytest.approx(_numpy_silog(pred, gt, 0.1), rel=1e-5)


def test_kitti_threshold_ignores_gt_up_to_one_metre():
    pred, gt = _pair(1)
    gt[0, 0, :5, 0] = 0.9  # valid for NYU, masked for KITTI
    assert float(silog_loss(pred, gt, 1.0)) == pytest.approx(_numpy_silog(pred, gt, 1.0), rel=1e-5)
    assert float(silog_loss(pred, gt, 1.0)) != pytest.approx(float(silog_loss(pred, gt, 0.1)))


@pytest.mark.parametrize("c", [0.5, 2.0, 3.0])
def test_global_scale_error_costs_ten_sqrt_015_log_c(c):
    _, gt = _pair(2)
    pred = np.where(gt > 0, gt * c, 1.0).astype("float32")
    expected = 10.0 * math.sqrt(0.15) * abs(math.log(c))
    assert float(silog_loss(pred, gt, 0.1)) == pytest.approx(expected, rel=1e-5)


def test_masked_pixels_do_not_change_the_loss():
    pred, gt = _pair(3)
    other = pred.copy()
    other[gt == 0] = np.random.default_rng(9).uniform(0, 100, size=int((gt == 0).sum()))
    other[0, 0, 0, 0] = 0.0 if gt[0, 0, 0, 0] == 0 else other[0, 0, 0, 0]
    assert float(silog_loss(other, gt, 0.1)) == pytest.approx(float(silog_loss(pred, gt, 0.1)), rel=1e-6)


def test_gradients_are_finite_with_zeros_in_masked_pixels():
    pred, gt = _pair(4)
    pred[gt == 0] = 0.0  # log(0) would be -inf if not masked before the log
    pred_var = tf.Variable(pred)
    with tf.GradientTape() as tape:
        loss = silog_loss(pred_var, gt, 0.1)
    grad = tape.gradient(loss, pred_var).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    assert np.all(grad[gt == 0] == 0.0) and np.any(grad[gt > 0] != 0.0)


def test_batch_without_valid_pixels_gives_zero_loss_and_zero_gradient():
    pred = tf.Variable(np.full((1, 4, 4, 1), 3.0, dtype="float32"))
    gt = np.zeros((1, 4, 4, 1), dtype="float32")
    gt[0, 0, 0, 0] = 0.05  # below the NYU threshold
    with tf.GradientTape() as tape:
        loss = silog_loss(pred, gt, 0.1)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(tape.gradient(loss, pred).numpy(), 0.0)


def test_perfect_prediction_has_zero_loss_and_finite_gradient():
    _, gt = _pair(5)
    pred = tf.Variable(np.where(gt > 0, gt, 1.0).astype("float32"))
    with tf.GradientTape() as tape:
        loss = silog_loss(pred, gt, 0.1)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(tape.gradient(loss, pred).numpy()))


def test_keras_loss_wrapper_equals_function_and_serialises():
    pred, gt = _pair(6)
    loss = SilogLoss(min_depth=0.1, variance_focus=0.5)
    assert float(loss(gt, pred)) == pytest.approx(_numpy_silog(pred, gt, 0.1, 0.5), rel=1e-5)
    clone = SilogLoss.from_config(loss.get_config())
    assert clone.variance_focus == 0.5 and clone.min_depth == 0.1

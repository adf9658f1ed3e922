# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""BTS model: LPG formula, parameter counts, feature shapes, output range, focal scaling, saving."""
import math

import keras
import numpy as np
import pytest

import bts_model
from conftest import tiny_model_config
from tools.convert_pytorch_checkpoint import pytorch_key_for
from utils.datasets import KITTI_FOCAL_NORMALISER


def _inputs(batch, height, width, focal=518.8579, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(batch, height, width, 3)).astype("float32"),
            "focal": np.full((batch,), focal, dtype="float32")}


def _plane(n1, n2, n3, d, h=3, w=5):
    plane = np.stack([np.full((h, w), n1), np.full((h, w), n2), np.full((h, w), n3),
                      np.full((h, w), d)], axis=-1)
    return plane[None].astype("float32")


# ------------------------------------------------------------------ LPG
def test_lpg_fronto_parallel_plane_gives_constant_depth():
    for r in (2, 4, 8):
        out = bts_model.LocalPlanarGuidance(r)(_plane(0.0, 0.0, 1.0, 3.7)).numpy()
        assert out.shape == (1, 3 * r, 5 * r, 1)
        np.testing.assert_allclose(out, 3.7, rtol=1e-6)


@pytest.mark.parametrize("r", [2, 4, 8])
def test_lpg_tilted_plane_matches_numpy_closed_form(r):
    rng = np.random.default_rng(r)
    h, w = 3, 4
    theta = rng.uniform(0, math.pi / 3, (h, w))
    phi = rng.uniform(0, 2 * math.pi, (h, w))
    dist = rng.uniform(0.5, 9.0, (h, w))
    normal = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    plane = np.concatenate([normal, dist[..., None]], -1)[None].astype("float32")
    out = bts_model.LocalPlanarGuidance(r)(plane).numpy()[0, ..., 0]
    expected = np.zeros((h * r, w * r))
    for y in range(h * r):
        for x in range(w * r):
            i, j = y // r, x // r
            u = ((x % r) - (r - 1) / 2) / r  # column offset
            v = ((y % r) - (r - 1) / 2) / r  # row offset
            n1, n2, n3 = normal[i, j]
            expected[y, x] = dist[i, j] / (n1 * u + n2 * v + n3)
    np.testing.assert_allclose(out, expected, rtol=2e-5)


def test_lpg_offsets_take_the_documented_values():
    np.testing.assert_allclose(bts_model.lpg_offsets(8).numpy(),
                               [-0.4375, -0.3125, -0.1875, -0.0625, 0.0625, 0.1875, 0.3125, 0.4375])
    np.testing.assert_allclose(bts_model.lpg_offsets(2).numpy(), [-0.25, 0.25])


def test_lpg_normalises_the_normal_before_use():
    scaled = bts_model.LocalPlanarGuidance(4)(_plane(0.2, -0.1, 0.9, 2.0) * [3, 3, 3, 1]).numpy()
    unit = np.array([0.2, -0.1, 0.9]) / np.linalg.norm([0.2, -0.1, 0.9])
    reference = bts_model.LocalPlanarGuidance(4)(_plane(*unit, 2.0)).numpy()
    np.testing.assert_allclose(scaled, reference, rtol=1e-6)


def test_nearest_downsample_picks_top_left_pixel_of_each_block():
    x = np.arange(8 * 8, dtype="float32").reshape(1, 8, 8, 1)
    out = bts_model.NearestDownsample(4)(x).numpy()[0, ..., 0]
    np.testing.assert_array_equal(out, [[0, 4], [32, 36]])


def test_plane_head_ranges_and_channel_order():
    head = bts_model.ReductionHead(16, 8, max_depth=10.0)
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 16)).astype("float32") * 5
    out = head(x).numpy()
    normal, dist = out[..., :3], out[..., 3]
    np.testing.assert_allclose(np.linalg.norm(normal, axis=-1), 1.0, rtol=1e-5)
    assert np.all(normal[..., 2] >= math.cos(math.pi / 3) - 1e-6)  # θ ≤ π/3
    assert np.all((dist > 0) & (dist < 10.0))


def test_reduction_chains_follow_pt_halving_rule():
    assert bts_model.reduction_chain(128, 128) == ((128, 128), (128, 64), (64, 32), (32, 16), (16, 8))
    assert bts_model.reduction_chain(128, 64) == ((128, 64), (64, 32), (32, 16), (16, 8))
    assert bts_model.reduction_chain(64, 32) == ((64, 32), (32, 16), (16, 8))
    assert bts_model.reduction_chain(32, 16) == ((32, 16), (16, 8))


# ------------------------------------------------------------------ architecture
def _trainable_counts(model):
    total = bts_model.count_params(model.trainable_weights)
    encoder = bts_model.count_params([w for w in model.trainable_weights
                                      if bts_model.is_encoder_variable(w)])
    return total, encoder, total - encoder


@pytest.fixture(scope="module")
def full_model():
    """DenseNet-161 BTS, built once for the structural tests (building costs ~8 s)."""
    return bts_model.build_bts_model(bts_model.BtsConfig())


def test_densenet161_parameter_count_is_exact(full_model):
    assert _trainable_counts(full_model) == (47_000_688, 26_472_000, 20_528_688)


def test_densenet121_parameter_count_is_exact():
    model = bts_model.build_bts_model(bts_model.BtsConfig(encoder="densenet121_bts"))
    assert _trainable_counts(model)[0] == 21_168_048


@pytest.mark.parametrize("name,channels", [
    ("densenet161_bts", (96, 96, 192, 384, 2208)),
    ("densenet121_bts", (64, 64, 128, 256, 1024)),
])
def test_encoder_features_have_documented_strides_and_channels(name, channels):
    image = keras.Input((416, 544, 3))
    features = bts_model.densenet_encoder(image, bts_model.DENSENET_CONFIGS[name])
    for (key, stride), ch in zip(zip(bts_model.FEATURE_NAMES, (2, 4, 8, 16, 32)), channels):
        assert tuple(features[key].shape[1:]) == (416 // stride, 544 // stride, ch), key
    assert bts_model.DENSENET_CONFIGS[name].skip_channels() == channels


def test_stem_uses_symmetric_padding_like_pytorch(full_model):
    model = full_model
    assert model.get_layer("encoder.conv0_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("encoder.conv0").padding == "valid"
    assert model.get_layer("encoder.pool0_pad").padding == ((1, 1), (1, 1))


def test_batchnorm_epsilons_follow_pt(full_model):
    model = full_model
    assert model.get_layer("encoder.norm0").epsilon == 1e-5
    assert model.get_layer("encoder.norm0").momentum == pytest.approx(0.9)
    assert model.get_layer("bn5").epsilon == 1.1e-5
    daspp = model.get_layer("daspp_6")
    assert daspp.first_bn.epsilon == 1.1e-5 and daspp.bn.epsilon == 1e-5
    assert model.get_layer("daspp_3").first_bn is None
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers)


def test_every_weight_maps_to_a_unique_pytorch_key(full_model):
    model = full_model
    keys = [pytorch_key_for(w.path) for w in model.weights]
    assert len(keys) == len(set(keys))
    assert "encoder.base_model.denseblock3.denselayer36.conv2.weight" in keys
    assert "decoder.daspp_24.atrous_conv.aconv_sequence.4.weight" in keys
    assert "decoder.reduc8x8.reduc.inter_128_128.0.weight" in keys
    assert "decoder.reduc1x1.reduc.final.0.weight" in keys
    assert "decoder.bn4_2.running_var" in keys


# ------------------------------------------------------------------ behaviour (tiny encoder)
def test_final_depth_is_finite_and_within_max_depth(tiny_config):
    model = bts_model.build_bts_model(tiny_config)
    depth = model(_inputs(2, 64, 96)).numpy()
    assert depth.shape == (2, 64, 96, 1)
    assert np.all(np.isfinite(depth)) and np.all(depth > 0) and np.all(depth <= 10.0)


def test_same_weights_run_at_several_input_sizes(tiny_config):
    model = bts_model.build_bts_model(tiny_config)
    for height, width in ((64, 96), (96, 128), (32, 64)):
        assert model(_inputs(1, height, width)).shape == (1, height, width, 1)


def test_kitti_depth_scales_with_focal_and_nyu_ignores_it(tiny_config):
    kitti = bts_model.build_bts_model(tiny_model_config("kitti"))
    base = kitti(_inputs(1, 64, 96, focal=KITTI_FOCAL_NORMALISER)).numpy()
    double = kitti(_inputs(1, 64, 96, focal=2 * KITTI_FOCAL_NORMALISER)).numpy()
    np.testing.assert_allclose(double, 2 * base, rtol=1e-6)
    assert base.max() <= 80.0
    nyu = bts_model.build_bts_model(tiny_config)
    np.testing.assert_array_equal(nyu(_inputs(1, 64, 96, focal=100.0)).numpy(),
                                  nyu(_inputs(1, 64, 96, focal=900.0)).numpy())


def test_focal_scaling_is_per_sample(tiny_config):
    kitti = bts_model.build_bts_model(tiny_model_config("kitti"))
    inputs = _inputs(2, 64, 96)
    inputs["image"][1] = inputs["image"][0]
    inputs["focal"] = np.array([700.0, 1400.0], dtype="float32")
    depth = kitti(inputs).numpy()
    np.testing.assert_allclose(depth[1], 2 * depth[0], rtol=1e-6)


def test_keras_file_round_trip_gives_identical_outputs(tiny_config, tmp_path):
    model = bts_model.build_bts_model(tiny_config)
    inputs = _inputs(1, 64, 96)
    path = str(tmp_path / "bts.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(inputs).numpy(), loaded(inputs).numpy())


def test_lpg_maps_model_shares_weights_and_returns_all_maps(tiny_config):
    model = bts_model.build_bts_model(tiny_config)
    maps = bts_model.build_lpg_maps_model(model)(_inputs(1, 64, 96))
    np.testing.assert_array_equal(maps["depth"].numpy(), model(_inputs(1, 64, 96)).numpy())
    for name in bts_model.LPG_MAP_LAYERS:
        assert maps[name].shape == (1, 64, 96, 1)


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="densenet161_bts"):
        bts_model.build_bts_model(bts_model.BtsConfig(encoder="vgg99"))


# ------------------------------------------------------------------ fused batch norm
@pytest.mark.parametrize("training", [False, True])
def test_fused_batchnorm_matches_keras_batchnorm(training):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(2, 5, 6, 7)).astype("float32")
    ours = bts_model.BatchNorm(epsilon=1.1e-5, momentum=0.9)
    ref = keras.layers.BatchNormalization(epsilon=1.1e-5, momentum=0.9)
    ours.build(x.shape), ref.build(x.shape)
    values = [rng.uniform(0.5, 2, 7), rng.normal(size=7), rng.normal(size=7), rng.uniform(0.5, 2, 7)]
    ours.set_weights(values), ref.set_weights(values)
    np.testing.assert_allclose(ours(x, training=training).numpy(), ref(x, training=training).numpy(),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=1e-5)
    if training:  # PyTorch-style update with the unbiased batch variance
        n = 2 * 5 * 6
        expected = 0.9 * values[3] + 0.1 * x.reshape(-1, 7).var(axis=0) * n / (n - 1)
        np.testing.assert_allclose(ours.moving_variance.numpy(), expected, rtol=1e-4)


def test_frozen_gamma_beta_keep_batch_statistics():
    x = np.random.default_rng(2).normal(5.0, 2.0, size=(4, 3, 3, 2)).astype("float32")
    bn = bts_model.BatchNorm()
    bn.build(x.shape)
    bn.gamma.trainable = False
    bn.beta.trainable = False
    out = bn(x, training=True).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)  # batch stats used
    assert not bn.trainable_weights


@pytest.mark.slow
def test_full_densenet161_forward_is_finite_and_bounded(full_model):
    depth = full_model(_inputs(1, 64, 96)).numpy()
    assert np.all(np.isfinite(depth)) and depth.min() > 0 and depth.max() <= 10.0

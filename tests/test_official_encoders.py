# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The official zoo's torchvision encoders: ResNet-50/101, ResNeXt-50/101, MobileNetV2 (and the
DenseNets where a rule covers every official encoder).

Known answers, independent of ``bts_model``'s tables: taps and channels from upstream's ``bts.py``
(``feat_out_channels``), parameter counts from the architectures (torchvision's, summed by hand in
the comments), the frozen set from upstream's substring rule (``bts_main.py`` ``set_misc``)
applied to the PyTorch parameter names. PyTorch parity: tests/test_convert_official_encoders.py.
"""
import keras
import numpy as np
import pytest

import bts_model
import bts_trainer as trainer_lib
from tools.convert_pytorch_checkpoint import pytorch_key_for
from utils.configs import BtsConfig
from utils.encoders import OFFICIAL_ENCODERS, encoder_facts

RESNET_TAPS = (64, 256, 512, 1024, 2048)
# upstream bts.py: encoder → feat_out_channels.
CHANNELS = {"resnet50_bts": RESNET_TAPS, "resnet101_bts": RESNET_TAPS, "resnext50_bts": RESNET_TAPS,
            "resnext101_bts": RESNET_TAPS, "mobilenetv2_bts": (16, 24, 32, 64, 1280),
            "densenet121_bts": (64, 64, 128, 256, 1024), "densenet161_bts": (96, 96, 192, 384, 2208)}
# Learnable parameters of the whole BTS model with bts_size 512. torchvision's encoders without
# the ResNets' unused classifier fc (2048·1000 + 1000 = 2,049,000), which upstream's #Params
# (49.53 / 68.52 / 49.00 / 112.77 M) includes: 25,557,032 / 44,549,160 / 25,028,904 /
# 88,791,336 torchvision totals − 2,049,000, MobileNetV2 features 2,223,872 (no classifier); the
# PT V2 decoder for the ResNet taps 23,973,936, for MobileNetV2's 14,115,120.
LEARNABLE = {"resnet50_bts": 47_481_968, "resnet101_bts": 66_474_096,
             "resnext50_bts": 46_953_840, "resnext101_bts": 110_716_272,
             "mobilenetv2_bts": 16_338_992}
NEW = tuple(LEARNABLE)
LARGE = ("resnet101_bts", "resnext101_bts")
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in NEW]

_MODELS = {}


def full_model(name):
    """The BTS model of ``name`` with nf 512 and free H, W (built once per test process)."""
    if name not in _MODELS:
        _MODELS[name] = bts_model.build_bts_model(BtsConfig(encoder=name))
    return _MODELS[name]


def test_official_encoders_are_the_zoo_and_mobilenetv2_with_imagenet_input_and_nf_512():
    assert OFFICIAL_ENCODERS == ("densenet161_bts", "densenet121_bts", "resnet50_bts", "resnet101_bts",
                                 "resnext50_bts", "resnext101_bts", "mobilenetv2_bts")
    for name in OFFICIAL_ENCODERS:
        facts = encoder_facts(name)
        assert (facts.normalization, facts.default_bts_size, facts.imagenet) == ("torch", 512, False)
        assert bts_model.encoder_spec(name).preprocessing == "torch"


@pytest.mark.parametrize("name", NEW)
def test_taps_have_the_official_strides_and_channels(name):
    image = keras.Input((None, None, 3))
    features = keras.Model(image, bts_model.encoder_spec(name).build(image))
    for height, width in ((64, 96), (96, 64)):
        spec = features.compute_output_spec(keras.KerasTensor((2, height, width, 3)))
        for key, stride, channels in zip(bts_model.FEATURE_NAMES, (2, 4, 8, 16, 32), CHANNELS[name]):
            assert tuple(spec[key].shape) == (2, height // stride, width // stride, channels), key


@pytest.mark.parametrize("name", PARAMS)
def test_learnable_parameter_count_is_pinned(name):
    model = full_model(name)
    assert bts_model.count_params(model.trainable_weights) == LEARNABLE[name]
    # no conv has a bias (torchvision's ResNets and MobileNetV2 have none): kernels, BN only
    leaves = {v.path.rsplit("/", 1)[1] for v in bts_model.encoder_weights(model)}
    assert leaves <= {"kernel", "depthwise_kernel", "gamma", "beta", "moving_mean", "moving_variance"}


@pytest.mark.parametrize("name", ["resnet50_bts", "resnext50_bts", "mobilenetv2_bts"])
def test_layout_follows_torchvision_padding_grouping_and_bn_epsilon(name):
    model = full_model(name)
    layers = {layer.name: layer for layer in model.layers}
    for layer in layers.values():
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.startswith("encoder."):
            assert layer.epsilon == pytest.approx(1e-5) and layer.momentum == pytest.approx(0.9)
        if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2) and layer.kernel_size[0] > 1:
            # PyTorch pads symmetrically: an explicit pad of k // 2 before a 'valid' strided conv
            pad = layers[layer.name + "_pad"]
            assert layer.padding == "valid" and pad.padding == ((layer.kernel_size[0] // 2,) * 2,) * 2
    if name == "resnext50_bts":  # 32×4d: stage widths 128, 256, 512, 1024 in 32 groups
        for stage, width in zip((1, 2, 3, 4), (128, 256, 512, 1024)):
            conv = layers[f"encoder.layer{stage}.0.conv2"]
            assert (conv.groups, conv.filters, tuple(conv.kernel.shape)) == (32, width, (3, 3, width // 32, width))
    if name == "resnet50_bts":  # V1.5: the stride sits in the 3×3 conv, not the first 1×1
        assert layers["encoder.layer2.0.conv1"].strides == (1, 1)
        assert layers["encoder.layer2.0.conv2"].strides == (2, 2)
        assert layers["encoder.layer2.0.downsample.0"].strides == (2, 2)
    if name == "mobilenetv2_bts":
        assert isinstance(layers["encoder.2.conv.1.0"], keras.layers.DepthwiseConv2D)
        assert layers["encoder.18.2"].max_value == 6.0


# --------------------------------------------------------------------------------------------
# Freezing: upstream's rule on PyTorch names, compared with what training freezes
# --------------------------------------------------------------------------------------------
def upstream_fixing_layers(encoder, first_blocks):
    """upstream bts_main.py set_misc: the substrings whose parameters get requires_grad False."""
    if "resne" in encoder:
        return ["base_model.conv1", ".bn"] + ["base_model.layer1.0", "base_model.layer1.1"][:first_blocks]
    return ["conv0", "norm"] + ["denseblock1.denselayer1", "denseblock1.denselayer2"][:first_blocks]


@pytest.mark.parametrize("name", ["resnet50_bts", "resnext50_bts", "mobilenetv2_bts", "densenet121_bts"])
@pytest.mark.parametrize("first_blocks", [0, 1, 2])
def test_frozen_set_is_what_upstreams_substring_rule_matches(name, first_blocks):
    model = full_model(name)
    _unfreeze(model)  # the model is shared between cases
    fixing = upstream_fixing_layers(name, first_blocks)
    expected = set()
    for variable in model.trainable_weights:
        key = pytorch_key_for(variable.path)
        if key.startswith("encoder.") and any(s in key[len("encoder."):] for s in fixing):
            expected.add(variable.path)
    frozen = set(trainer_lib.apply_freezing(model, name, first_blocks=first_blocks))
    assert frozen == expected
    trainable = {v.path for v in model.trainable_weights}
    assert not frozen & trainable
    if name == "mobilenetv2_bts":
        assert frozen == set()  # upstream's names never occur in torchvision's MobileNetV2
    elif name.startswith("res"):
        assert "encoder.conv1/kernel" in frozen and "encoder.layer2.0.bn2/gamma" in frozen
        assert "encoder.layer1.0.downsample.1/gamma" in frozen if first_blocks else \
            "encoder.layer1.0.downsample.1/gamma" in trainable  # shortcut BNs have no '.bn'
        assert ("encoder.layer1.1.conv2/kernel" in frozen) == (first_blocks == 2)
    # frozen BNs keep batch statistics in training (PT train mode): the layer stays trainable
    bn = model.get_layer("encoder.bn1" if name.startswith("res") else
                         "encoder.0.1" if name.startswith("mobile") else "encoder.norm0")
    assert bn.trainable
    _unfreeze(model)


def _unfreeze(model):
    for layer in model.layers:
        layer.trainable = True
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.trainable = layer.beta.trainable = True


# --------------------------------------------------------------------------------------------
# GroupedConv2D: Keras's grouped conv, computed per group
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid")])
def test_grouped_conv_equals_a_per_group_numpy_convolution(strides, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 10, 8)).astype(np.float32)
    layer = bts_model.GroupedConv2D(6, 3, strides=strides, padding=padding, groups=2, use_bias=False)
    y = np.asarray(layer(x))
    kernel = np.asarray(layer.kernel)  # (3, 3, 4, 6): group g maps inputs 4g..4g+3 to outputs 3g..3g+2
    assert kernel.shape == (3, 3, 4, 6)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))) if padding == "same" else x
    out_h = (padded.shape[1] - 3) // strides + 1
    out_w = (padded.shape[2] - 3) // strides + 1
    want = np.zeros((2, out_h, out_w, 6))
    for g in range(2):
        for i in range(out_h):
            for j in range(out_w):
                patch = padded[:, i * strides:i * strides + 3, j * strides:j * strides + 3, 4 * g:4 * g + 4]
                want[:, i, j, 3 * g:3 * g + 3] = np.einsum("bhwc,hwco->bo", patch, kernel[..., 3 * g:3 * g + 3])
    np.testing.assert_allclose(y, want, atol=1e-5)


def test_grouped_conv_gradients_and_keras_file_round_trip(tmp_path):
    import tensorflow as tf

    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, bts_model.GroupedConv2D(8, 3, padding="same", groups=4, use_bias=False)(inputs))
    x = tf.constant(np.random.default_rng(1).standard_normal((1, 6, 7, 8)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x) ** 2)
    grad_x, grad_k = tape.gradient(loss, [x, model.trainable_weights[0]])
    # numeric check of one kernel entry: d loss / d k = finite difference
    kernel = model.trainable_weights[0]
    base = kernel.numpy()
    eps = 1e-2
    bumped = base.copy()
    bumped[1, 2, 1, 5] += eps
    kernel.assign(bumped)
    plus = float(tf.reduce_sum(model(x) ** 2))
    bumped[1, 2, 1, 5] -= 2 * eps
    kernel.assign(bumped)
    minus = float(tf.reduce_sum(model(x) ** 2))
    kernel.assign(base)
    assert float(grad_k[1, 2, 1, 5]) == pytest.approx((plus - minus) / (2 * eps), rel=1e-3, abs=1e-3)
    assert grad_x.shape == x.shape
    path = str(tmp_path / "grouped.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again.layers[-1], bts_model.GroupedConv2D) and again.layers[-1].groups == 4
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(model(x)))

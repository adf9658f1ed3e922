# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""keras.applications encoders: taps, channels, parameter counts, preprocessing, freezing, training.

Expected values here are independent of ``bts_model``'s tables: channels and strides from the
architectures, parameter counts of the plain ``keras.applications`` models
(``include_top=False``), preprocessing from ``keras.applications.<family>.preprocess_input``.
Backbones are built with ``weights=None`` (never downloaded); the largest ones only in slow runs.
"""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import bts_dataloader
import bts_losses
import bts_model
from utils.arguments import frozen_first_blocks, model_config, train_config
from utils.configs import ConfigError
from bts_main import parse_train_args
import bts_trainer as trainer_lib

# name → (keras.applications module, skip2..dense32 channels, encoder parameters).
# ConvNeXt-T: 27,820,128 for the keras model + 1,984 for the learned H/2 branch (3·3·3·64 + 4·64).
EXPECTED = {
    "densenet121": ("densenet", (64, 64, 128, 256, 1024), 7_037_504),
    "densenet169": ("densenet", (64, 64, 128, 256, 1664), 12_642_880),
    "densenet201": ("densenet", (64, 64, 128, 256, 1920), 18_321_984),
    "resnet50": ("resnet", (64, 256, 512, 1024, 2048), 23_587_712),
    "resnet101": ("resnet", (64, 256, 512, 1024, 2048), 42_658_176),
    "mobilenetv2": ("mobilenet_v2", (16, 24, 32, 96, 1280), 2_257_984),
    "efficientnetv2b0": ("efficientnet_v2", (16, 32, 48, 112, 1280), 5_919_312),
    "efficientnetv2b1": ("efficientnet_v2", (16, 32, 48, 112, 1280), 6_931_124),
    "efficientnetv2b2": ("efficientnet_v2", (16, 32, 56, 120, 1408), 8_769_374),
    "efficientnetv2b3": ("efficientnet_v2", (16, 40, 56, 136, 1536), 12_930_622),
    "efficientnetv2s": ("efficientnet_v2", (24, 48, 64, 160, 1280), 20_331_360),
    "convnext_tiny": ("convnext", (64, 96, 192, 384, 768), 27_820_128 + 1_984),
}
FAST = ("densenet121", "resnet50", "mobilenetv2", "efficientnetv2b0", "convnext_tiny")
TRAINED = ("resnet50", "mobilenetv2", "efficientnetv2b0", "convnext_tiny")
PARAMS = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in EXPECTED]

# name → (layers frozen under --fix_first_conv_blocks, layers left trainable, BN with frozen γ/β,
#         BN with trainable γ/β). Stem + the first two units of the first stage (design §4.3).
_B1 = ("stem_conv", "block1a_project_conv", "block1b_project_conv")
FREEZING = {
    "densenet": (("conv1_conv", "conv2_block1_1_conv", "conv2_block2_2_conv"),
                 ("conv2_block3_1_conv", "conv3_block1_1_conv"), ("conv1_bn", "conv4_block1_1_bn"), ()),
    "resnet": (("conv1_conv", "conv2_block1_0_conv", "conv2_block1_1_conv", "conv2_block2_3_conv"),
               ("conv2_block3_1_conv", "conv3_block1_0_conv"),
               ("conv1_bn", "conv2_block1_0_bn", "conv3_block1_1_bn"), ("conv3_block1_0_bn",)),
    "mobilenetv2": (("Conv1", "expanded_conv_depthwise", "block_1_expand"), ("block_2_expand",),
                    ("bn_Conv1", "block_5_expand_BN"), ()),
    "efficientnetv2b0": (("stem_conv", "block1a_project_conv", "block2a_expand_conv"),
                         ("block2b_expand_conv",), ("stem_bn", "block3a_expand_bn"), ()),
    "efficientnetv2": (_B1, ("block2a_expand_conv",), ("stem_bn", "block3a_expand_bn"), ()),
    "convnext_tiny": (("convnext_tiny_stem", "convnext_tiny_stage_0_block_0_depthwise_conv",
                       "convnext_tiny_stage_0_block_1_pointwise_conv_1",
                       "convnext_tiny_stage_0_block_1_layer_scale"),
                      ("convnext_tiny_stage_0_block_2_depthwise_conv", "skip2_conv",
                       "convnext_tiny_stage_1_block_0_layernorm"), (), ("skip2_bn",)),
}


def _freezing_case(name):
    if name.startswith("densenet"):
        return FREEZING["densenet"]
    if name.startswith("resnet"):
        return FREEZING["resnet"]
    if name.startswith("efficientnetv2") and name != "efficientnetv2b0":
        return FREEZING["efficientnetv2"]
    return FREEZING[name]


_BUILT = {}


def _build(name):
    """(features model, BTS model) on one graph with free H, W; built once per test process."""
    if name not in _BUILT:
        image = keras.Input((None, None, 3), name="image")
        focal = keras.Input((), name="focal")
        features = bts_model.encoder_spec(name).build(image)
        depth = bts_model.bts_decoder(features, focal, 128, 10.0, False)
        _BUILT[name] = (keras.Model(image, features),
                        keras.Model({"image": image, "focal": focal}, depth))
    return _BUILT[name]


def _train_args(name, *flags):
    return parse_train_args(["--filenames_file", "x", "--encoder", name, "--bts_size", "128", *flags])


def _check_taps(features_model, channels):
    for height, width in ((64, 96), (96, 64)):
        spec = features_model.compute_output_spec(keras.KerasTensor((2, height, width, 3)))
        for key, stride, depth in zip(bts_model.FEATURE_NAMES, (2, 4, 8, 16, 32), channels):
            assert tuple(spec[key].shape) == (2, height // stride, width // stride, depth), key


def _check_freezing(model, name):
    frozen_layers, trainable_layers, frozen_bn, trainable_bn = _freezing_case(name)
    frozen = set(trainer_lib.apply_freezing(model, name, first_blocks=2))
    trainable = {v.path for v in model.trainable_variables}
    assert frozen and not frozen & trainable
    layer = lambda n: model.get_layer(bts_model.ENCODER_PREFIX + n)  # noqa: E731
    for n in frozen_layers:
        assert layer(n).weights and all(w.path in frozen for w in layer(n).weights), n
    for n in trainable_layers:
        assert layer(n).trainable_weights and all(w.path in trainable for w in layer(n).trainable_weights), n
    for n in frozen_bn:
        assert {layer(n).gamma.path, layer(n).beta.path} <= frozen and layer(n).trainable, n
    for n in trainable_bn:
        assert {layer(n).gamma.path, layer(n).beta.path} <= trainable, n
    default = bts_model.encoder_spec(name)
    assert not default.frozen_layer(frozen_layers[-1])  # block 1/2 need the flag
    assert default.frozen_layer(frozen_layers[0])  # the stem never does


@pytest.mark.parametrize("name", PARAMS)
def test_taps_channels_parameter_count_weight_names_and_freezing(name):
    features_model, model = _build(name)
    _, channels, params = EXPECTED[name]
    _check_taps(features_model, channels)
    assert features_model.count_params() == params
    encoder_paths = {v.path for v in features_model.weights}
    assert all(bts_model.is_encoder_variable(v) for v in features_model.weights)
    assert not any(bts_model.is_encoder_variable(v) for v in model.weights if v.path not in encoder_paths)
    assert all(layer.name.startswith(bts_model.ENCODER_PREFIX)
               for layer in features_model.layers if not isinstance(layer, keras.layers.InputLayer))
    _check_freezing(model, name)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_preprocessing_matches_keras_preprocess_input(name):
    spec = bts_model.encoder_spec(name)
    family = getattr(keras.applications, EXPECTED[name][0])
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    ours = bts_dataloader.normalize_image(pixels / 255.0, spec.preprocessing).numpy()
    backbone = bts_model.KERAS_ENCODERS[name][0]
    if backbone.pixel_input:  # normalisation happens inside the model on 0..255 pixels
        ours = ours * bts_model.PIXEL_SCALE
    reference = np.asarray(family.preprocess_input(pixels.copy()))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", TRAINED)
def test_training_step_is_finite_and_leaves_frozen_weights_untouched(name):
    _, model = _build(name)
    args = _train_args(name, "--fix_first_conv_blocks", "--learning_rate", "1e-3")
    frozen = set(trainer_lib.apply_freezing(model, name, frozen_first_blocks(args)))
    optimizer = trainer_lib.make_optimizer(train_config(args), model, total_steps=10)
    before = {v.path: v.numpy().copy() for v in model.weights}
    rng = np.random.default_rng(1)
    image01 = rng.uniform(0, 1, (2, 64, 96, 3)).astype(np.float32)
    image = bts_dataloader.normalize_image(image01, bts_model.encoder_spec(name).preprocessing)
    depth_gt = rng.uniform(0.5, 9.0, (2, 64, 96, 1)).astype(np.float32)
    with tf.GradientTape() as tape:
        depth = model({"image": image, "focal": tf.fill([2], 518.8579)}, training=True)
        loss = bts_losses.silog_loss(depth, depth_gt, 0.1)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert depth.shape == (2, 64, 96, 1) and np.isfinite(float(loss))
    changed = {v.path for v in model.weights if not np.array_equal(v.numpy(), before[v.path])}
    assert frozen and not frozen & changed
    trainable_encoder = {v.path for v in model.trainable_variables if bts_model.is_encoder_variable(v)}
    assert len(changed & trainable_encoder) > 0.9 * len(trainable_encoder)
    moving = [v.path for v in model.weights if v.path.endswith("moving_mean")
              and bts_model.is_encoder_variable(v)]
    assert set(moving) <= changed  # BN with frozen γ/β still trains on batch statistics (PT)


def test_default_decoder_width_follows_the_encoder():
    widths = {n: bts_model.BtsConfig(encoder=n).bts_size for n in
              ("densenet161_bts", "densenet121", "densenet201", "resnet50", "resnet101", "mobilenetv2",
               "efficientnetv2s", "convnext_tiny")}
    assert widths == {"densenet161_bts": 512, "densenet121": 256, "densenet201": 512, "resnet50": 256,
                      "resnet101": 512, "mobilenetv2": 256, "efficientnetv2s": 256, "convnext_tiny": 256}
    assert bts_model.BtsConfig(encoder="resnet50", bts_size=128).bts_size == 128
    assert model_config(_train_args("resnet50")).bts_size == 128


def test_unknown_encoder_error_lists_the_keras_encoders():
    with pytest.raises(ConfigError) as err:
        bts_model.encoder_spec("resnet18")
    assert re.fullmatch(r"--encoder 'resnet18' is unknown; valid encoders: .*resnet50.*efficientnetv2s, "
                        r"convnext_tiny", err.value.as_flag_error())


def test_imagenet_weights_reach_keras_only_when_asked(monkeypatch):
    calls = []
    original = keras.applications.MobileNetV2

    def recording(**kwargs):
        calls.append(kwargs["weights"])
        return original(**{**kwargs, "weights": None})  # never download in tests

    monkeypatch.setattr(keras.applications, "MobileNetV2", recording)
    config = model_config(_train_args("mobilenetv2", "--pretrained_model", "imagenet"))
    assert config.imagenet_weights
    bts_model.build_bts_model(config)
    assert not model_config(_train_args("mobilenetv2")).imagenet_weights
    assert calls == ["imagenet"]
    with pytest.raises(ValueError, match="densenet_tiny has no keras.applications ImageNet weights"):
        bts_model.build_bts_model(bts_model.BtsConfig(encoder="densenet_tiny", imagenet_weights=True))


def test_saved_weights_reload_into_a_fresh_model_and_keep_the_encoder_prefix(tmp_path):
    config = bts_model.BtsConfig(encoder="mobilenetv2", bts_size=128)
    model = bts_model.build_bts_model(config)
    inputs = {"image": tf.random.uniform((1, 64, 64, 3), seed=2), "focal": tf.constant([500.0])}
    expected = model(inputs).numpy()
    model.save(tmp_path / "bts.keras")
    fresh = bts_model.build_bts_model(config)
    fresh.load_weights(tmp_path / "bts.keras")
    np.testing.assert_array_equal(fresh(inputs).numpy(), expected)
    reloaded = keras.models.load_model(tmp_path / "bts.keras")
    np.testing.assert_array_equal(reloaded(inputs).numpy(), expected)
    encoder = [v.path for v in reloaded.weights if bts_model.is_encoder_variable(v)]
    assert len(encoder) == len([v for v in model.weights if bts_model.is_encoder_variable(v)])

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts_model.ModelOps (issue #18): 1×1 convs as MatMul and fused padding change how the model
computes, never what: same weights, names, files and outputs (float32 rounding aside).

Each lever is checked against the default graph with shared weights, in inference and training
mode (batch-statistics BN) and for the silog gradients, for every encoder family the changed
layers occur in (DenseNet, ResNet/ResNeXt, MobileNetV2) and the BTS decoder; then the official
PyTorch conversion into a levers-on model, the saved-file formats and the benchmark flags.
"""
import json
import logging
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import bts_model
import bts_trainer
from bts_losses import silog_loss
from conftest import TINY_BTS_SIZE, TINY_DENSENET, tiny_model_config
from utils.configs import ConfigError
from utils.encoders import ResNetConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH, MAX_DEPTH = 64, 96, 10.0
DEFAULT = bts_model.ModelOps()
LEVERS = {"matmul": bts_model.ModelOps(conv1x1="matmul"),
          "fused": bts_model.ModelOps(padding="fused"),
          "both": bts_model.ModelOps(conv1x1="matmul", padding="fused"),
          "subpixel": bts_model.ModelOps(upconv="subpixel"),
          "all": bts_model.ModelOps(conv1x1="matmul", padding="fused", upconv="subpixel",
                                    recompute="bn_relu"),
          "recompute": bts_model.ModelOps(recompute="bn_relu"),
          "recompute_matmul": bts_model.ModelOps(conv1x1="matmul", recompute="bn_relu")}
# A ResNeXt-shaped encoder small enough for a unit test: one block per stage, 2 groups of 4.
SMALL_RESNEXT = ResNetConfig((1, 1, 1, 1), groups=2, width_per_group=4)


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((batch, HEIGHT, WIDTH, 3)).astype(np.float32),
            "focal": np.full((batch,), 518.8579, np.float32)}


def _depth_target(seed=1):
    return np.random.default_rng(seed).uniform(0.5, MAX_DEPTH, (2, HEIGHT, WIDTH, 1)).astype(np.float32)


def _perturb_bn_statistics(model, seed=2):
    """Non-trivial moving statistics (nested BNs too), so inference-mode BN really normalises."""
    rng = np.random.default_rng(seed)
    for variable in model.non_trainable_variables:
        if variable.path.endswith("/moving_mean"):
            variable.assign(rng.normal(0, 0.1, variable.shape))
        elif variable.path.endswith("/moving_variance"):
            variable.assign(rng.uniform(0.5, 2.0, variable.shape))


def _bts(encoder, model_ops):
    return bts_model.build_bts_model(tiny_model_config("nyu", encoder=encoder), model_ops)


def _resnext_features(model_ops):
    image = keras.Input((HEIGHT, WIDTH, 3), name="image")
    features = bts_model.resnet_encoder(image, SMALL_RESNEXT, model_ops)
    return keras.Model(image, [features[name] for name in bts_model.FEATURE_NAMES])


def _bts_loss(model, batch, training):
    depth = model(batch, training=training)
    return silog_loss(depth, tf.constant(_depth_target()), 0.1), [depth]


def _features_loss(model, batch, training):
    outputs = model(batch["image"], training=training)
    return tf.add_n([tf.reduce_mean(tf.square(f)) for f in outputs]), outputs


def _assert_same_computation(build, model_ops, loss_of, scale):
    """Default and ``model_ops`` builds with the same weights: outputs (inference, training)
    within ``1e-5·max(scale, largest output)``, training losses and gradients within float32 round-off."""
    reference, lever = build(DEFAULT), build(model_ops)
    assert [v.path for v in lever.weights] == [v.path for v in reference.weights]
    _perturb_bn_statistics(reference)
    lever.set_weights(reference.get_weights())
    batch = _inputs()
    for training in (False, True):
        with tf.GradientTape(persistent=True) as tape:
            want_loss, want = loss_of(reference, batch, training)
            got_loss, got = loss_of(lever, batch, training)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            # float32 round-off grows with the values' size (oneDNN's kernels round otherwise)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                       atol=1e-5 * max(scale, float(np.abs(np.asarray(b)).max())))
        assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-5, abs=1e-6)
        if not training:
            continue
        want_grads = [np.asarray(g) for g in tape.gradient(want_loss, reference.trainable_variables)]
        got_grads = [np.asarray(g) for g in tape.gradient(got_loss, lever.trainable_variables)]
        # Per variable, in norm: 1e-2 relative (a wrong tap or offset is O(1); float32 round-off
        # amplified back through batch-statistics BN reaches ~4e-3 in the first layers under
        # oneDNN), plus a floor of 1e-4 of the largest gradient for gradients that are tiny or
        # zero in exact arithmetic, where the round-off of the large ones dominates (a BN β
        # whose output reaches a batch-statistics BN through linear layers only: the mean
        # cancels it; a DASPP BN γ with a gradient 1e-3 of the largest: 1.7e-5 seen).
        floor = 1e-4 * max(np.abs(w).max() for w in want_grads)
        for variable, g, w in zip(reference.trainable_variables, got_grads, want_grads):
            assert g.shape == w.shape
            error, size = np.linalg.norm(g - w), np.linalg.norm(w)
            assert error <= 1e-2 * size + floor, (variable.path, error, size, floor)
    # The batch-statistics pass moved both models' moving statistics alike.
    for a, b in zip(lever.non_trainable_weights, reference.non_trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6, err_msg=a.path)


# --------------------------------------------------------------------------------------------
# The default is the graph as before; the levers change ops, not layers
# --------------------------------------------------------------------------------------------
def test_model_ops_rejects_unknown_choices_in_one_line():
    with pytest.raises(ConfigError) as info:
        bts_model.ModelOps(conv1x1="gemm")
    assert info.value.field == "model_ops" and "\n" not in str(info.value)
    assert "conv1x1='gemm'" in str(info.value) and "conv1x1=matmul" in str(info.value)
    with pytest.raises(ConfigError, match="padding='same' is unknown"):
        bts_model.ModelOps(padding="same")


def test_default_model_ops_build_the_standard_layers_and_configs():
    model = _bts("densenet_tiny", DEFAULT)
    kinds = {type(layer) for layer in model.layers}
    assert keras.layers.ZeroPadding2D in kinds and keras.layers.Conv2D in kinds
    assert not kinds & {bts_model.Conv2D, bts_model.DepthwiseConv2D, bts_model.FusedPadding}
    assert "matmul_1x1" not in model.get_layer("daspp_3").get_config()
    assert "matmul_1x1" not in model.get_layer("reduc8x8").get_config()


def test_levers_keep_layer_names_and_swap_only_the_ops():
    default, both = _bts("mobilenetv2_bts", DEFAULT), _bts("mobilenetv2_bts", LEVERS["both"])
    assert [layer.name for layer in both.layers] == [layer.name for layer in default.layers]
    stem_pad, stem = both.get_layer("encoder.0.0_pad"), both.get_layer("encoder.0.0")
    assert isinstance(stem_pad, bts_model.FusedPadding) and stem.explicit_padding == 1
    assert isinstance(both.get_layer("encoder.2.conv.1.0"), bts_model.DepthwiseConv2D)
    assert both.get_layer("encoder.2.conv.1.0").explicit_padding == 1  # stride-2 depthwise
    expand = both.get_layer("encoder.2.conv.0.0")
    assert expand.matmul_1x1 and expand._is_matmul() and tuple(expand.kernel.shape)[:2] == (1, 1)
    assert both.get_layer("reduc8x8").head.matmul_1x1
    assert not hasattr(both.get_layer("conv3"), "matmul_1x1")  # 3×3 decoder convs: Keras's own

    def op_types(model):
        forward = tf.function(lambda image, focal: model({"image": image, "focal": focal}))
        graph = forward.get_concrete_function(tf.TensorSpec((1, HEIGHT, WIDTH, 3)),
                                              tf.TensorSpec((1,))).graph
        return [op for op in graph.get_operations()]

    default_ops, both_ops = op_types(default), op_types(both)
    count = lambda ops, kind: sum(op.type == kind for op in ops)  # noqa: E731
    assert count(default_ops, "Pad") == 5 and count(both_ops, "Pad") == 0  # stem + 4 depthwise/2
    assert count(default_ops, "MatMul") == 0 and count(both_ops, "MatMul") > 0
    explicit = [op for op in both_ops if op.type in ("Conv2D", "DepthwiseConv2dNative")
                and op.get_attr("padding") == b"EXPLICIT"]
    assert len(explicit) == 5


# --------------------------------------------------------------------------------------------
# Layer level: the variants against the layers they replace
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strides, kernel, groups", [(2, 7, 1), (2, 3, 1), (2, 3, 2), (1, 3, 1)])
def test_fused_padding_equals_zero_padding_then_valid_conv(strides, kernel, groups):
    x = np.random.default_rng(0).standard_normal((2, 13, 11, 4)).astype(np.float32)
    pad = kernel // 2
    separate = bts_model.GroupedConv2D(6, kernel, strides=strides, padding="valid", groups=groups,
                                       use_bias=False)
    fused = bts_model.GroupedConv2D(6, kernel, strides=strides, padding="valid", groups=groups,
                                    use_bias=False, explicit_padding=pad)
    want = separate(keras.layers.ZeroPadding2D(pad)(x))
    fused.build(x.shape)
    fused.set_weights(separate.get_weights())
    got = fused(x)
    assert got.shape == want.shape == fused.compute_output_shape(x.shape)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)


def test_fused_depthwise_padding_equals_zero_padding_then_valid_depthwise():
    x = np.random.default_rng(1).standard_normal((1, 9, 12, 5)).astype(np.float32)
    separate = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=True,
                                            bias_initializer="ones")
    want = separate(keras.layers.ZeroPadding2D(1)(x))
    fused = bts_model.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=True, explicit_padding=1)
    fused.build(x.shape)
    fused.set_weights(separate.get_weights())
    got = fused(x)
    assert got.shape == want.shape == (1, 5, 6, 5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)


def test_matmul_1x1_equals_the_conv_with_bias_and_activation():
    x = np.random.default_rng(2).standard_normal((2, 5, 7, 12)).astype(np.float32)
    conv = keras.layers.Conv2D(8, 1, use_bias=True, activation="elu", bias_initializer="ones")
    matmul = bts_model.Conv2D(8, 1, use_bias=True, activation="elu", matmul_1x1=True)
    want = conv(x)
    matmul.build(x.shape)
    matmul.set_weights(conv.get_weights())
    assert tuple(matmul.kernel.shape) == (1, 1, 12, 8)
    np.testing.assert_allclose(np.asarray(matmul(x)), np.asarray(want), rtol=0, atol=1e-5)
    strided = bts_model.Conv2D(8, 1, strides=2, matmul_1x1=True)  # not 1×1/1: stays a conv
    assert not strided._is_matmul()
    with pytest.raises(ValueError, match="explicit_padding needs padding='valid'"):
        bts_model.Conv2D(8, 3, padding="same", explicit_padding=1)


# --------------------------------------------------------------------------------------------
# Whole models: same outputs, training outputs and gradients with shared weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("height, width", [(4, 6), (5, 3)])
def test_subpixel_upconv_equals_nearest_upsampling_then_the_3x3_conv(height, width):
    """Known answer: UpConv, plain and subpixel, against pixel repetition, a zero-padded 3×3
    conv and ELU in numpy, on even and odd sizes (the border phases read the zero padding)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, height, width, 5)).astype("float32")
    plain, subpixel = bts_model.UpConv(7, name="a"), bts_model.UpConv(7, subpixel=True, name="b")
    plain.build(x.shape)
    subpixel.build(x.shape)
    kernel = rng.standard_normal((3, 3, 5, 7)).astype("float32")
    plain.conv.kernel.assign(kernel)
    subpixel.conv.kernel.assign(kernel)
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    padded = np.pad(up, [(0, 0), (1, 1), (1, 1), (0, 0)])
    conv = sum(np.einsum("bhwc,cd->bhwd", padded[:, i:i + 2 * height, j:j + 2 * width], kernel[i, j])
               for i in range(3) for j in range(3))
    want = np.where(conv > 0, conv, np.expm1(conv))  # ELU
    got = np.asarray(subpixel(x))
    assert got.shape == (2, 2 * height, 2 * width, 7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(plain(x)), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_densenet_bts_levers_compute_the_default_numbers(lever):
    _assert_same_computation(lambda ops: _bts("densenet_tiny", ops), LEVERS[lever], _bts_loss,
                             MAX_DEPTH)


def test_mobilenetv2_bts_levers_compute_the_default_numbers():
    _assert_same_computation(lambda ops: _bts("mobilenetv2_bts", ops), LEVERS["both"], _bts_loss,
                             MAX_DEPTH)


@pytest.mark.parametrize("lever", ["matmul", "fused"])
def test_resnext_encoder_levers_compute_the_default_features(lever):
    # Features are O(1) after the last ReLU; the grouped strided 3×3 convs get the fused padding.
    _assert_same_computation(_resnext_features, LEVERS[lever], _features_loss, 1.0)


@pytest.mark.parametrize("training_mode", ["batch_statistics", "official_freezing", "moving_statistics"])
def test_recompute_is_exact_where_the_ops_are_the_same(training_mode):
    """recompute=bn_relu runs the very ops autodiff runs (recomputed BN→ReLU, the conv's backward
    ops, ReLU's and BN's gradients), so with standard convs gradients are bit-identical: with
    batch statistics, with the recipe's freezing (encoder γ/β and the first dense layer frozen)
    and with --bn_no_track_stats (every BN on its moving statistics)."""
    reference, lever = _bts("densenet_tiny", DEFAULT), _bts("densenet_tiny", LEVERS["recompute"])
    _perturb_bn_statistics(reference)
    lever.set_weights(reference.get_weights())
    for model in (reference, lever):
        if training_mode != "batch_statistics":
            assert bts_trainer.apply_freezing(model, "densenet_tiny", first_blocks=1)
        if training_mode == "moving_statistics":
            assert bts_trainer.use_moving_statistics(model)
    assert len(lever.trainable_variables) == len(reference.trainable_variables)
    batch = _inputs()
    grads = []
    for model in (reference, lever):
        with tf.GradientTape() as tape:
            loss, _ = _bts_loss(model, batch, True)
        grads.append(tape.gradient(loss, model.trainable_variables))
    for variable, got, want in zip(lever.trainable_variables, grads[1], grads[0]):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=variable.path)
    for a, b in zip(lever.non_trainable_weights, reference.non_trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def _relu_consumers(model, relu_names):
    """{relu layer name: op types reading its forward output} in one traced training step."""
    @tf.function
    def step(image, focal):
        with tf.GradientTape() as tape:
            depth = model({"image": image, "focal": focal}, training=True)
            loss = tf.reduce_mean(depth)
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((2, HEIGHT, WIDTH, 3)),
                                       tf.TensorSpec((2,))).graph
    consumers = {}
    for op in graph.get_operations():
        # ops are named <model>/<layer>[_<n>]/<op>
        layer = next((name for name in relu_names
                      if re.search(rf"/{re.escape(name)}(_\d+)?/", f"/{op.name}")), None)
        if op.type == "Relu" and layer and not op.name.startswith("gradient_tape"):
            consumers[layer] = sorted(c.type for c in op.outputs[0].consumers())
    return consumers


@pytest.mark.parametrize("lever", ["recompute", "recompute_matmul"])
def test_recompute_keeps_no_dense_layer_relu_output_for_the_backward_pass(lever):
    reference, model = _bts("densenet_tiny", DEFAULT), _bts("densenet_tiny", LEVERS[lever])
    relus = [layer.name for layer in model.layers if layer.name.endswith((".relu1", ".relu2"))
             or (".transition" in layer.name and layer.name.endswith(".relu"))]
    assert relus and [layer.name for layer in model.layers] == [other.name for other in reference.layers]
    standard, recomputed = _relu_consumers(reference, relus), _relu_consumers(model, relus)
    assert set(standard) == set(recomputed) == set(relus)
    # standard: the ReLU's own gradient (and the conv's weight gradient) read the output
    assert all("ReluGrad" in types for types in standard.values())
    # recomputed: only the forward conv reads it; the backward pass recomputes its own
    forward = {"Conv2D", "MatMul", "Reshape", "IdentityN"}  # IdentityN: tf.custom_gradient's
    assert all(set(types) <= forward for types in recomputed.values()), recomputed


def test_recompute_model_files_are_the_default_models(tmp_path):
    batch = _inputs(batch=1)
    default, lever = _bts("densenet_tiny", DEFAULT), _bts("densenet_tiny", LEVERS["recompute"])
    _perturb_bn_statistics(default)
    want = np.asarray(default(batch, training=False))
    # ckpt-N: the same object graph (the attached BN is not tracked twice) both ways
    default_path = tf.train.Checkpoint(model=default).save(str(tmp_path / "default"))
    lever_path = tf.train.Checkpoint(model=lever).save(str(tmp_path / "lever"))
    assert tf.train.list_variables(lever_path) == tf.train.list_variables(default_path)
    tf.train.Checkpoint(model=lever).restore(default_path).assert_existing_objects_matched()
    np.testing.assert_array_equal(np.asarray(lever(batch, training=False)), want)
    # .weights.h5 both ways, and .keras keeps the choice (its convs, unattached, are plain convs)
    lever.save_weights(str(tmp_path / "lever.weights.h5"))
    fresh = _bts("densenet_tiny", DEFAULT)
    fresh.load_weights(str(tmp_path / "lever.weights.h5"))
    np.testing.assert_array_equal(np.asarray(fresh(batch, training=False)), want)
    lever.save(str(tmp_path / "lever.keras"))
    again = keras.saving.load_model(str(tmp_path / "lever.keras"))
    assert bts_model.model_ops_of(again) == LEVERS["recompute"]
    np.testing.assert_array_equal(np.asarray(again(batch, training=False)), want)
    with tf.GradientTape() as tape:
        loss, _ = _bts_loss(again, _inputs(), True)
    assert all(g is not None for g in tape.gradient(loss, again.trainable_variables))


# --------------------------------------------------------------------------------------------
# Official-checkpoint conversion and our own files
# --------------------------------------------------------------------------------------------
def test_pytorch_conversion_into_a_levers_model_is_exact():
    pt = pytest.importorskip("pt_reference")  # skips without PyTorch, as the converter tests
    from tools import convert_pytorch_checkpoint as cpc

    state = pt.random_state_dict(pt.official_shapes(TINY_DENSENET, TINY_BTS_SIZE), seed=0)
    default, both = _bts("densenet_tiny", DEFAULT), _bts("densenet_tiny", LEVERS["all"])
    for model in (default, both):
        assert cpc.assign_state_dict(model, cpc.extract_state_dict({"model": state})) == len(model.weights)
    for a, b in zip(both.weights, default.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    batch = _inputs()
    got = np.asarray(both(batch, training=False))
    np.testing.assert_allclose(got, np.asarray(default(batch, training=False)), rtol=0,
                               atol=1e-5 * MAX_DEPTH)
    sd = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    image = pt.torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2))).double()
    want = pt.reference_bts_forward(sd, image, pt.torch.from_numpy(batch["focal"]).double(),
                                    TINY_DENSENET, TINY_BTS_SIZE, MAX_DEPTH, kitti=False)
    np.testing.assert_allclose(got, want["depth"], atol=1e-4, rtol=0)  # PyTorch parity kept


def test_levers_model_round_trips_through_keras_and_reads_the_default_files(tmp_path):
    batch = _inputs(batch=1)
    default, both = _bts("mobilenetv2_bts", DEFAULT), _bts("mobilenetv2_bts", LEVERS["all"])
    _perturb_bn_statistics(default)
    want = np.asarray(default(batch, training=False))
    # .keras: the lever layers come back as themselves and give the same depth
    both.set_weights(default.get_weights())
    both.save(str(tmp_path / "both.keras"))
    again = keras.saving.load_model(str(tmp_path / "both.keras"))
    assert isinstance(again.get_layer("encoder.0.0_pad"), bts_model.FusedPadding)
    assert again.get_layer("encoder.2.conv.1.0").explicit_padding == 1
    assert again.get_layer("encoder.2.conv.0.0").matmul_1x1
    assert again.get_layer("daspp_3").conv1x1.matmul_1x1
    assert again.get_layer("upconv3").subpixel
    np.testing.assert_array_equal(np.asarray(again(batch, training=False)),
                                  np.asarray(both(batch, training=False)))
    # .weights.h5 and ckpt-N written by the default model load into a fresh levers model
    default.save_weights(str(tmp_path / "default.weights.h5"))
    from_h5 = _bts("mobilenetv2_bts", LEVERS["all"])
    from_h5.load_weights(str(tmp_path / "default.weights.h5"))
    path = tf.train.Checkpoint(model=default).save(str(tmp_path / "ckpt"))
    from_ckpt = _bts("mobilenetv2_bts", LEVERS["all"])
    tf.train.Checkpoint(model=from_ckpt).restore(path).assert_existing_objects_matched()
    for model in (from_h5, from_ckpt):
        np.testing.assert_allclose(np.asarray(model(batch, training=False)), want, rtol=0,
                                   atol=1e-5 * MAX_DEPTH)


# --------------------------------------------------------------------------------------------
# Benchmarks: --model_ops and the two levers
# --------------------------------------------------------------------------------------------
def test_bench_model_parses_model_ops_and_leaves_the_other_flags(monkeypatch):
    from benchmarks import bench_model

    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])

    ops, rest = bench_model.split_model_ops(["--quick", "--model_ops", "conv1x1=matmul",
                                             "padding=fused", "--repeats", "1"])
    assert ops == LEVERS["both"] and rest == ["--quick", "--repeats", "1"]
    assert bench_model.split_model_ops(["--model_ops=padding=fused"])[0] == LEVERS["fused"]
    # No flag: what the scripts build on this (CPU-only) machine; 'standard' for the baseline.
    assert bench_model.split_model_ops(["--quick"]) == (bts_model.CPU_MODEL_OPS, ["--quick"])
    assert bench_model.split_model_ops(["--model_ops", "standard", "--quick"]) == (DEFAULT, ["--quick"])
    for bad, message in ((["--model_ops", "conv1x1=gemm"], "conv1x1='gemm' is unknown"),
                         (["--model_ops", "pad=fused"], "expected KEY=VALUE"),
                         (["--model_ops", "--quick"], "needs KEY=VALUE words")):
        with pytest.raises(SystemExit) as info:
            bench_model.split_model_ops(bad)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_bench_model_records_the_model_ops_it_built_with(tmp_path):
    from benchmarks import bench_model

    output = tmp_path / "model.json"
    assert bench_model.main(["--quick", "--cases", "quick_forward_64x96_fp32", "--repeats", "1",
                             "--warmup", "1", "--bench_output", str(output),
                             "--model_ops", "conv1x1=matmul", "padding=fused"]) == 0
    payload = json.loads(output.read_text())
    expected = {"conv1x1": "matmul", "padding": "fused", "upconv": "upsample", "recompute": "none"}
    assert payload["model_ops"] == expected and payload["model"][0]["model_ops"] == expected


def test_model_ops_levers_run_against_a_same_precision_baseline():
    from benchmarks import bench_levers

    levers = {lever.name: lever for lever in bench_levers.LEVERS}
    for name, word in (("conv1x1_matmul", "conv1x1=matmul"), ("fused_padding", "padding=fused"),
                       ("subpixel_upconv", "upconv=subpixel")):
        lever = bench_levers.quick_variant(levers[name])
        command = bench_levers.child_command(lever, "out.json", warmup=1)
        assert command[command.index("--model_ops") + 1] == word and "--quick" in command
        assert set(lever.cases) == {"quick_forward_64x96_fp32", "quick_train_64x96_b2_fp32",
                                    "quick_forward_64x96_bf16"}
    baseline = bench_levers.baseline_with_cases_for([levers["baseline"], levers["fused_padding"]])
    assert baseline.cases == levers["baseline"].cases + ("forward_480x640_bf16",)
    assert bench_levers.baseline_with_cases_for([levers["bf16"]]).cases == levers["baseline"].cases
    record = lambda name, s: {"name": name, "median_s": s, "min_s": s, "max_s": s,  # noqa: E731
                              "first_call_s": s, "peak_rss_mib": 1.0, "load_avg_1min_before": 0.0}
    rows = bench_levers.compare({
        "baseline": [record("forward_480x640_fp32", 4.0), record("forward_480x640_bf16", 2.0)],
        "bf16": [record("forward_480x640_bf16", 3.0)],
        "fused_padding": [record("forward_480x640_bf16", 1.0)]})
    ratios = {(r["lever"], r["case"]): r["vs_baseline"] for r in rows}
    assert ratios[("bf16", "forward_480x640_bf16")] == 0.75  # the precision lever: vs fp32
    assert ratios[("fused_padding", "forward_480x640_bf16")] == 0.5  # an op lever: vs bf16
    assert ratios[("baseline", "forward_480x640_bf16")] == 1.0


# --------------------------------------------------------------------------------------------
# Other backends: the fallbacks (pad, then a valid conv; a MatMul) under JAX
# --------------------------------------------------------------------------------------------
JAX_CHILD = r"""
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
import bts_model
import bts_trainer
sys.path.insert(0, "tests")
from conftest import tiny_model_config
work = sys.argv[1]
data = np.load(os.path.join(work, "inputs.npz"))
for encoder in ("densenet_tiny", "mobilenetv2_bts"):
    model = bts_model.build_bts_model(tiny_model_config("nyu", encoder=encoder),
                                      bts_model.ModelOps(conv1x1="matmul", padding="fused"))
    model.load_weights(os.path.join(work, encoder + ".weights.h5"))
    depth = model({"image": data["image"], "focal": data["focal"]}, training=False)
    np.save(os.path.join(work, encoder + ".npy"), np.asarray(depth))
"""


@pytest.mark.slow
def test_levers_under_jax_give_the_tensorflow_default_depth(tmp_path):
    batch = _inputs()
    np.savez(tmp_path / "inputs.npz", **batch)
    want = {}
    for encoder in ("densenet_tiny", "mobilenetv2_bts"):
        model = _bts(encoder, DEFAULT)
        _perturb_bn_statistics(model)
        model.save_weights(str(tmp_path / f"{encoder}.weights.h5"))
        want[encoder] = np.asarray(model(batch, training=False))
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", JAX_CHILD, str(tmp_path)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for encoder, depth in want.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{encoder}.npy"), depth, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# --model_ops: the text form, auto's choice per machine, and the scripts that use it
# --------------------------------------------------------------------------------------------
def test_model_ops_text_round_trips_and_bad_text_is_one_line():
    assert str(DEFAULT) == "standard" and bts_model.ModelOps.parse("standard") == DEFAULT
    assert str(bts_model.CPU_MODEL_OPS) == "conv1x1=matmul,upconv=subpixel"
    assert str(bts_model.CPU_TRAINING_MODEL_OPS) == "conv1x1=matmul,upconv=subpixel,recompute=bn_relu"
    for ops in (*LEVERS.values(), bts_model.CPU_MODEL_OPS,
                bts_model.ModelOps("matmul", "fused", "subpixel")):
        assert bts_model.ModelOps.parse(str(ops)) == ops
    assert bts_model.ModelOps.parse("conv1x1=matmul upconv=subpixel") == bts_model.CPU_MODEL_OPS
    for bad, message in (("gemm", "'gemm': expected KEY=VALUE"), ("conv1x1=gemm", "is unknown"),
                         ("", "names no choice"), ("pad=fused", "with KEY one of conv1x1")):
        with pytest.raises(ConfigError) as info:
            bts_model.ModelOps.parse(bad)
        assert info.value.field == "model_ops" and message in str(info.value)
        assert "\n" not in str(info.value)


def test_auto_model_ops_are_the_cpu_levers_only_where_no_accelerator_computes(monkeypatch, caplog):
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    with caplog.at_level(logging.INFO, logger="bts.precision"):
        assert bts_trainer.resolve_model_ops("auto") == bts_model.CPU_MODEL_OPS
        # training: recompute from 2^18 pixels per batch (2x416x544 yes, ./demo.sh's 4x128x160 no)
        assert bts_trainer.resolve_model_ops("auto", training_pixels=2 * 416 * 544) == \
            bts_model.CPU_TRAINING_MODEL_OPS
        assert bts_trainer.resolve_model_ops("auto", training_pixels=4 * 128 * 160) == \
            bts_model.CPU_MODEL_OPS
        assert bts_trainer.resolve_model_ops("auto", tpu=True, training_pixels=1 << 20) == DEFAULT
        assert bts_trainer.resolve_model_ops("padding=fused") == LEVERS["fused"]  # explicit: silent
        assert bts_trainer.resolve_model_ops("standard") == DEFAULT
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [("NVIDIA A100", (8, 0))])
    with caplog.at_level(logging.INFO, logger="bts.precision"):
        assert bts_trainer.resolve_model_ops("auto") == DEFAULT
    assert [r.getMessage() for r in caplog.records if r.name == "bts.precision"] == [
        "model ops: auto -> conv1x1=matmul,upconv=subpixel (CPU only)",
        "model ops: auto -> conv1x1=matmul,upconv=subpixel,recompute=bn_relu "
        "(CPU only; training batches of 452608 pixels)",
        "model ops: auto -> conv1x1=matmul,upconv=subpixel (CPU only)",
        "model ops: auto -> standard (a GPU/TPU computes)",
        "model ops: auto -> standard (a GPU/TPU computes)"]


@pytest.fixture
def built_models(monkeypatch):
    """The models the scripts hand to DepthPredictor, in order."""
    import bts_predict

    seen = []

    class Spy(bts_predict.DepthPredictor):
        def __init__(self, model, *args, **kwargs):
            seen.append(model)
            super().__init__(model, *args, **kwargs)

    monkeypatch.setattr(bts_predict, "DepthPredictor", Spy)
    return seen


def _bts_test(tmp_path, checkpoint, name, *extra):
    import bts_test
    from conftest import write_random_rgb
    from tiny_run import TINY

    photo = tmp_path / "photos" / "room.png"
    if not photo.exists():
        write_random_rgb(str(photo), 64, 80, seed=7)
    out = tmp_path / name
    assert bts_test.main(TINY + ["--dataset", "nyu", "--checkpoint_path", str(checkpoint),
                                 "--image_path", str(photo), "--output_directory", str(out),
                                 "--save_npy", *extra]) == 0
    return np.load(out / "npy" / "room.npy")


def test_bts_test_on_a_cpu_rebuilds_a_standard_file_with_the_cpu_ops_and_the_same_depth(
        tmp_path, monkeypatch, built_models):
    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    keras.utils.set_random_seed(5)
    path = tmp_path / "standard.keras"
    bts_model.build_bts_model(tiny_model_config("nyu")).save(path)  # as converted files are
    auto = _bts_test(tmp_path, path, "auto")  # the default
    standard = _bts_test(tmp_path, path, "standard", "--model_ops", "standard")
    assert [bts_model.model_ops_of(m) for m in built_models] == [bts_model.CPU_MODEL_OPS, DEFAULT]
    np.testing.assert_allclose(auto, standard, rtol=0, atol=1e-5 * MAX_DEPTH)
    import bts_test

    assert bts_test.main(["--checkpoint_path", str(path), "--image_path", str(tmp_path / "photos"),
                          "--model_ops", "conv1x1=gemm"]) == 1  # one-line flag error, no traceback


def test_bts_main_with_recompute_trains_to_the_standard_graphs_weights(tmp_path, monkeypatch,
                                                                      plane_data_120x160):
    import bts_main
    from tiny_run import train_argv

    weights = []
    for ops in ("standard", "recompute=bn_relu"):
        folder = tmp_path / ops.replace("=", "_")
        assert bts_main.main(train_argv(plane_data_120x160, folder, "--num_steps", "2",
                                        "--model_ops", ops)) == 0
        trained = keras.saving.load_model(folder / "run" / "model.keras", compile=False)
        assert bts_model.model_ops_of(trained) == bts_model.ModelOps.parse(ops)
        weights.append(trained.get_weights())
    # The same backward ops; the traced step sums each piece's gradient contributions in another
    # order (AddN over the later layers), so float32 round-off only (1 ulp seen after 2 steps).
    for got, want in zip(*weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bts_main_auto_recomputes_only_for_full_size_training_batches(tmp_path, monkeypatch,
                                                                       plane_data_120x160, caplog):
    import bts_main
    from tiny_run import train_argv

    class Stop(Exception):
        pass

    seen = []

    def trainer(config, evaluate_fn=None, model_ops=None):
        seen.append(model_ops)
        raise Stop

    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    monkeypatch.setattr(bts_trainer, "Trainer", trainer)
    for size in (("416", "544"), ("64", "96")):  # batch 2: 452608 and 12288 pixels
        with pytest.raises(Stop):
            bts_main.main(train_argv(plane_data_120x160, tmp_path, "--input_height", size[0],
                                     "--input_width", size[1]))
    assert seen == [bts_model.CPU_TRAINING_MODEL_OPS, bts_model.CPU_MODEL_OPS]


def test_a_cpu_training_run_builds_the_cpu_ops_and_its_model_file_serves_every_choice(
        tmp_path, monkeypatch, plane_data_120x160, built_models):
    import bts_export
    import bts_main
    from tiny_run import train_argv

    monkeypatch.setattr(bts_trainer, "visible_gpus", lambda: [])
    assert bts_main.main(train_argv(plane_data_120x160, tmp_path, "--num_steps", "2")) == 0
    model_file = tmp_path / "run" / "model.keras"
    trained = keras.saving.load_model(model_file, compile=False)
    assert bts_model.model_ops_of(trained) == bts_model.CPU_MODEL_OPS  # as it trained
    lever = _bts_test(tmp_path, model_file, "auto")
    standard = _bts_test(tmp_path, tmp_path / "run", "standard", "--model_ops", "standard")
    assert [bts_model.model_ops_of(m) for m in built_models] == [bts_model.CPU_MODEL_OPS, DEFAULT]
    np.testing.assert_allclose(lever, standard, rtol=0, atol=1e-5 * MAX_DEPTH)
    exported, _ = bts_export.load_export_model(str(model_file), tiny_model_config("nyu"))
    assert bts_model.model_ops_of(exported) == DEFAULT  # exports are the standard graph
    for mine, theirs in zip(exported.weights, trained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

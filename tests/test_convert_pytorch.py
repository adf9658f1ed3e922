# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""PyTorch → Keras weight conversion: official BTS checkpoints and torchvision ImageNet DenseNets.

The references here are independent of bts_model.py: the official state-dict key names and shapes
are written down from the official code's module layout (torchvision DenseNet ``features`` + PT V2
decoder, design §1.2-§1.6, §9.1), and ``reference_bts_forward`` is a small re-implementation of
the PT V2 forward pass with ``torch.nn.functional`` (float64). A converted Keras model must
reproduce it.
"""
import os
import re

import numpy as np
import pytest

import bts_model
from conftest import TINY_BTS_SIZE, TINY_DENSENET, tiny_model_config
from pt_reference import (HEIGHT, WIDTH, F, _bn, densenet_shapes, learnable_count, official_shapes,
                          patterned_state_dict, random_state_dict, reference_bts_forward,
                          reference_encoder, reference_lpg, reference_reduction, torch)
from tools import convert_pytorch_checkpoint as cpc
from tools import convert_torchvision_imagenet as ctd
from utils.checkpoints import load_model_weights
from utils.pretrained import PretrainedWeightsError, load_encoder_weights


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def random_inputs(batch=2, seed=1, height=HEIGHT, width=WIDTH):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((batch, height, width, 3)).astype(np.float32)
    focal = rng.uniform(600.0, 800.0, batch).astype(np.float32)
    return image, focal


def float64_state(state):
    return {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


def keras_predict(model, image, focal):
    return np.asarray(model({"image": image, "focal": focal}, training=False))


@pytest.fixture(scope="module")
def tiny_state():
    return random_state_dict(official_shapes(TINY_DENSENET, TINY_BTS_SIZE), seed=0)


@pytest.fixture(scope="module")
def tiny_nyu_model(tiny_state):
    model = bts_model.build_bts_model(tiny_model_config("nyu"))
    cpc.assign_state_dict(model, cpc.extract_state_dict({"model": tiny_state}))
    return model


# --------------------------------------------------------------------------------------------
# Key set, counts, placement
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder, encoder_params, decoder_params, counters", [
    ("densenet161_bts", 26_472_000, 20_528_688, 175),
    ("densenet121_bts", 6_953_856, 14_214_192, 135),
])
def test_official_key_table_has_the_published_parameter_counts(
        encoder, encoder_params, decoder_params, counters):
    shapes = official_shapes(bts_model.DENSENET_CONFIGS[encoder], 512)
    assert learnable_count(shapes, "encoder.") == encoder_params
    assert learnable_count(shapes, "decoder.") == decoder_params
    assert sum(k.endswith(".num_batches_tracked") for k in shapes) == counters


def test_densenet161_model_maps_onto_exactly_the_official_keys_and_shapes():
    shapes = official_shapes(bts_model.DENSENET_CONFIGS["densenet161_bts"], 512)
    model = bts_model.build_bts_model(bts_model.BtsConfig(encoder="densenet161_bts"))
    mapped = {}
    for variable in model.weights:
        key = cpc.pytorch_key_for(variable.path)
        assert key not in mapped, f"two Keras weights map to {key}"
        pt_shape = shapes.get(key)
        assert pt_shape is not None, f"{variable.path} → {key} is not an official key"
        mapped[key] = cpc.torch_to_keras(np.empty(pt_shape, np.float32)).shape
        assert mapped[key] == tuple(variable.shape), (key, pt_shape, variable.shape)
    assert set(mapped) == {k for k in shapes if not k.endswith(".num_batches_tracked")}


def test_every_source_tensor_lands_once_in_its_weight_with_keras_layout():
    shapes = official_shapes(TINY_DENSENET, TINY_BTS_SIZE)
    state = patterned_state_dict(shapes)
    model = bts_model.build_bts_model(tiny_model_config())
    assert cpc.assign_state_dict(model, cpc.extract_state_dict(state)) == len(model.weights)
    found = {}
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        index = int(round(value.min() / 10000.0)) - 1  # the pattern names the source tensor
        key = list(shapes)[index]
        source = state[key].numpy()
        expected = source.transpose(2, 3, 1, 0) if source.ndim == 4 else source
        np.testing.assert_array_equal(value, expected, err_msg=f"{key} → {variable.path}")
        found[key] = variable.path
    assert set(found) == {k for k in shapes if not k.endswith("num_batches_tracked")}
    assert found["decoder.daspp_6.atrous_conv.aconv_sequence.4.weight"] == "daspp_6/conv3x3/kernel"
    assert found["decoder.bn4_2.running_var"] == "bn4_2/moving_variance"
    assert found["encoder.base_model.denseblock2.denselayer1.norm2.bias"] == \
        "encoder.denseblock2.denselayer1.norm2/beta"


# --------------------------------------------------------------------------------------------
# One layer of each kind against the source tensors applied by hand
# --------------------------------------------------------------------------------------------
def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).double()


def _nhwc(t):
    return t.permute(0, 2, 3, 1).numpy()


def test_converted_layers_equal_source_weights_applied_by_hand(tiny_nyu_model, tiny_state):
    sd, model = float64_state(tiny_state), tiny_nyu_model
    rng = np.random.default_rng(3)
    image, _ = random_inputs(batch=1)
    # conv: the stem 7x7/2 conv with symmetric padding 3 (ZeroPadding2D + valid conv in Keras)
    padded = model.get_layer("encoder.conv0_pad")(image)
    got = np.asarray(model.get_layer("encoder.conv0")(padded))
    want = _nhwc(F.conv2d(_nchw(image), sd["encoder.base_model.conv0.weight"], stride=2, padding=3))
    np.testing.assert_allclose(got, want, atol=2e-5)
    # BN in inference mode (decoder eps 1.1e-5)
    x = rng.standard_normal((1, 4, 6, TINY_BTS_SIZE)).astype(np.float32)
    got = np.asarray(model.get_layer("bn5")(x, training=False))
    np.testing.assert_allclose(got, _nhwc(_bn(sd, _nchw(x), "decoder.bn5", 1.1e-5)), atol=2e-5)
    # dilated conv: DASPP rate 12 3x3 (padding = dilation = 12)
    x = rng.standard_normal((1, 8, 12, TINY_BTS_SIZE // 2)).astype(np.float32)
    got = np.asarray(model.get_layer("daspp_12").conv3x3(x))
    want = F.conv2d(_nchw(x), sd["decoder.daspp_12.atrous_conv.aconv_sequence.4.weight"],
                    padding=12, dilation=12)
    np.testing.assert_allclose(got, _nhwc(want), atol=2e-5)
    # LPG head: reduction chain + plane head (reduc4x4) followed by the LPG layer (r = 4)
    x = rng.standard_normal((1, 4, 6, TINY_BTS_SIZE // 4)).astype(np.float32)
    plane = model.get_layer("reduc4x4")(x)
    got = np.asarray(model.get_layer("lpg4x4")(plane))
    want_plane = reference_reduction(sd, _nchw(x), "decoder.reduc4x4", TINY_BTS_SIZE // 4, TINY_BTS_SIZE // 8,
                                     False, 10.0)
    np.testing.assert_allclose(np.asarray(plane), _nhwc(want_plane), atol=1e-5)
    np.testing.assert_allclose(got, _nhwc(reference_lpg(want_plane, 4)), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Whole-model parity with the independent PT V2 forward pass
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["nyu", "kitti"])
def test_converted_model_matches_reference_pytorch_forward(dataset, tiny_state):
    max_depth = 10.0 if dataset == "nyu" else 80.0
    model = bts_model.build_bts_model(tiny_model_config(dataset))
    cpc.assign_state_dict(model, cpc.extract_state_dict(
        {f"module.{k}": v for k, v in tiny_state.items()}))
    image, focal = random_inputs()
    outputs = bts_model.build_lpg_maps_model(model)({"image": image, "focal": focal}, training=False)
    want = reference_bts_forward(float64_state(tiny_state), _nchw(image),
                                 torch.from_numpy(focal).double(), TINY_DENSENET, TINY_BTS_SIZE,
                                 max_depth, kitti=dataset == "kitti")
    depth = np.asarray(outputs["depth"])
    assert depth.shape == (2, HEIGHT, WIDTH, 1)
    assert want["depth"].std() > 0.05 * max_depth  # a varied, unsaturated depth map
    np.testing.assert_allclose(depth, want["depth"], atol=1e-4, rtol=0)
    for name in ("reduc1x1", "depth_2x2_scaled", "depth_4x4_scaled", "depth_8x8_scaled"):
        np.testing.assert_allclose(np.asarray(outputs[name]), want[name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)


# --------------------------------------------------------------------------------------------
# Strictness, prefixes, file formats
# --------------------------------------------------------------------------------------------
def test_missing_key_is_a_one_line_error_naming_it(tiny_state):
    state = cpc.extract_state_dict(tiny_state)
    del state["decoder.bn3.running_var"]
    model = bts_model.build_bts_model(tiny_model_config())
    before = [np.asarray(v.numpy()) for v in model.weights]
    with pytest.raises(cpc.ConversionError) as info:
        cpc.assign_state_dict(model, state)
    message = str(info.value)
    assert "\n" not in message and "missing keys (1): decoder.bn3.running_var" in message
    for old, variable in zip(before, model.weights):  # nothing was assigned
        np.testing.assert_array_equal(old, variable.numpy())


def test_extra_key_and_wrong_shape_are_reported(tiny_state):
    state = cpc.extract_state_dict(tiny_state)
    state["decoder.bn9.weight"] = np.ones(3, np.float32)
    state["decoder.conv1.0.weight"] = np.ones((8, 13, 3, 3), np.float32)
    with pytest.raises(cpc.ConversionError) as info:
        cpc.assign_state_dict(bts_model.build_bts_model(tiny_model_config()), state)
    message = str(info.value)
    assert "\n" not in message
    assert "unexpected keys (1): decoder.bn9.weight" in message
    assert "decoder.conv1.0.weight (8, 13, 3, 3)" in message


def test_num_batches_tracked_is_the_only_tolerated_leftover(tiny_state):
    state = cpc.extract_state_dict(tiny_state)
    # tiny: 13 encoder BN (norm0, 2 per dense layer, 3 transitions, norm5) + 14 decoder BN
    assert sum(k.endswith("num_batches_tracked") for k in state) == 27
    model = bts_model.build_bts_model(tiny_model_config())
    assert cpc.assign_state_dict(model, state) == len(model.weights)


@pytest.mark.parametrize("zip_format", [True, False])  # False: torch < 1.6 files (zoo era)
def test_module_prefix_and_checkpoint_dict_forms_are_equivalent(tmp_path, tiny_state, zip_format):
    bare = cpc.extract_state_dict(tiny_state)
    wrapped = {"model": {f"module.{k}": v for k, v in tiny_state.items()}, "global_step": 7,
               "optimizer": {"state": {}, "param_groups": []},
               "best_eval_steps": np.zeros(9, dtype=np.int32)}  # numpy as in official checkpoints
    path = tmp_path / "model"
    torch.save(wrapped, path, _use_new_zipfile_serialization=zip_format)
    loaded = cpc.read_state_dict(str(path))
    assert loaded.keys() == bare.keys()
    for key in bare:
        np.testing.assert_array_equal(loaded[key], bare[key])
    with pytest.raises(cpc.ConversionError, match="both with and without"):
        cpc.extract_state_dict({**tiny_state, "module.decoder.bn5.weight": torch.ones(TINY_BTS_SIZE)})


def test_unreadable_or_foreign_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(cpc.ConversionError, match="cannot read .*model.pth"):
        cpc.read_state_dict(str(bad))
    with pytest.raises(cpc.ConversionError, match="does not exist"):
        cpc.read_state_dict(str(tmp_path / "absent.pth"))
    with pytest.raises(cpc.ConversionError, match="not tensors"):
        cpc.extract_state_dict({"weights": [1, 2]})


@pytest.mark.parametrize("converter", [cpc, ctd], ids=["bts", "torchvision"])
def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys, converter):
    code = converter.main(["--pytorch_checkpoint", str(tmp_path / "absent"),
                           "--encoder", "densenet121_bts"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "absent" in err
    with pytest.raises(SystemExit) as info:  # a bad flag: exit 2, before any file is looked at
        converter.main(["--checkpoint_path", str(tmp_path / "absent"), "--encoder", "vgg"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "densenet161_bts" in err
    with pytest.raises(SystemExit) as info:
        converter.main(["--encoder", "densenet121_bts"])
    assert info.value.code == 2 and "--pytorch_checkpoint is required" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_converted_model_round_trips_through_saved_file(tmp_path, suffix, tiny_nyu_model):
    path = str(tmp_path / f"model{suffix}")
    cpc.save_model(tiny_nyu_model, path)
    assert sorted(os.listdir(tmp_path)) == [f"model{suffix}"]  # no temp file left behind
    image, focal = random_inputs(batch=1)
    want = keras_predict(tiny_nyu_model, image, focal)
    fresh = bts_model.build_bts_model(tiny_model_config())
    assert load_model_weights(fresh, path) == path
    np.testing.assert_array_equal(keras_predict(fresh, image, focal), want)
    if suffix == ".keras":
        import keras

        restored = keras.models.load_model(path)
        np.testing.assert_allclose(keras_predict(restored, image, focal), want, atol=1e-6)


# --------------------------------------------------------------------------------------------
# torchvision ImageNet DenseNet → encoder weights file
# --------------------------------------------------------------------------------------------
def torchvision_state(old_names, seed=5):
    """torchvision DenseNet state dict for the tiny config: ``features.*`` + classifier."""
    shapes, skips = densenet_shapes(TINY_DENSENET, prefix="features.")
    state = random_state_dict(shapes, seed=seed)
    if old_names:  # 2017 files: norm.1 / conv.2 and no BN counters
        state = {_old_style(k): v for k, v in state.items()
                 if not k.endswith("num_batches_tracked")}
    state["classifier.weight"] = torch.randn(1000, skips[-1])
    state["classifier.bias"] = torch.randn(1000)
    return state


def _old_style(key):
    """``denselayer1.norm1.weight`` → ``denselayer1.norm.1.weight`` (torchvision < 0.3 names)."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def test_old_torchvision_names_are_modernised():
    assert ctd.modernise_key("features.denseblock3.denselayer12.norm.2.running_var") == \
        "features.denseblock3.denselayer12.norm2.running_var"
    assert ctd.modernise_key("features.transition1.norm.weight") == "features.transition1.norm.weight"


@pytest.mark.parametrize("old_names", [True, False])
def test_torchvision_weights_give_reference_encoder_features(tmp_path, old_names):
    state = torchvision_state(old_names)
    assert any(".norm.1." in k for k in state) == old_names
    source, target = tmp_path / "densenet.pth", str(tmp_path / "imagenet" / "weights.h5")
    torch.save(state, source)
    count = ctd.convert_file(str(source), target, "tiny", densenet_config=TINY_DENSENET)
    model = bts_model.build_bts_model(tiny_model_config())
    assert load_encoder_weights(model, target) == count == len(bts_model.encoder_weights(model))
    taps = ["encoder.relu0", "encoder.pool0", "encoder.transition1.pool",
            "encoder.transition2.pool", "encoder.relu5"]
    import keras

    features = keras.Model(model.get_layer("image").output,
                           [model.get_layer(name).output for name in taps])
    image, _ = random_inputs(batch=1)
    sd = {k.replace("features.", "encoder.base_model."): v.double()
          for k, v in torchvision_state(False).items() if v.is_floating_point()}
    want = reference_encoder(sd, _nchw(image), TINY_DENSENET)
    for name, got, ref in zip(taps, features(image, training=False), want):
        np.testing.assert_allclose(np.asarray(got), _nhwc(ref), atol=1e-4, err_msg=name)


def test_encoder_weights_file_rejects_another_architecture(tmp_path):
    source, target = tmp_path / "densenet.pth", str(tmp_path / "weights.h5")
    torch.save(torchvision_state(False), source)
    ctd.convert_file(str(source), target, "tiny", densenet_config=TINY_DENSENET)
    other = bts_model.BtsConfig(densenet=bts_model.DenseNetConfig(12, 16, (1, 1, 1, 1), 2),
                                bts_size=TINY_BTS_SIZE)
    model = bts_model.build_bts_model(other)
    with pytest.raises(PretrainedWeightsError, match="shape mismatch") as info:
        load_encoder_weights(model, target)
    assert "\n" not in str(info.value)
    with pytest.raises(PretrainedWeightsError, match="do not exist"):
        load_encoder_weights(model, str(tmp_path / "absent.h5"))


def test_torchvision_file_with_foreign_keys_is_rejected(tmp_path):
    state = torchvision_state(False)
    state["fc.weight"] = torch.ones(3, 3)
    with pytest.raises(cpc.ConversionError, match="fc.weight"):
        ctd.convert_state(cpc.extract_state_dict(state), "tiny", densenet_config=TINY_DENSENET)

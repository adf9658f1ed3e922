# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Official ResNet / ResNeXt / MobileNetV2 BTS checkpoints and torchvision ImageNet weights →
Keras, against torchvision's own networks (optional-torch group).

The reference is upstream's model built from torchvision (tests/pt_reference.py): torchvision's
ResNet/ResNeXt/MobileNetV2 with random weights and random BN statistics, tapped the way upstream's
``encoder.forward`` taps them, followed by the independent float64 PT V2 decoder. A checkpoint in
the official format goes through the converter's CLI into a ``.keras`` file, which must reproduce
the taps, the LPG maps and the depth.
"""
import subprocess
import sys

import numpy as np
import pytest

import bts_model
from pt_reference import (TORCHVISION_ENCODERS, learnable_count, official_key_shapes, official_random_state,
                          reference_official_forward, torch, torchvision_base_model, torchvision_taps)
from tools import convert_pytorch_checkpoint as cpc
from tools import convert_torchvision_imagenet as ctd
from utils.checkpoints import load_model_weights
from utils.configs import BtsConfig
from utils.pretrained import load_encoder_weights

NEW = ("resnet50_bts", "resnet101_bts", "resnext50_bts", "resnext101_bts", "mobilenetv2_bts")
# upstream's README #Params: every parameter of its BtsModel, the ResNets' unused fc included.
UPSTREAM_PARAMS = {"resnet50_bts": 49_530_968, "resnet101_bts": 68_523_096,
                   "resnext50_bts": 49_002_840, "resnext101_bts": 112_765_272,
                   "mobilenetv2_bts": 16_338_992}
LARGE = ("resnet101_bts", "resnext101_bts")


def slow_if_large(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in names]


def tap_layers(encoder):
    """Keras layers whose outputs are upstream's five features."""
    if encoder == "mobilenetv2_bts":
        return ["encoder.1.conv.2", "encoder.3.add", "encoder.6.add", "encoder.10.add", "encoder.18.2"]
    if encoder.startswith("densenet"):  # norm5 before the decoder's ReLU, as upstream's tap
        return ["encoder.relu0", "encoder.pool0", "encoder.transition1.pool", "encoder.transition2.pool",
                "encoder.norm5"]
    blocks = bts_model.RESNET_CONFIGS[encoder].layers
    return ["encoder.relu"] + [f"encoder.layer{s}.{n - 1}.relu" for s, n in enumerate(blocks, start=1)]


def keras_outputs(model, encoder, image, focal):
    import keras

    maps = bts_model.build_lpg_maps_model(model)
    taps = keras.Model(model.inputs, [model.get_layer(n).output for n in tap_layers(encoder)])
    inputs = {"image": image, "focal": focal}
    out = {k: np.asarray(v) for k, v in maps(inputs, training=False).items()}
    out["taps"] = [np.asarray(t) for t in taps(inputs, training=False)]
    return out


def nchw64(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).double()


def convert_with_cli(tmp_path, state, encoder, dataset):
    """The official file → ``python -m tools.convert_pytorch_checkpoint`` → a loaded Keras model."""
    source, output = tmp_path / "model", tmp_path / "model.keras"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "global_step": 1}, source)
    result = subprocess.run([sys.executable, "-m", "tools.convert_pytorch_checkpoint",
                             "--pytorch_checkpoint", str(source), "--encoder", encoder,
                             "--dataset", dataset, "--output_path", str(output)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    model = bts_model.build_bts_model(BtsConfig.for_dataset(dataset, encoder=encoder))
    load_model_weights(model, str(output))
    return model, result


@pytest.mark.parametrize("encoder", NEW)
def test_official_checkpoint_has_upstreams_parameter_count_and_maps_onto_the_keras_model(encoder):
    shapes = official_key_shapes(encoder, 512)
    assert learnable_count(shapes, "") == UPSTREAM_PARAMS[encoder]
    model = bts_model.build_bts_model(BtsConfig(encoder=encoder)) if encoder not in LARGE else None
    if model is None:
        return  # the large builds: parity tests (slow) cover them
    mapped = {}
    for variable in model.weights:
        key = cpc.pytorch_key_for(variable.path)
        assert key in shapes and key not in mapped, (variable.path, key)
        keras_shape = cpc.torch_to_keras(np.empty(shapes[key], np.float32), tuple(variable.shape)).shape
        assert keras_shape == tuple(variable.shape), (key, shapes[key], variable.shape)
        mapped[key] = variable.path
    left = {k for k in shapes if k not in mapped and not k.endswith("num_batches_tracked")}
    assert left == ({"encoder.base_model.fc.weight", "encoder.base_model.fc.bias"}
                    if encoder.startswith("res") else set())


@pytest.mark.parametrize("encoder, dataset", [("resnet50_bts", "nyu"), ("resnext50_bts", "kitti"),
                                              ("densenet121_bts", "kitti"), ("mobilenetv2_bts", "nyu"),
                                              pytest.param("resnet101_bts", "kitti", marks=pytest.mark.slow),
                                              pytest.param("resnext101_bts", "nyu", marks=pytest.mark.slow)])
def test_converted_checkpoint_reproduces_torchvision_taps_lpg_maps_and_depth(tmp_path, encoder, dataset):
    state = official_random_state(encoder, 512, seed=3)
    model, result = convert_with_cli(tmp_path, state, encoder, dataset)
    if encoder.startswith("res"):
        assert "unused classifier (encoder.base_model.fc.bias, encoder.base_model.fc.weight)" in result.stderr
    rng = np.random.default_rng(4)
    image = rng.standard_normal((2, 64, 96, 3)).astype(np.float32)
    focal = np.array([721.5377, 707.0493], np.float32)
    max_depth = 10.0 if dataset == "nyu" else 80.0
    got = keras_outputs(model, encoder, image, focal)
    want = reference_official_forward(state, encoder, nchw64(image), torch.from_numpy(focal).double(),
                                      512, max_depth, dataset == "kitti")
    for index, (ours, ref) in enumerate(zip(got["taps"], want["taps"])):
        scale = np.abs(ref).max()
        np.testing.assert_allclose(ours, ref, atol=1e-5 * scale, rtol=0, err_msg=f"tap {index}")
    assert want["depth"].std() > 0.02 * max_depth  # a varied, unsaturated depth map
    np.testing.assert_allclose(got["depth"], want["depth"], atol=1e-3 if encoder in LARGE else 5e-4, rtol=0)
    for name in ("reduc1x1", "depth_2x2_scaled", "depth_4x4_scaled", "depth_8x8_scaled"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-5, err_msg=name)


# --------------------------------------------------------------------------------------------
# Strictness
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet50_state():
    return cpc.extract_state_dict(official_random_state("resnet50_bts", 512, seed=0))


def test_a_checkpoint_of_another_encoder_is_a_one_line_error(resnet50_state):
    model = bts_model.build_bts_model(BtsConfig(encoder="resnext50_bts"))
    with pytest.raises(cpc.ConversionError) as info:
        cpc.assign_state_dict(model, resnet50_state, ignore=cpc.skipped_keys_rule("resnext50_bts"))
    message = str(info.value)
    assert "\n" not in message and "shape mismatches" in message
    assert "encoder.base_model.layer1.0.bn1.weight (64,) vs Keras encoder.layer1.0.bn1/gamma (128,)" in message


def test_missing_key_and_the_classifier_outside_resnets_are_reported(resnet50_state):
    model = bts_model.build_bts_model(BtsConfig(encoder="resnet50_bts"))
    state = dict(resnet50_state)
    del state["encoder.base_model.layer3.2.bn2.running_var"]
    with pytest.raises(cpc.ConversionError, match=r"missing keys \(1\): encoder.base_model.layer3.2.bn2.running_var"):
        cpc.assign_state_dict(model, state, ignore=cpc.skipped_keys_rule("resnet50_bts"))
    # only the ResNets' checkpoints may carry fc: a DenseNet model reports it as unexpected
    assert cpc.skipped_keys_rule("resnet50_bts")("encoder.base_model.fc.weight")
    assert not cpc.skipped_keys_rule("densenet121_bts")("encoder.base_model.fc.weight")
    assert not cpc.skipped_keys_rule("resnet50_bts")("encoder.base_model.layer1.0.fc.weight")


@pytest.mark.parametrize("converter", ["tools.convert_pytorch_checkpoint", "tools.convert_torchvision_imagenet"])
def test_converters_refuse_keras_applications_encoders_naming_the_official_one(tmp_path, converter):
    source = tmp_path / "model.pth"
    torch.save({"x": torch.ones(1)}, source)
    result = subprocess.run([sys.executable, "-m", converter, "--pytorch_checkpoint", str(source),
                             "--encoder", "resnet50"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "keras.applications" in result.stderr and "--encoder resnet50_bts" in result.stderr


# --------------------------------------------------------------------------------------------
# torchvision ImageNet weights → the training start
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder", slow_if_large(["resnext50_bts", "mobilenetv2_bts", "resnet101_bts"]))
def test_torchvision_imagenet_file_gives_torchvision_features(tmp_path, encoder):
    import keras

    constructor, features_only, _ = TORCHVISION_ENCODERS[encoder]
    network = getattr(__import__("pt_reference").import_torchvision().models, constructor)(weights=None)
    with torch.no_grad():  # random BN statistics, so a wrong mapping of them shows
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    source = tmp_path / f"{constructor}-00000000.pth"
    torch.save(network.state_dict(), source)  # classifier (fc / classifier.1) included
    target = tmp_path / "imagenet" / "weights.h5"
    result = subprocess.run([sys.executable, "-m", "tools.convert_torchvision_imagenet", "--pytorch_checkpoint",
                             str(source), "--encoder", encoder, "--output_path", str(target)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    model = bts_model.build_bts_model(BtsConfig(encoder=encoder))
    assert load_encoder_weights(model, str(target)) == len(bts_model.encoder_weights(model))
    taps = keras.Model(model.get_layer("image").output, [model.get_layer(n).output for n in tap_layers(encoder)])
    image = np.random.default_rng(6).standard_normal((1, 64, 64, 3)).astype(np.float32)
    base = (network.features if features_only else network).double().eval()
    with torch.no_grad():
        want = [t.permute(0, 2, 3, 1).numpy() for t in torchvision_taps(base, encoder, nchw64(image))]
    for index, (ours, ref) in enumerate(zip(taps(image, training=False), want)):
        np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-5 * np.abs(ref).max(), err_msg=f"tap {index}")


def test_torchvision_file_of_another_family_is_rejected_in_one_line(tmp_path):
    state = cpc.extract_state_dict(torchvision_base_model("resnet50_bts").state_dict())
    with pytest.raises(cpc.ConversionError) as info:
        ctd.convert_state(state, "mobilenetv2_bts")
    assert "\n" not in str(info.value) and "not a torchvision mobilenet_v2 state dict" in str(info.value)


@pytest.mark.slow
def test_bts_main_trains_resnext50_from_the_converted_imagenet_start(tmp_path, plane_frames):
    """The user's path: torchvision file → converter CLI → ``bts_main.py --encoder resnext50_bts``
    → run folder; the frozen stem keeps its ImageNet values, the rest of the encoder trains."""
    import h5py

    source = tmp_path / "resnext50_32x4d-00000000.pth"
    torch.save(torchvision_base_model("resnext50_bts").state_dict(), source)
    start = tmp_path / "resnext50_imagenet" / "weights.h5"
    subprocess.run([sys.executable, "-m", "tools.convert_torchvision_imagenet", "--pytorch_checkpoint",
                    str(source), "--encoder", "resnext50_bts", "--output_path", str(start)],
                   check=True, capture_output=True, timeout=900)
    data = plane_frames(96, 128, 8)
    result = subprocess.run(
        [sys.executable, "bts_main.py", "--dataset", "nyu", "--encoder", "resnext50_bts", "--bts_size", "128",
         "--data_path", str(data), "--gt_path", str(data), "--filenames_file", str(data / "train.txt"),
         "--input_height", "64", "--input_width", "96", "--batch_size", "2", "--num_epochs", "1",
         "--seed", "3", "--adam_eps", "1e-3", "--pretrained_model", str(start),
         "--log_directory", str(tmp_path / "logs"), "--model_name", "run"],
        capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"encoder initialised from {start}" in result.stderr
    model = bts_model.build_bts_model(BtsConfig(encoder="resnext50_bts", bts_size=128))
    load_model_weights(model, str(tmp_path / "logs" / "run"))
    with h5py.File(start, "r") as imagenet:
        def changed(path):
            return not np.array_equal(imagenet[path][()], next(v for v in model.weights if v.path == path).numpy())

        assert not changed("encoder.conv1/kernel")  # the stem: frozen (upstream 'base_model.conv1')
        assert not changed("encoder.layer2.0.bn2/gamma")  # block BN γ: frozen ('.bn')
        assert changed("encoder.layer1.0.downsample.1/gamma")  # the shortcut BN trains
        assert changed("encoder.layer3.1.conv2/kernel")  # grouped 3×3 convs train
        assert changed("encoder.layer2.0.bn2/moving_mean")  # frozen BNs still track statistics

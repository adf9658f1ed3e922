# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The download-and-convert scripts: ./init_bts_pretrained.sh (official zoo models) and
./init_densenet_161.sh (torchvision ImageNet encoders).

No network in tests: the downloads are pre-placed in BTS_MODELS_DIR/downloads. The zoo tests build
official-format checkpoints with random weights (tests/pt_reference.py), pack them as the zoo does
(``NAME/model`` inside ``NAME.zip``) and compare the converted model with the independent float64
PyTorch forward pass. The fast tests need no PyTorch.
"""
import hashlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from utils.encoders import OFFICIAL_ENCODERS
from utils.pretrained import INIT_COMMANDS, default_encoder_weights_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torchvision's IMAGENET1K_V1 files (download.pytorch.org/models/), written down from torchvision:
# the hex in each name is the start of the file's SHA-256.
IMAGENET_FILES = {
    "densenet161": "densenet161-8d451a50.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnext50": "resnext50_32x4d-7cdf4587.pth",
    "resnext101": "resnext101_32x8d-8ba56ff5.pth",
    "mobilenetv2": "mobilenet_v2-b0353104.pth",
}


def run_script(name, args, models_dir):
    env = {**os.environ, "BTS_MODELS_DIR": str(models_dir), "PYTHON": sys.executable}
    return subprocess.run(["bash", os.path.join(ROOT, name), *args], env=env, capture_output=True,
                          text=True, timeout=600)


def random_inputs(height, width, seed=1):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, height, width, 3)).astype(np.float32)
    focal = rng.uniform(600.0, 800.0, 1).astype(np.float32)
    return image, focal


def keras_predict(model, image, focal):
    return np.asarray(model({"image": image, "focal": focal}, training=False))


def zoo_archive(models_dir, name, state, torch):
    """``downloads/NAME.zip`` holding ``NAME/model`` = {"model": {"module." + key: tensor}}, as the zoo."""
    checkpoint = models_dir / "model"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "global_step": 1}, checkpoint)
    (models_dir / "downloads").mkdir()
    archive = models_dir / "downloads" / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(checkpoint, f"{name}/model")
    checkpoint.unlink()
    return archive


def evaluate_line(split, arch, name, output):
    return (f"evaluate with: python bts_test.py arguments_test_{split}.txt --encoder {arch}_bts "
            f"--model_name {name} --checkpoint_path {output}")


# --------------------------------------------------------------------------------------------
# ./init_densenet_161.sh [ARCH]: torchvision ImageNet weights
# --------------------------------------------------------------------------------------------
def test_init_densenet_rejects_a_download_with_the_wrong_checksum(tmp_path):
    download = tmp_path / "downloads" / "densenet161-8d451a50.pth"
    download.parent.mkdir()
    download.write_bytes(b"truncated download")
    result = run_script("init_densenet_161.sh", [], tmp_path)
    assert result.returncode == 1
    assert "expected 8d451a50" in result.stderr and not download.exists()
    assert not (tmp_path / "densenet161_imagenet").exists()


@pytest.mark.parametrize("arch", sorted(IMAGENET_FILES))
def test_init_densenet_takes_every_official_encoder_and_checks_its_torchvision_file(tmp_path, arch):
    """Each ARCH looks for its torchvision file and checks the hash prefix in that file's name."""
    download = tmp_path / "downloads" / IMAGENET_FILES[arch]
    download.parent.mkdir()
    download.write_bytes(b"not the torchvision file")
    result = run_script("init_densenet_161.sh", [arch], tmp_path)
    expected = IMAGENET_FILES[arch].rsplit("-", 1)[1].removesuffix(".pth")
    actual = hashlib.sha256(b"not the torchvision file").hexdigest()[:len(expected)]
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {download} has SHA-256 prefix {actual}, expected {expected}; "
                                     "deleted it, run again")
    assert not download.exists() and not (tmp_path / f"{arch}_imagenet").exists()


def test_training_hints_name_the_script_arguments_and_its_output_paths():
    """utils/pretrained.py's INIT_COMMANDS / default paths agree with the script's ARCH and output."""
    assert sorted(INIT_COMMANDS) == sorted(OFFICIAL_ENCODERS)
    for encoder, command in INIT_COMMANDS.items():
        arch = command.split()[1] if len(command.split()) > 1 else "densenet161"
        assert command.split()[0] == "./init_densenet_161.sh" and arch in IMAGENET_FILES
        assert arch == encoder.removesuffix("_bts")
        # the script writes ${BTS_MODELS_DIR:-models}/${ARCH}_imagenet/weights.h5
        assert default_encoder_weights_path(encoder) == f"./models/{arch}_imagenet/weights.h5"
    assert len(IMAGENET_FILES) == len(OFFICIAL_ENCODERS)


def test_init_scripts_reject_unknown_choices(tmp_path):
    assert run_script("init_densenet_161.sh", ["vgg16"], tmp_path).returncode == 2
    assert run_script("init_densenet_161.sh", ["resnext101_bts"], tmp_path).returncode == 2
    assert run_script("init_bts_pretrained.sh", ["cityscapes"], tmp_path).returncode == 2
    assert run_script("init_bts_pretrained.sh", [], tmp_path).returncode == 2
    result = run_script("init_bts_pretrained.sh", ["nyu", "mobilenetv2"], tmp_path)  # not in the zoo
    assert result.returncode == 2 and "usage:" in result.stderr
    assert not (tmp_path / "downloads").exists()


# --------------------------------------------------------------------------------------------
# ./init_bts_pretrained.sh nyu|eigen [ARCH]: official zoo models
# --------------------------------------------------------------------------------------------
def test_init_bts_pretrained_rejects_a_damaged_archive_in_one_line(tmp_path):
    name = "bts_nyu_v2_pytorch_resnet101"
    archive = tmp_path / "downloads" / f"{name}.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"PK\x03\x04 truncated")
    result = run_script("init_bts_pretrained.sh", ["nyu", "resnet101"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {archive} is damaged (zip test failed); deleted it, run again"
    assert not archive.exists() and not (tmp_path / "downloads" / name).exists()
    assert not (tmp_path / "downloads" / f"{name}.zip.sha256").exists()


@pytest.mark.slow
def test_zoo_archive_converts_to_a_model_matching_the_reference_forward(tmp_path):
    """Full-size DenseNet-121 KITTI checkpoint in a zoo-style zip → script → .keras → parity."""
    from pt_reference import (official_shapes, random_state_dict, reference_bts_forward,
                              torch)

    import bts_model
    from utils.checkpoints import load_model_weights

    cfg = bts_model.DENSENET_CONFIGS["densenet121_bts"]
    state = random_state_dict(official_shapes(cfg, 512), seed=11)
    name = "bts_eigen_v2_pytorch_densenet121"
    zoo_archive(tmp_path, name, state, torch)
    result = run_script("init_bts_pretrained.sh", ["eigen", "densenet121"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    output = tmp_path / name / "model.keras"
    assert result.stdout.strip().splitlines()[-1] == evaluate_line("eigen", "densenet121", name, output)
    model = bts_model.build_bts_model(bts_model.BtsConfig.for_dataset("kitti", encoder="densenet121_bts"))
    load_model_weights(model, str(output))
    image, focal = random_inputs(64, 64)
    sd = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    image_nchw = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).double()
    want = reference_bts_forward(sd, image_nchw, torch.from_numpy(focal).double(),
                                 cfg, 512, 80.0, kitti=True)["depth"]
    np.testing.assert_allclose(keras_predict(model, image, focal), want, atol=1e-3, rtol=0)
    again = run_script("init_bts_pretrained.sh", ["eigen", "densenet121"], tmp_path)
    assert again.returncode == 0 and "already converted" in again.stdout  # idempotent


@pytest.mark.slow
def test_resnext50_zoo_archive_converts_records_its_checksum_and_rejects_tampering(tmp_path):
    """Full-size ResNeXt-50 NYU checkpoint (torchvision keys) in a zoo-style zip → script → .keras
    → parity with torchvision's encoder + the PT V2 decoder; the archive's SHA-256 is recorded and
    a later change of the archive is refused."""
    from pt_reference import official_random_state, reference_official_forward, torch

    import bts_model
    from utils.checkpoints import load_model_weights

    state = official_random_state("resnext50_bts", 512, seed=13)
    name = "bts_nyu_v2_pytorch_resnext50"
    archive = zoo_archive(tmp_path, name, state, torch)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = run_script("init_bts_pretrained.sh", ["nyu", "resnext50"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    output = tmp_path / name / "model.keras"
    assert result.stdout.strip().splitlines()[-1] == evaluate_line("nyu", "resnext50", name, output)
    record = tmp_path / "downloads" / f"{name}.zip.sha256"
    assert record.read_text().split() == [digest, f"{name}.zip"]  # sha256sum's format

    model = bts_model.build_bts_model(bts_model.BtsConfig.for_dataset("nyu", encoder="resnext50_bts"))
    load_model_weights(model, str(output))
    image, focal = random_inputs(64, 96, seed=2)
    image_nchw = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).double()
    want = reference_official_forward(state, "resnext50_bts", image_nchw, torch.from_numpy(focal).double(),
                                      512, 10.0, False)["depth"]
    got = keras_predict(model, image, focal)
    assert got.shape == want.shape == (1, 64, 96, 1)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)

    again = run_script("init_bts_pretrained.sh", ["nyu", "resnext50"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"already converted: {output}" in again.stdout and "checksum ok" in again.stdout

    with open(archive, "ab") as f:  # the cached archive changes after its checksum was recorded
        f.write(b"\0")
    tampered = run_script("init_bts_pretrained.sh", ["nyu", "resnext50"], tmp_path)
    assert tampered.returncode == 1
    lines = tampered.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {archive} has SHA-256 ")
    assert f"{record} recorded {digest}" in lines[0]
    assert not archive.exists() and not record.exists()

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Exports (SavedModel, TFLite fp32/fp16/int8, ONNX) of a tiny BTS round-trip to the Keras model."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import bts_model
import bts_export as export_model
from conftest import tiny_model_config
from tiny_run import save_run_folder

HEIGHT, WIDTH = 64, 96
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _tiny_model(dataset: str):
    tf.keras.utils.set_random_seed(1)
    return bts_model.build_bts_model(tiny_model_config(dataset))


def _numpy_normalise(image_u8: np.ndarray) -> np.ndarray:
    """ImageNet normalisation written independently of bts_dataloader."""
    return ((image_u8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def _keras_depth(model, image_u8: np.ndarray, focal: np.ndarray) -> np.ndarray:
    return model({"image": tf.constant(_numpy_normalise(image_u8)),
                  "focal": tf.constant(focal, tf.float32)}, training=False).numpy()


@pytest.fixture(scope="module")
def kitti_model():
    return _tiny_model("kitti")


@pytest.fixture(scope="module")
def exported(kitti_model, tmp_path_factory):
    """Every format exported once (KITTI: the focal input matters)."""
    settings = export_model.ExportSettings(str(tmp_path_factory.mktemp("exports")), "kitti",
                                           "torch", HEIGHT, WIDTH, parity_images=2)
    results, keras_latency = export_model.export_all(kitti_model, export_model.FORMATS, settings)
    return {r.format: r for r in results}, keras_latency, settings


@pytest.fixture(scope="module")
def saved_model(exported):
    return tf.saved_model.load(exported[0]["saved_model"].path)


def _images(count: int, height: int, width: int, seed: int = 3):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_every_format_round_trips_within_its_tolerance(exported):
    results, keras_latency, _ = exported
    assert set(results) == set(export_model.FORMATS)
    assert keras_latency > 0
    for fmt, result in results.items():
        assert result.passed, (fmt, result.max_abs_diff_m, result.tolerance_m)
        assert result.size_bytes > 0 and result.latency_s > 0
    # float32 formats agree to round-off, far inside one KITTI PNG step (1/256 m)
    for fmt in export_model.FLOAT32_FORMATS:
        assert results[fmt].max_abs_diff_m < 1e-3, fmt
    # fp16 / int8 weights shrink the file
    assert results["tflite_fp16"].size_bytes < 0.6 * results["tflite"].size_bytes
    assert results["tflite_dynamic"].size_bytes < 0.4 * results["tflite"].size_bytes


def test_saved_model_uint8_signature_matches_numpy_normalised_keras_any_size(saved_model, kitti_model):
    serving = saved_model.signatures["serving_default"]
    for batch, height, width in ((2, 64, 96), (1, 96, 128)):
        image = _images(batch, height, width)
        focal = np.linspace(700.0, 740.0, batch).astype(np.float32)
        depth = serving(image=tf.constant(image), focal=tf.constant(focal))["depth"].numpy()
        assert depth.shape == (batch, height, width, 1)
        np.testing.assert_allclose(depth, _keras_depth(kitti_model, image, focal), atol=1e-4)


def test_saved_model_float_signature_takes_normalised_images(saved_model, kitti_model):
    loaded = saved_model
    image = _images(1, 64, 96)
    focal = np.array([721.5], np.float32)
    depth = loaded.signatures["serve_normalized"](
        image=tf.constant(_numpy_normalise(image)), focal=tf.constant(focal))["depth"].numpy()
    np.testing.assert_allclose(depth, _keras_depth(kitti_model, image, focal), atol=1e-4)


def test_saved_model_rejects_size_not_multiple_of_32(saved_model):
    serving = saved_model.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of 32"):
        serving(image=tf.constant(_images(1, 64, 100)), focal=tf.constant([721.5]))


@pytest.mark.parametrize("fmt", ["saved_model", "onnx"])
def test_kitti_focal_input_scales_exported_depth_linearly(exported, fmt):
    predictor = {"saved_model": export_model.saved_model_predictor,
                 "onnx": export_model.onnx_predictor}[fmt](exported[0][fmt].path)
    image = np.repeat(_images(1, 64, 96), 2, axis=0)
    depth = predictor(image, np.array([500.0, 1000.0], np.float32))
    np.testing.assert_allclose(depth[1], 2.0 * depth[0], rtol=1e-5)


def test_onnx_accepts_dynamic_batch_and_size(exported, kitti_model):
    predictor = export_model.onnx_predictor(exported[0]["onnx"].path)
    image = _images(2, 96, 128, seed=5)
    focal = np.array([700.0, 730.0], np.float32)
    np.testing.assert_allclose(predictor(image, focal), _keras_depth(kitti_model, image, focal),
                               atol=1e-4)


def test_tflite_runs_its_fixed_size_and_rejects_others(exported, kitti_model):
    predictor = export_model.tflite_predictor(exported[0]["tflite"].path)
    image = _images(2, HEIGHT, WIDTH, seed=7)
    focal = np.array([700.0, 730.0], np.float32)
    np.testing.assert_allclose(predictor(image, focal), _keras_depth(kitti_model, image, focal),
                               atol=1e-4)
    with pytest.raises(export_model.ExportError, match="64x96"):
        predictor(_images(1, 96, 128), focal[:1])


def test_tolerances_are_one_png_step_for_float32_and_fraction_of_range_otherwise():
    assert export_model.tolerance_m("onnx", "nyu") == pytest.approx(1e-3)
    assert export_model.tolerance_m("tflite", "kitti") == pytest.approx(1 / 256)
    assert export_model.tolerance_m("tflite_fp16", "nyu") == pytest.approx(0.2)
    assert export_model.tolerance_m("tflite_dynamic", "kitti") == pytest.approx(8.0)


def test_cli_writes_report_and_exits_nonzero_on_parity_failure(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"  # a run folder alone: its bts_config.json says how to build the model
    save_run_folder(run, "nyu")
    # A zero tolerance must turn the (non-zero) fp16 difference into a failure with exit code 1.
    monkeypatch.setattr(export_model, "tolerance_m", lambda fmt, dataset: 0.0)
    argv = ["--dataset", "nyu", "--checkpoint_path", str(run), "--export_dir", str(tmp_path),
            "--formats", "tflite_fp16", "--input_height", "64", "--input_width", "96",
            "--parity_images", "1"]
    assert export_model.main(argv) == 1
    captured = capsys.readouterr()
    assert "| tflite_fp16 |" in captured.out and "tflite_fp16 export differs" in captured.err
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["settings"]["height"] == 64 and report["settings"]["dataset"] == "nyu"
    [result] = report["results"]
    assert result["format"] == "tflite_fp16" and result["passed"] is False
    assert 0.0 < result["max_abs_diff_m"] < 0.2  # fp16 weights: small but non-zero change
    assert os.path.exists(tmp_path / "bts_fp16.tflite")
    # A flag that contradicts the folder's config is one line naming both values.
    assert export_model.main(argv + ["--bts_size", "256"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --bts_size is 256, but ") and "bts_config.json" in err[-1]
    assert "records bts_size 128" in err[-1] and "Traceback" not in "\n".join(err)


def test_cli_rejects_unknown_format_and_missing_export_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_model.main(["--export_dir", str(tmp_path), "--formats", "torchscript"])
    assert exit_info.value.code == 2 and "torchscript" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_model.main(["--formats", "onnx"])
    assert "--export_dir is required" in capsys.readouterr().err


def test_default_mode_is_test_unless_given():
    assert export_model._with_test_mode(["--dataset", "kitti"])[:2] == ["--mode", "test"]
    assert export_model._with_test_mode(["args.txt", "--x"]) == ["args.txt", "--mode", "test", "--x"]
    assert export_model._with_test_mode(["--mode", "train"]) == ["--mode", "train"]

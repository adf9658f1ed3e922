# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""DepthPredictor: any-size images, padding map-back, KB crop paste-back, focal, LPG maps;
load_model: self-describing checkpoints, flag conflicts, loading errors."""
import dataclasses
import logging
import threading

import numpy as np
import pytest

import bts_model
from bts_predict import DepthPredictor, load_model, padding_to_multiple
from conftest import tiny_model_config
from tiny_run import save_run_folder
from utils.checkpoints import CheckpointError
from utils.configs import ConfigError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _tiny(dataset, **kwargs):
    return bts_model.build_bts_model(tiny_model_config(dataset, **kwargs))


@pytest.fixture(scope="module")
def nyu_model():
    return _tiny("nyu")


@pytest.fixture(scope="module")
def nyu(nyu_model):
    return DepthPredictor(nyu_model, "nyu")


@pytest.fixture(scope="module")
def kitti():
    return DepthPredictor(_tiny("kitti"), "kitti", do_kb_crop=True)


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _direct(model, image_uint8, focal=518.8579):
    """Reference: the model called on the ImageNet-normalised image, no predictor involved."""
    x = ((image_uint8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)[None]
    return model({"image": x, "focal": np.array([focal], np.float32)}, training=False).numpy()[0, ..., 0]


def test_padding_to_multiple_of_32_is_centred():
    assert padding_to_multiple(64, 96) == (0, 0, 0, 0)
    assert padding_to_multiple(50, 70) == (7, 7, 13, 13)
    assert padding_to_multiple(33, 1) == (15, 16, 15, 16)


def test_any_size_image_comes_back_at_its_original_size(nyu):
    for height, width in ((50, 70), (1, 1), (33, 100)):
        depth = nyu.predict_image(_image(height, width))
        assert depth.shape == (height, width) and depth.dtype == np.float32
        assert np.all((depth > 0) & (depth <= nyu.max_depth))
    assert nyu.predict_image(_image(20, 30)[:, :, 0]).shape == (20, 30)  # grayscale accepted
    assert nyu.max_depth == 10.0


def test_multiple_of_32_image_equals_a_direct_model_call(nyu, nyu_model):
    image = _image(64, 96, seed=3)
    np.testing.assert_allclose(nyu.predict_image(image), _direct(nyu_model, image), rtol=1e-5,
                               atol=1e-5)


def test_padded_prediction_maps_back_to_the_right_pixels(nyu, nyu_model):
    image = _image(50, 70, seed=4)
    padded = np.pad(image, ((7, 7), (13, 13), (0, 0)), mode="edge")  # 64 × 96
    expected = _direct(nyu_model, padded)[7:57, 13:83]
    np.testing.assert_allclose(nyu.predict_image(image), expected, rtol=1e-5, atol=1e-5)


def test_post_process_averages_with_the_flipped_prediction(nyu_model, nyu):
    image = _image(64, 64, seed=5)
    flipped = nyu.predict_image(np.ascontiguousarray(image[:, ::-1]))[:, ::-1]
    averaged = DepthPredictor(nyu_model, "nyu", post_process=True).predict_image(image)
    np.testing.assert_allclose(averaged, 0.5 * (nyu.predict_image(image) + flipped), rtol=1e-5)


def test_kitti_depth_scales_with_focal(kitti):
    image = _image(64, 96, seed=6)
    base = kitti.predict_image(image, focal=700.0)
    np.testing.assert_allclose(kitti.predict_image(image, focal=1400.0), 2 * base, rtol=1e-5)
    np.testing.assert_allclose(kitti.predict_image(image), base * kitti.default_focal / 700.0,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="focal"):
        kitti.predict_image(image, focal=-1.0)


def test_kitti_frame_is_kb_cropped_and_pasted_back_at_its_offsets(kitti):
    image = _image(375, 1242, seed=7)
    depth = kitti.predict_image(image)
    assert depth.shape == (375, 1242)
    inside = np.zeros(depth.shape, bool)
    inside[23:375, 13:1229] = True
    # (random weights: a saturated sigmoid may give 0 somewhere inside; placement is what counts)
    assert depth[inside].max() > 0 and np.all(depth[inside] >= 0) and not depth[~inside].any()
    crop = kitti.normalize(image[23:375, 13:1229])[None]
    np.testing.assert_allclose(depth[inside].reshape(352, 1216), kitti.predict_batch(crop)[0],
                               rtol=1e-6)


def test_lpg_maps_come_back_at_input_size(nyu):
    maps = nyu.predict_maps(nyu.normalize(_image(40, 50))[None])
    assert set(maps) == {"depth", "depth_8x8_scaled", "depth_4x4_scaled", "depth_2x2_scaled",
                         "reduc1x1"}
    assert all(value.shape == (1, 40, 50) for value in maps.values())


def test_concurrent_calls_give_the_sequential_results(nyu):
    images = [_image(32, 64, seed=s) for s in range(4)]
    expected = [nyu.predict_image(im) for im in images]
    results = [None] * 4

    def work(i):
        results[i] = nyu.predict_image(images[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_bad_images_are_rejected_with_a_clear_message(nyu):
    with pytest.raises(ValueError, match="uint8"):
        nyu.predict_image(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        nyu.predict_image(np.zeros((8, 8, 5), np.uint8))


def test_load_model_needs_a_checkpoint_unless_untrained_is_allowed(caplog):
    with pytest.raises(CheckpointError, match="checkpoint_path"):
        load_model("", tiny_model_config())
    with caplog.at_level(logging.WARNING):
        model, config = load_model("", tiny_model_config(), allow_untrained=True)
    assert "UNTRAINED" in caplog.text
    assert config == tiny_model_config()
    assert model.count_params() == _tiny("nyu").count_params()  # built from the flags


def test_load_model_loads_weights_and_rejects_another_architecture(tmp_path, nyu_model):
    weights = str(tmp_path / "tiny.weights.h5")  # no bts_config.json beside it: the flags count
    nyu_model.save_weights(weights)
    loaded = DepthPredictor(load_model(weights, tiny_model_config())[0], "nyu")
    image = _image(32, 64, seed=8)
    np.testing.assert_allclose(loaded.predict_image(image), _direct(nyu_model, image), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(weights, tiny_model_config(bts_size=256))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "none.weights.h5"), tiny_model_config())


def test_run_folder_rebuilds_its_model_from_its_config_not_the_default_flags(tmp_path):
    run = tmp_path / "run"
    saved, saved_config = save_run_folder(run, "nyu", seed=2)
    defaults = bts_model.BtsConfig.for_dataset("nyu")  # densenet161_bts, nf 512
    for path in (run, run / "ckpt-1"):
        model, config = load_model(str(path), defaults)
        assert config == saved_config and model.count_params() == saved.count_params()
    image = _image(32, 64, seed=1)
    np.testing.assert_array_equal(DepthPredictor(model, "nyu").predict_image(image),
                                  DepthPredictor(saved, "nyu").predict_image(image))
    # Explicit flags must agree with the folder's config; agreeing ones are fine.
    load_model(str(run), tiny_model_config(), explicit={"encoder", "bts_size", "max_depth"})
    with pytest.raises(ConfigError) as conflict:
        load_model(str(run), tiny_model_config(bts_size=256), explicit={"bts_size"})
    message = conflict.value.as_flag_error()
    assert conflict.value.field == "bts_size" and message.startswith("--bts_size is 256, but ")
    assert str(run / "bts_config.json") in message and "records bts_size 128" in message
    with pytest.raises(ConfigError, match="records max_depth 10") as conflict:
        load_model(str(run), tiny_model_config(max_depth=8.0), explicit={"max_depth"})
    with pytest.raises(ConfigError, match="other dataset") as conflict:  # NYU model, KITTI data
        load_model(str(run), tiny_model_config("kitti"))
    assert conflict.value.field == "dataset"


def test_keras_file_with_fixed_input_size_is_relaxed_to_any_size(tmp_path):
    fixed = _tiny("nyu", input_height=32, input_width=64)
    path = str(tmp_path / "fixed.keras")
    fixed.save(path)
    model, config = load_model(path, bts_model.BtsConfig.for_dataset("nyu"))
    assert config == dataclasses.replace(bts_model.model_config_of(fixed), input_height=None,
                                         input_width=None)
    predictor = DepthPredictor(model, "nyu")
    image = _image(64, 96, seed=9)
    assert predictor.predict_image(image).shape == (64, 96)
    np.testing.assert_allclose(predictor.predict_image(image[:32, :64]),
                               _direct(fixed, image[:32, :64]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="other dataset"):
        load_model(path, tiny_model_config("kitti"))
    with pytest.raises(ConfigError, match="its saved config.* records encoder densenet_tiny"):
        load_model(path, tiny_model_config(encoder="resnet50"), explicit={"encoder"})


def test_with_maps_gives_the_lpg_maps_placed_like_the_depth(kitti):
    image = _image(375, 1242, seed=11)
    depth, maps = kitti.predict_image(image, 721.5, with_maps=True)
    np.testing.assert_allclose(depth, kitti.predict_image(image, 721.5), rtol=1e-5, atol=1e-5)
    assert set(maps) == set(bts_model.LPG_MAP_LAYERS)
    for value in maps.values():  # pasted back into the full frame at the KB-crop offsets
        assert value.shape == (375, 1242) and not value[:23].any() and not value[:, :13].any()

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""DepthPredictor: any-size images, padding map-back, KB crop paste-back, focal, loading errors."""
import logging
import threading

import numpy as np
import pytest

import bts_model
from utils.arguments import parse_args
from utils.checkpoints import CheckpointError
from bts_predict import DepthPredictor, padding_to_multiple

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _tiny(dataset, **kwargs):
    config = bts_model.BtsConfig(
        dataset=dataset, bts_size=128,
        densenet=bts_model.DenseNetConfig(growth_rate=8, num_init_features=16,
                                          block_config=(1, 1, 1, 1), bn_size=2), **kwargs)
    return bts_model.build_bts_model(config)


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


def _args(*flags):
    return parse_args(groups=("model", "data", "eval", "test"),
                      argv=["--encoder", "densenet_tiny", "--bts_size", "128", *flags])


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


def test_from_args_needs_a_checkpoint_unless_untrained_is_allowed(caplog):
    with pytest.raises(CheckpointError, match="checkpoint_path"):
        DepthPredictor.from_args(_args())
    with caplog.at_level(logging.WARNING):
        predictor = DepthPredictor.from_args(_args(), allow_untrained=True)
    assert "UNTRAINED" in caplog.text
    assert predictor.model.count_params() == _tiny("nyu").count_params()  # built from the flags


def test_from_args_loads_weights_and_rejects_another_architecture(tmp_path, nyu_model):
    weights = str(tmp_path / "tiny.weights.h5")
    nyu_model.save_weights(weights)
    loaded = DepthPredictor.from_args(_args("--checkpoint_path", weights))
    image = _image(32, 64, seed=8)
    np.testing.assert_allclose(loaded.predict_image(image), _direct(nyu_model, image), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(CheckpointError, match="does not fit"):
        DepthPredictor.from_args(_args("--checkpoint_path", weights, "--bts_size", "256"))
    with pytest.raises(CheckpointError, match="does not exist"):
        DepthPredictor.from_args(_args("--checkpoint_path", str(tmp_path / "none.weights.h5")))


def test_keras_file_with_fixed_input_size_is_relaxed_to_any_size(tmp_path):
    fixed = _tiny("nyu", input_height=32, input_width=64)
    path = str(tmp_path / "fixed.keras")
    fixed.save(path)
    predictor = DepthPredictor.from_args(_args("--checkpoint_path", path))
    image = _image(64, 96, seed=9)
    assert predictor.predict_image(image).shape == (64, 96)
    np.testing.assert_allclose(predictor.predict_image(image[:32, :64]),
                               _direct(fixed, image[:32, :64]), rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="other dataset"):
        DepthPredictor.from_args(_args("--checkpoint_path", path, "--dataset", "kitti"))

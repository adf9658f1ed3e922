# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Typed configs (utils/configs.py) and the encoder table (utils/encoders.py)."""
import dataclasses

import numpy as np
import pytest

import bts_model
from utils.arguments import model_config, parse_args, pipeline_config
from utils.configs import BtsConfig, ConfigError, PipelineConfig
from utils.datasets import KITTI_FOCAL_NORMALISER, get_dataset_facts
from utils.encoders import (DENSENET_CONFIGS, ENCODER_NAMES, ENCODERS, IMAGENET_MEAN, IMAGENET_STD,
                            normalization_affine)


def test_model_config_json_round_trip_keeps_every_field():
    config = BtsConfig.for_dataset("kitti", encoder="densenet_tiny", bts_size=128,
                                   densenet=DENSENET_CONFIGS["densenet_tiny"])
    again = BtsConfig.from_json(config.to_json(), "x.json")
    assert again == config and again.densenet == DENSENET_CONFIGS["densenet_tiny"]
    assert config.focal_normaliser == KITTI_FOCAL_NORMALISER and config.max_depth == 80.0


def test_model_config_resolves_the_encoders_width_and_has_no_dataset_name():
    assert BtsConfig().bts_size == 512 and BtsConfig(encoder="resnet50").bts_size == 256
    assert "dataset" not in {f.name for f in dataclasses.fields(BtsConfig)}
    nyu = BtsConfig.for_dataset("nyu")
    assert nyu.max_depth == 10.0 and nyu.focal_normaliser is None and not nyu.scale_by_focal


@pytest.mark.parametrize("fields, flag, text", [
    ({"encoder": "vgg99"}, "encoder", "'vgg99' is unknown; valid encoders: densenet161_bts"),
    ({"bts_size": 64}, "bts_size", "must be an integer >= 128"),
    ({"max_depth": 0.0}, "max_depth", "must be positive"),
    ({"input_height": 100}, "input_height", "must be a positive multiple of 32, got 100"),
    ({"encoder": "densenet_tiny", "imagenet_weights": True}, "pretrained_model", "no keras.applications"),
])
def test_bad_model_config_names_its_field(fields, flag, text):
    with pytest.raises(ConfigError) as err:
        BtsConfig(**fields)
    assert err.value.field == flag and text in str(err.value)
    assert err.value.as_flag_error().startswith(f"--{flag} ")


def test_a_json_from_another_version_or_with_unknown_fields_is_refused():
    with pytest.raises(ValueError, match="f.json: model config version 9 is not supported"):
        BtsConfig.from_json('{"version": 9}', "f.json")
    with pytest.raises(ValueError, match="f.json: unknown model config field"):
        BtsConfig.from_json('{"encoder": "resnet50", "dataset": "nyu"}', "f.json")


def test_replace_revalidates():
    with pytest.raises(ConfigError):
        dataclasses.replace(BtsConfig(), bts_size=4)
    cfg = pipeline_config(parse_args(groups=("model", "data", "train"), argv=["--filenames_file", "x"]))
    with pytest.raises(ConfigError, match="must be a positive integer"):
        dataclasses.replace(cfg, batch_size=0)


def test_flags_become_the_configs_they_describe():
    args = parse_args(groups=("model", "data", "train"), argv=[
        "--dataset", "kitti", "--encoder", "resnet50", "--filenames_file", "list.txt",
        "--batch_size", "3", "--do_kb_crop", "--seed", "4"])
    model = model_config(args)
    assert (model.encoder, model.bts_size, model.max_depth) == ("resnet50", 256, 80.0)
    data = pipeline_config(args)
    assert isinstance(data, PipelineConfig) and data.facts == get_dataset_facts("kitti")
    assert (data.normalization, data.batch_size, data.do_kb_crop, data.seed) == ("caffe", 3, True, 4)
    assert (data.input_height, data.input_width) == get_dataset_facts("kitti").train_input_size
    assert pipeline_config(args, "eval").batch_size == 1


def test_encoder_table_matches_the_models_encoders():
    assert tuple(bts_model.ENCODERS) == ENCODER_NAMES
    for name, facts in ENCODERS.items():
        spec = bts_model.encoder_spec(name)
        assert (spec.preprocessing, spec.default_bts_size, spec.imagenet) == \
               (facts.normalization, facts.default_bts_size, facts.imagenet), name


def test_normalisation_formulas_match_their_definitions():
    rgb = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]])

    def apply(mode):
        scale, bias, bgr = normalization_affine(mode)
        return (rgb[:, ::-1] if bgr else rgb) * scale + bias

    np.testing.assert_allclose(apply("torch"), (rgb - IMAGENET_MEAN) / IMAGENET_STD)
    np.testing.assert_allclose(apply("tf"), rgb * 2 - 1)
    np.testing.assert_allclose(apply("caffe"), rgb[:, ::-1] * 255 - [103.939, 116.779, 123.68])
    np.testing.assert_allclose(apply("raw"), rgb)
    with pytest.raises(ValueError, match="normalisation mode 'x' is unknown"):
        normalization_affine("x")

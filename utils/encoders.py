# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The encoder table: every ``--encoder`` name, the input normalisation it expects, its default
decoder width, and the normalisation formulas themselves (the one home of these facts).

``bts_model`` builds an encoder for each name here (a test checks the two tables agree), the data
pipeline and the predictor apply :func:`normalization_affine`, TensorBoard images invert it, and
``--help`` lists :data:`ENCODER_NAMES`. Plain Python and numpy: no TensorFlow, no ``bts_*`` module.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications 'caffe' mode, 0..255 BGR

# 'torch': (x - mean) / std on x in [0, 1] (ImageNet statistics; the DenseNets, as PT BTS);
# 'tf': 2x - 1; 'caffe': BGR, 255x - mean (ResNets); 'raw': x (backbones that normalise inside).
NORMALIZATION_MODES = ("torch", "tf", "caffe", "raw")

DEFAULT_ENCODER = "densenet161_bts"  # the paper's; a saved model's own encoder replaces it
ENCODER_PREFIX = "encoder."  # every encoder layer/variable name starts with it (freezing, decay, converters)


@dataclasses.dataclass(frozen=True)
class DenseNetConfig:
    """torchvision-style DenseNet hyper-parameters (any values work, e.g. tiny test encoders)."""

    growth_rate: int = 48
    num_init_features: int = 96
    block_config: Tuple[int, ...] = (6, 12, 36, 24)
    bn_size: int = 4

    def skip_channels(self) -> Tuple[int, int, int, int, int]:
        """Channels of skip2, skip4, skip8, skip16, dense32."""
        channels = self.num_init_features
        taps = [channels, channels]
        for index, layers in enumerate(self.block_config):
            channels += layers * self.growth_rate
            if index != len(self.block_config) - 1:
                channels //= 2
                taps.append(channels)
        return tuple(taps[:4]) + (channels,)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """torchvision ResNet / ResNeXt with Bottleneck blocks (V1.5: a stage's stride sits in the 3×3 conv).

    ``layers``: blocks per stage (layer1..layer4); the 3×3 convs of a stage with ``planes``
    (64, 128, 256, 512) have ``width(planes)`` channels in ``groups`` groups; block outputs have
    4·planes channels, so the taps are 64, 256, 512, 1024, 2048 for every member of the family.
    """

    layers: Tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64

    def width(self, planes: int) -> int:
        """Channels of a Bottleneck's 1×1 → 3×3 path (torchvision's formula)."""
        return int(planes * (self.width_per_group / 64.0)) * self.groups


RESNET_CONFIGS: Dict[str, ResNetConfig] = {
    "resnet50_bts": ResNetConfig((3, 4, 6, 3)),
    "resnet101_bts": ResNetConfig((3, 4, 23, 3)),
    "resnext50_bts": ResNetConfig((3, 4, 6, 3), groups=32, width_per_group=4),  # 32×4d
    "resnext101_bts": ResNetConfig((3, 4, 23, 3), groups=32, width_per_group=8),  # 32×8d
}
RESNET_SKIP_CHANNELS = (64, 256, 512, 1024, 2048)
MOBILENETV2_SKIP_CHANNELS = (16, 24, 32, 64, 1280)  # after torchvision features 1, 3, 6, 10, 18

DENSENET_CONFIGS: Dict[str, DenseNetConfig] = {
    "densenet161_bts": DenseNetConfig(48, 96, (6, 12, 36, 24), 4),
    "densenet121_bts": DenseNetConfig(32, 64, (6, 12, 24, 16), 4),
    # A smoke-test encoder (seconds to trace; use with --bts_size 128): CLI tests, multi-process runs.
    "densenet_tiny": DenseNetConfig(8, 16, (1, 1, 1, 1), 2),
}


@dataclasses.dataclass(frozen=True)
class EncoderFacts:
    """What the rest of the code needs to know about an encoder without building it."""

    normalization: str  # one of NORMALIZATION_MODES
    default_bts_size: int  # decoder width nf when --bts_size is not given
    imagenet: bool = False  # keras.applications ImageNet weights exist (--pretrained_model imagenet)
    # The official encoders (``*_bts``): the torchvision architecture they are, layer for layer,
    # whose ImageNet weights start official training and whose BTS checkpoints convert.
    torchvision: str = ""


# The official PyTorch BTS encoders first (their names, torchvision layouts, ImageNet mean/std
# input and nf 512 as upstream's bts_main.py), then the smoke-test DenseNet (seconds to trace),
# then keras.applications backbones: Keras-native networks with Keras ImageNet weights, NOT
# weight-compatible with the official models (Keras ResNet is V1 with conv biases and caffe
# input, Keras MobileNetV2's H/16 tap has 96 channels). nf for those: 512 for the largest
# (densenet201, resnet101), 256 for the rest as the upstream TF ports.
ENCODERS: Dict[str, EncoderFacts] = {
    "densenet161_bts": EncoderFacts("torch", 512, torchvision="densenet161"),
    "densenet121_bts": EncoderFacts("torch", 512, torchvision="densenet121"),
    "resnet50_bts": EncoderFacts("torch", 512, torchvision="resnet50"),
    "resnet101_bts": EncoderFacts("torch", 512, torchvision="resnet101"),
    "resnext50_bts": EncoderFacts("torch", 512, torchvision="resnext50_32x4d"),
    "resnext101_bts": EncoderFacts("torch", 512, torchvision="resnext101_32x8d"),
    "mobilenetv2_bts": EncoderFacts("torch", 512, torchvision="mobilenet_v2"),
    "densenet_tiny": EncoderFacts("torch", 512),
    "densenet121": EncoderFacts("torch", 256, True),
    "densenet169": EncoderFacts("torch", 256, True),
    "densenet201": EncoderFacts("torch", 512, True),
    "resnet50": EncoderFacts("caffe", 256, True),
    "resnet101": EncoderFacts("caffe", 512, True),
    "mobilenetv2": EncoderFacts("tf", 256, True),
    "efficientnetv2b0": EncoderFacts("raw", 256, True),
    "efficientnetv2b1": EncoderFacts("raw", 256, True),
    "efficientnetv2b2": EncoderFacts("raw", 256, True),
    "efficientnetv2b3": EncoderFacts("raw", 256, True),
    "efficientnetv2s": EncoderFacts("raw", 256, True),
    "convnext_tiny": EncoderFacts("raw", 256, True),
}
ENCODER_NAMES: Tuple[str, ...] = tuple(ENCODERS)
OFFICIAL_ENCODERS: Tuple[str, ...] = tuple(n for n, f in ENCODERS.items() if f.torchvision)


def encoder_facts(name: str) -> EncoderFacts:
    """The table entry for ``name``; a one-line ValueError listing the valid names otherwise."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"encoder {name!r} is unknown; valid encoders: {', '.join(ENCODERS)}") \
            from None


def normalization_affine(mode: str, input_scale: float = 1.0, dtype=np.float64
                         ) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(scale, bias, bgr): the encoder input is ``x * s + b`` per channel.

    ``x`` is RGB (``input_scale`` 1 for [0, 1] floats, 1/255 for uint8 values); with ``bgr`` the
    channels are reversed first. (3,) arrays computed in ``dtype`` (float32 reproduces a float32
    ``(x - mean) / std`` transform's constants bit for bit).
    """
    if mode == "torch":
        std = np.asarray(IMAGENET_STD, dtype)
        return dtype(input_scale) / std, -np.asarray(IMAGENET_MEAN, dtype) / std, False
    if mode == "tf":
        return np.full(3, 2.0 * input_scale), np.full(3, -1.0), False
    if mode == "caffe":
        return np.full(3, 255.0 * input_scale), -np.asarray(CAFFE_MEAN_BGR, np.float64), True
    if mode == "raw":
        return np.full(3, input_scale), np.zeros(3), False
    raise ValueError(f"normalisation mode {mode!r} is unknown; expected one of {NORMALIZATION_MODES}")


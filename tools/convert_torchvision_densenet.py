# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Convert torchvision ImageNet DenseNet weights into the encoder weights file used for training.

    python -m tools.convert_torchvision_densenet --pytorch_checkpoint models/downloads/densenet161-8d451a50.pth \
        --encoder densenet161_bts            # → ./models/densenet161_imagenet/weights.h5

Source: a torchvision DenseNet state dict (``features.*`` and ``classifier.*``). Old files such as
``densenet161-8d451a50.pth`` name the dense-layer modules ``norm.1``/``conv.2`` instead of
``norm1``/``conv2``; both spellings are accepted. ``features.X`` becomes the Keras encoder layer
``encoder.X`` (the PT BTS encoder is torchvision's ``features`` module, design §1.2), conv kernels are
transposed to (kh, kw, in, out), and the ImageNet classifier is dropped. The mapping is strict
(every encoder weight set exactly once, every ``features`` tensor used, shapes checked). Training
loads the file with ``utils.pretrained.load_encoder_weights`` (``--pretrained_model``).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from tools.convert_pytorch_checkpoint import (PT_ENCODER_PREFIX, ConversionError, assign_state_dict,
                                              is_skipped_key, read_state_dict)
from utils.pretrained import default_encoder_weights_path, save_encoder_weights, source_checkpoint_validator

LOG = logging.getLogger("convert_torchvision_densenet")

TORCHVISION_PREFIX = "features."  # PT BTS names the same modules PT_ENCODER_PREFIX + ...
CLASSIFIER_PREFIX = "classifier."
# Old torchvision names: denselayerN.norm.1 → denselayerN.norm1 (also relu, conv; 1 or 2).
_OLD_LAYER_NAME = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def modernise_key(key: str) -> str:
    """``features.denseblock1.denselayer1.norm.1.weight`` → ``...denselayer1.norm1.weight``."""
    return _OLD_LAYER_NAME.sub(r"\1\2.", key)


def torchvision_to_bts_names(state: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Rename torchvision DenseNet keys to PT BTS encoder keys; drops ``classifier.*``.

    Raises ConversionError on keys outside ``features.``/``classifier.``.
    """
    renamed: Dict[str, np.ndarray] = {}
    foreign = []
    for key, value in state.items():
        key = modernise_key(key)
        if key.startswith(CLASSIFIER_PREFIX):
            continue
        if not key.startswith(TORCHVISION_PREFIX):
            foreign.append(key)
            continue
        renamed[PT_ENCODER_PREFIX + key[len(TORCHVISION_PREFIX):]] = value
    if foreign:
        raise ConversionError(f"not a torchvision DenseNet state dict: keys outside 'features.' "
                              f"and 'classifier.': {', '.join(sorted(foreign)[:8])}")
    return renamed


def build_encoder(densenet_config):
    """The Keras DenseNet encoder alone (same layer names and variable paths as in BTS)."""
    import keras

    import bts_model

    image = keras.Input((None, None, 3), name="image")
    return keras.Model(image, bts_model.densenet_encoder(image, densenet_config), name="encoder")


def convert_state(state: Mapping[str, np.ndarray], densenet_config, source: str = "checkpoint"):
    """Fill a Keras encoder from a torchvision state dict; returns (encoder, arrays by path)."""
    encoder = build_encoder(densenet_config)
    assign_state_dict(encoder, torchvision_to_bts_names(state), source=source,
                      ignore=is_skipped_key)
    arrays = {v.path: np.asarray(v.numpy()) for v in encoder.weights}
    return encoder, arrays


def convert_file(source_path: str, output_path: str, encoder_name: str,
                 densenet_config=None) -> int:
    """Convert ``source_path`` for ``encoder_name``; writes ``output_path``; returns array count."""
    import bts_model

    if densenet_config is None:
        if encoder_name not in bts_model.DENSENET_CONFIGS:
            raise ConversionError(f"--encoder {encoder_name!r} has no torchvision DenseNet; valid: "
                                  f"{', '.join(bts_model.DENSENET_CONFIGS)}")
        densenet_config = bts_model.DENSENET_CONFIGS[encoder_name]
    state = read_state_dict(source_path)
    _, arrays = convert_state(state, densenet_config, source=repr(source_path))
    save_encoder_weights(output_path, arrays, {"encoder": encoder_name,
                                               "source": os.path.basename(source_path)})
    LOG.info("wrote %d arrays (%d parameters incl. BN statistics) to %s", len(arrays),
             sum(a.size for a in arrays.values()), output_path)
    return len(arrays)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from utils.arguments import check_input_paths, parse_args
    from utils.quiet import quiet_tensorflow

    args = parse_args(groups=("model", "weights"), argv=argv,
                      description="torchvision ImageNet DenseNet → BTS encoder weights.h5",
                      validate=source_checkpoint_validator("torchvision densenet161/121 .pth file"))
    quiet_tensorflow(args.verbose)
    output = args.output_path or default_encoder_weights_path(args.encoder)
    try:
        problem = check_input_paths(args, files=("pytorch_checkpoint",))
        if problem:
            raise ConversionError(problem)
        count = convert_file(args.pytorch_checkpoint, output, args.encoder)
    except (ConversionError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"converted {args.pytorch_checkpoint} → {output} ({count} encoder arrays, {args.encoder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

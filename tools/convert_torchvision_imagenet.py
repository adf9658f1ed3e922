# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Convert torchvision ImageNet weights into the encoder weights file used for training.

    python -m tools.convert_torchvision_imagenet --pytorch_checkpoint models/downloads/densenet161-8d451a50.pth \
        --encoder densenet161_bts            # → ./models/densenet161_imagenet/weights.h5

Every official encoder (``utils.encoders.OFFICIAL_ENCODERS``) starts official training from
torchvision's ImageNet weights (``models.<arch>(pretrained=True)``, upstream's ``bts.py``); this
converts that file, as ``./init_densenet_161.sh ARCH`` does after downloading it. The PT BTS
encoder module ``encoder.base_model`` is, per family:

* DenseNet and MobileNetV2: torchvision's ``features`` module, so ``features.X`` becomes
  ``encoder.base_model.X`` and ``classifier.*`` is dropped. Old DenseNet files such as
  ``densenet161-8d451a50.pth`` name the dense-layer modules ``norm.1``/``conv.2`` instead of
  ``norm1``/``conv2``; both spellings are accepted.
* ResNet / ResNeXt: the whole network, so ``X`` becomes ``encoder.base_model.X`` and the unused
  classifier ``fc.*`` is dropped.

The mapping is strict (every encoder weight set exactly once, every other tensor used, shapes
checked; conv kernels transposed to Keras layout). Training loads the file with
``utils.pretrained.load_encoder_weights`` (``--pretrained_model``).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tools.convert_pytorch_checkpoint import (PT_ENCODER_PREFIX, ConversionError, assign_state_dict,
                                              is_skipped_key, read_state_dict)
from utils.encoders import ENCODERS
from utils.pretrained import (default_encoder_weights_path, official_encoder_problem, save_encoder_weights,
                              source_checkpoint_validator)

LOG = logging.getLogger("convert_torchvision_imagenet")

# Old torchvision names: denselayerN.norm.1 → denselayerN.norm1 (also relu, conv; 1 or 2).
_OLD_LAYER_NAME = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def modernise_key(key: str) -> str:
    """``features.denseblock1.denselayer1.norm.1.weight`` → ``...denselayer1.norm1.weight``."""
    return _OLD_LAYER_NAME.sub(r"\1\2.", key)


def torchvision_arch(encoder: str) -> str:
    """torchvision architecture of ``encoder``; DenseNet for test shapes (densenet_tiny, ...)."""
    facts = ENCODERS.get(encoder)
    return facts.torchvision if facts is not None and facts.torchvision else "densenet"


def family_prefixes(encoder: str) -> Tuple[str, str]:
    """(kept prefix, dropped classifier prefix) of ``encoder``'s torchvision state dict."""
    arch = torchvision_arch(encoder)
    return ("", "fc.") if arch.startswith("res") else ("features.", "classifier.")


def torchvision_to_bts_names(state: Mapping[str, np.ndarray], encoder: str = "densenet161_bts"
                             ) -> Dict[str, np.ndarray]:
    """Rename torchvision keys to PT BTS encoder keys (``encoder.base_model.*``) for ``encoder``.

    Drops the ImageNet classifier; raises ConversionError on keys outside the family's layout.
    """
    kept, dropped = family_prefixes(encoder)
    renamed: Dict[str, np.ndarray] = {}
    foreign = []
    for key, value in state.items():
        key = modernise_key(key)
        if key.startswith(dropped):
            continue
        if not key.startswith(kept):
            foreign.append(key)
            continue
        renamed[PT_ENCODER_PREFIX + key[len(kept):]] = value
    if foreign:
        raise ConversionError(f"not a torchvision {torchvision_arch(encoder)} "
                              f"state dict: keys outside {kept!r} and {dropped!r}: "
                              f"{', '.join(sorted(foreign)[:8])}")
    return renamed


def build_encoder(encoder: str, densenet_config=None):
    """The Keras encoder alone (same layer names and variable paths as in BTS).

    ``densenet_config`` builds a DenseNet of that shape instead (test encoders).
    """
    import keras

    import bts_model

    image = keras.Input((None, None, 3), name="image")
    features = (bts_model.densenet_encoder(image, densenet_config) if densenet_config is not None
                else bts_model.encoder_spec(encoder).build(image))
    return keras.Model(image, features, name="encoder")


def convert_state(state: Mapping[str, np.ndarray], encoder: str, source: str = "checkpoint",
                  densenet_config=None):
    """Fill a Keras encoder from a torchvision state dict; returns (encoder model, arrays by path)."""
    model = build_encoder(encoder, densenet_config)
    assign_state_dict(model, torchvision_to_bts_names(state, encoder), source=source,
                      ignore=is_skipped_key)
    arrays = {v.path: np.asarray(v.numpy()) for v in model.weights}
    return model, arrays


def convert_file(source_path: str, output_path: str, encoder: str, densenet_config=None) -> int:
    """Convert ``source_path`` for ``encoder``; writes ``output_path``; returns the array count."""
    if densenet_config is None:
        problem = official_encoder_problem(encoder, "torchvision ImageNet weights")
        if problem:
            raise ConversionError(problem)
    state = read_state_dict(source_path)
    _, arrays = convert_state(state, encoder, source=repr(source_path), densenet_config=densenet_config)
    save_encoder_weights(output_path, arrays, {"encoder": encoder,
                                               "source": os.path.basename(source_path)})
    LOG.info("wrote %d arrays (%d parameters incl. BN statistics) to %s", len(arrays),
             sum(a.size for a in arrays.values()), output_path)
    return len(arrays)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from utils.arguments import check_input_paths, parse_args
    from utils.quiet import quiet_tensorflow

    args = parse_args(groups=("model", "weights"), argv=argv,
                      description="torchvision ImageNet weights → BTS encoder weights.h5",
                      validate=source_checkpoint_validator("torchvision ImageNet .pth file"))
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

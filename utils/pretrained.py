# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""ImageNet encoder weights for training (``--pretrained_model``), without PyTorch.

File format (written by ``tools/convert_torchvision_densenet.py``): an HDF5 file with one dataset
per encoder variable, stored under the Keras variable path (``encoder.conv0/kernel``,
``encoder.denseblock1.denselayer1.norm1/moving_mean``, ...; ``/`` makes HDF5 groups), already in
Keras layout, plus root attributes ``format``, ``encoder`` and ``source``. Loading is by name and
strict: every encoder variable of the model must be in the file with the same shape, and every
array in the file must be used.
"""
from __future__ import annotations

import io
import os
from typing import Dict, Iterable, Mapping

import h5py
import numpy as np

from utils.io import atomic_write_bytes

ENCODER_WEIGHTS_FORMAT = "bts-tf encoder weights v1"
ENCODER_PREFIX = "encoder."  # same as bts_model.ENCODER_PREFIX (kept here so no TF import is needed)


class PretrainedWeightsError(ValueError):
    """An encoder weights file that cannot be used, with a one-line reason."""


def default_encoder_weights_path(encoder: str) -> str:
    """``./models/densenet161_imagenet/weights.h5`` for ``densenet161_bts`` (upstream TF2 path)."""
    return os.path.join(".", "models", f"{encoder.removesuffix('_bts')}_imagenet", "weights.h5")


def source_checkpoint_validator(what: str):
    """A ``parse_args`` validator: the PyTorch source comes from --pytorch_checkpoint or, rather
    than being silently ignored, from --checkpoint_path; ``what`` describes the expected file."""

    def validate(parser, args) -> None:
        if args.checkpoint_path and args.pytorch_checkpoint and \
                args.checkpoint_path != args.pytorch_checkpoint:
            parser.error("give the source once: --pytorch_checkpoint and --checkpoint_path differ")
        args.pytorch_checkpoint = args.pytorch_checkpoint or args.checkpoint_path
        if not args.pytorch_checkpoint:
            parser.error(f"--pytorch_checkpoint is required ({what})")

    return validate


def save_encoder_weights(path: str, arrays: Mapping[str, np.ndarray],
                         attributes: Mapping[str, str]) -> None:
    """Write ``arrays`` (Keras variable path → array) to ``path`` atomically (local or gs://)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.attrs["format"] = ENCODER_WEIGHTS_FORMAT
        for key, value in attributes.items():
            handle.attrs[key] = str(value)
        for name, array in arrays.items():
            handle.create_dataset(name, data=np.asarray(array, dtype=np.float32))
    atomic_write_bytes(path, buffer.getvalue())


def read_encoder_weights(path: str) -> Dict[str, np.ndarray]:
    """All arrays of an encoder weights file, keyed by Keras variable path."""
    import tensorflow as tf  # lazy: only needed to read local or remote files alike

    if not tf.io.gfile.exists(path):
        raise PretrainedWeightsError(
            f"encoder weights {path!r} do not exist (run ./init_densenet_161.sh to create them)")
    with tf.io.gfile.GFile(path, "rb") as handle:
        data = handle.read()
    arrays: Dict[str, np.ndarray] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as handle:
            if handle.attrs.get("format") != ENCODER_WEIGHTS_FORMAT:
                raise PretrainedWeightsError(
                    f"{path!r} is not a bts-tf encoder weights file (no format attribute "
                    f"{ENCODER_WEIGHTS_FORMAT!r}); convert it with tools/convert_torchvision_densenet.py")
            handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                              if isinstance(item, h5py.Dataset) else None)
    except OSError as err:
        raise PretrainedWeightsError(f"{path!r} is not a readable HDF5 file: {err}") from None
    return arrays


def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_encoder_weights(model, path: str) -> int:
    """Load the encoder weights file ``path`` into a full BTS ``model`` by variable path.

    Strict: raises :class:`PretrainedWeightsError` (one line) if an encoder variable is missing from
    the file, the file holds arrays the model lacks, or a shape differs. Nothing is assigned unless
    everything matches. Returns the number of variables loaded.
    """
    arrays = read_encoder_weights(path)
    variables = [v for v in model.weights if v.path.startswith(ENCODER_PREFIX)]
    if not variables:
        raise PretrainedWeightsError("the model has no encoder variables (layer names 'encoder.*')")
    missing = [v.path for v in variables if v.path not in arrays]
    unexpected = set(arrays) - {v.path for v in variables}
    mismatched = [f"{v.path} {tuple(arrays[v.path].shape)}≠{tuple(v.shape)}"
                  for v in variables if v.path in arrays and tuple(arrays[v.path].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected ({len(unexpected)}): {_preview(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch ({len(mismatched)}): {_preview(mismatched, 4)}")
    if problems:
        raise PretrainedWeightsError(
            f"encoder weights {path!r} do not fit this model (check --encoder): " + "; ".join(problems))
    for variable in variables:
        variable.assign(arrays[variable.path].astype(variable.dtype))
    return len(variables)

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""ImageNet encoder weights for training (``--pretrained_model``), without PyTorch.

File format (written by ``python -m tools.convert_torchvision_imagenet``): an HDF5 file with one dataset
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

from utils.encoders import DEFAULT_ENCODER, ENCODER_PREFIX, OFFICIAL_ENCODERS, encoder_facts
from utils.io import atomic_write_bytes

ENCODER_WEIGHTS_FORMAT = "bts-tf encoder weights v1"
# The command that fetches and converts each official encoder's torchvision ImageNet weights
# into default_encoder_weights_path (the script's argument picks the architecture; none: DenseNet-161).
IMAGENET_SCRIPT = "./init_densenet_161.sh"
INIT_COMMANDS = {name: IMAGENET_SCRIPT if name == DEFAULT_ENCODER
                 else f"{IMAGENET_SCRIPT} {name.removesuffix('_bts')}" for name in OFFICIAL_ENCODERS}
IMAGENET_CONVERTER = "python -m tools.convert_torchvision_imagenet"


def official_encoder_problem(encoder: str, what: str) -> str:
    """Why ``what`` (PyTorch weights) cannot fill ``encoder``, in one line ('' if they can)."""
    if encoder in OFFICIAL_ENCODERS:
        return ""
    twin = f"{encoder}_bts" if f"{encoder}_bts" in OFFICIAL_ENCODERS else ""
    if twin:
        return (f"--encoder {encoder!r} is the keras.applications network, which {what} do not "
                f"fit; use --encoder {twin}")
    return f"--encoder {encoder!r}: {what} convert only to the official encoders " \
           f"{', '.join(OFFICIAL_ENCODERS)}"


class PretrainedWeightsError(ValueError):
    """An encoder weights file that cannot be used, with a one-line reason."""


def default_encoder_weights_path(encoder: str) -> str:
    """``./models/densenet161_imagenet/weights.h5`` for ``densenet161_bts`` (upstream TF2 path)."""
    return os.path.join(".", "models", f"{encoder.removesuffix('_bts')}_imagenet", "weights.h5")


def imagenet_weights_hint(encoder: str) -> str:
    """Where ``encoder``'s ImageNet weights come from, as one clause for a notice or an error."""
    if encoder in INIT_COMMANDS:
        return (f"run {INIT_COMMANDS[encoder]} to fetch them into "
                f"{default_encoder_weights_path(encoder)}, the default --pretrained_model")
    if encoder_facts(encoder).imagenet:
        return f"pass --pretrained_model imagenet to download keras.applications' {encoder} weights"
    return f"{encoder} has no ImageNet weights anywhere: it always starts from random initialisation"


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
            f"encoder weights {path!r} do not exist ({IMAGENET_SCRIPT} [ARCH] creates them)")
    with tf.io.gfile.GFile(path, "rb") as handle:
        data = handle.read()
    arrays: Dict[str, np.ndarray] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as handle:
            if handle.attrs.get("format") != ENCODER_WEIGHTS_FORMAT:
                raise PretrainedWeightsError(
                    f"{path!r} is not a bts-tf encoder weights file (no format attribute "
                    f"{ENCODER_WEIGHTS_FORMAT!r}); convert it with {IMAGENET_CONVERTER}")
            handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                              if isinstance(item, h5py.Dataset) else None)
    except OSError as err:
        raise PretrainedWeightsError(f"{path!r} is not a readable HDF5 file: {err}") from None
    return arrays


def preview_names(names: Iterable[str], limit: int = 8) -> str:
    """``a, b, c … and 5 more``: sorted names, cut after ``limit`` (for one-line errors)."""
    names = sorted(names)
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def mismatch_report(missing: Iterable[str], unexpected: Iterable[str],
                    mismatched: Iterable[str], shared: Iterable[str] = ()) -> str:
    """What keeps a set of weights from fitting a model, in one line ('' when everything fits).

    The wording of every strict weight mapping (both PyTorch converters and
    :func:`load_encoder_weights`): ``missing keys (N): ...; unexpected keys (N): ...; shape
    mismatches (N): ...; keys used twice: ...``.
    """
    missing, unexpected, mismatched, shared = (list(x) for x in (missing, unexpected, mismatched,
                                                                  shared))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {preview_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {preview_names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {preview_names(mismatched, 4)}")
    if shared:
        problems.append(f"keys used twice: {preview_names(shared, 4)}")
    return "; ".join(problems)


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
    problems = mismatch_report(missing, unexpected, mismatched)
    if problems:
        raise PretrainedWeightsError(
            f"encoder weights {path!r} do not fit this model (check --encoder): {problems}")
    for variable in variables:
        variable.assign(arrays[variable.path].astype(variable.dtype))
    return len(variables)

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Finding and loading model weights, whatever form they come in.

Accepted by every script's ``--checkpoint_path``:

* a Keras file: ``*.keras`` (full model) or ``*.weights.h5``;
* a TF checkpoint prefix written by training (``.../ckpt-1200``, with ``.index`` beside it);
* a run folder (``{log_directory}/{model_name}``): its latest training checkpoint, else a
  ``model.keras`` / ``*.weights.h5`` inside it.

Each folder of weights may hold a ``bts_config.json`` saying how to build their model
(:func:`read_model_config`); ``bts_predict.load_model``, the one model loader, reads it.
"""
from __future__ import annotations

import os
import zipfile
from typing import Optional

import keras
import tensorflow as tf

# A run folder's file names live in utils.configs (TF-free: output names are made before TF starts).
from utils.configs import (ARGUMENTS_FILE, BEST_DIR, BEST_METRICS_FILE, KERAS_SUFFIXES,  # noqa: F401
                           MODEL_CONFIG_NAME, MODEL_FILE, BtsConfig, ConfigError)


class CheckpointError(ValueError):
    """A checkpoint path that cannot be used, with a one-line reason."""


def resolve_checkpoint(path: str) -> str:
    """The concrete file or TF checkpoint prefix that ``path`` designates."""
    if not path:
        raise CheckpointError("--checkpoint_path is empty; pass a .keras/.weights.h5 file, "
                              "a training checkpoint or a run folder")
    gfile = tf.io.gfile
    if path.endswith(KERAS_SUFFIXES):
        if not gfile.exists(path):
            raise CheckpointError(f"checkpoint {path!r} does not exist")
        return path
    if gfile.exists(path + ".index"):
        return path
    if gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        for name in (MODEL_FILE, "model.weights.h5"):
            candidate = os.path.join(path, name)
            if gfile.exists(candidate):
                return candidate
        keras_files = sorted(f for f in gfile.listdir(path) if f.endswith(KERAS_SUFFIXES))
        if keras_files:
            return os.path.join(path, keras_files[-1])
        raise CheckpointError(f"no checkpoint found in folder {path!r} (expected ckpt-N, "
                              "model.keras or *.weights.h5)")
    raise CheckpointError(f"checkpoint {path!r} does not exist")


def model_config_path(checkpoint: str) -> str:
    """Where the BtsConfig of ``checkpoint`` lives: ``bts_config.json`` in its folder (a run folder
    holds one for all its ``ckpt-N``; ``best/`` and a converted model's folder hold their own)."""
    folder = checkpoint if tf.io.gfile.isdir(checkpoint) else os.path.dirname(checkpoint)
    return os.path.join(folder, MODEL_CONFIG_NAME)


def read_model_config(checkpoint: str) -> Optional[BtsConfig]:
    """The BtsConfig saved beside ``checkpoint`` (a file, prefix or folder), None if there is none."""
    path = model_config_path(checkpoint)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            text = handle.read()
    except (tf.errors.OpError, OSError, UnicodeDecodeError) as err:
        raise damaged_checkpoint(path, err) from None
    try:
        return BtsConfig.from_json(text, path)
    except ConfigError as err:  # a value the model cannot be built with, named by its field
        raise CheckpointError(f"{path}: {err.field} {err}") from None
    except (ValueError, TypeError) as err:  # not JSON, unknown fields, a malformed DenseNet shape
        raise CheckpointError(f"{path}: {err}" if path not in str(err) else str(err)) from None


def write_model_config(folder: str, config: BtsConfig) -> str:
    """Write ``config`` as ``folder/bts_config.json`` (atomically); returns the path."""
    from utils.io import atomic_write_text

    path = os.path.join(folder, MODEL_CONFIG_NAME)
    atomic_write_text(path, config.to_json())
    return path


def latest_training_checkpoint(run_dir: str) -> Optional[str]:
    """The newest ``ckpt-N`` prefix in ``run_dir``, or None."""
    if not tf.io.gfile.isdir(run_dir):
        return None
    return tf.train.latest_checkpoint(run_dir)


def untracked_variables(root: tf.train.Checkpoint, model: keras.Model) -> list:
    """Paths of ``model`` variables that ``root`` would neither save nor restore."""
    reachable = {id(obj) for obj in tf.train.TrackableView(root).descendants()}
    return [v.path for v in model.weights
            if id(v) not in reachable and id(getattr(v, "value", v)) not in reachable]


def restore_strict(root: tf.train.Checkpoint, path: str, model: keras.Model) -> None:
    """Restore ``root`` from the TF checkpoint ``path``; every ``model`` variable or CheckpointError.

    ``assert_existing_objects_matched`` only checks objects the checkpoint graph reaches, so the
    variables it cannot reach are checked first: a restore never leaves a weight at its random
    initialisation without saying so. Values in the file that the model lacks (optimizer slots
    when evaluating) are fine.
    """
    missing = untracked_variables(root, model)
    if missing:
        raise CheckpointError(f"checkpoint {path!r}: {len(missing)} model variables are not "
                              f"tracked by tf.train.Checkpoint and would stay random "
                              f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    try:
        status = root.read(path)
    except (IndexError, tf.errors.OpError) as err:  # 'Read less bytes than requested', ...
        raise damaged_checkpoint(path, err) from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        unmatched = [v.path for v in model.weights if not _was_restored(v)]
        detail = (f"{len(unmatched)} model variables are not in it ({', '.join(unmatched[:4])}"
                  f"{', ...' if len(unmatched) > 4 else ''})" if unmatched
                  else str(err).strip().splitlines()[0][:300])
        raise CheckpointError(f"checkpoint {path!r} does not fit this model (check --encoder, "
                              f"--bts_size, --dataset): {detail}") from None
    status.expect_partial()


def damaged_checkpoint(path: str, err: BaseException) -> CheckpointError:
    """The one line for a checkpoint whose files cannot be read (truncated copy, full disk)."""
    message = (getattr(err, "message", None) or str(err)).strip()
    detail = message.splitlines()[0][:200] if message else type(err).__name__
    return CheckpointError(f"checkpoint {path!r} cannot be read: it is truncated or damaged "
                           f"({detail})")


def _was_restored(variable) -> bool:
    """Whether a restore reached ``variable`` (TF marks restored trackables with an update UID)."""
    inner = getattr(variable, "value", variable)
    return getattr(inner, "_update_uid", -1) >= 0 or getattr(variable, "_update_uid", -1) >= 0


def load_model_weights(model: keras.Model, path: str) -> str:
    """Load weights designated by ``path`` into ``model``; returns the resolved path.

    Raises CheckpointError (one line) if the path is missing or holds another architecture.
    """
    resolved = resolve_checkpoint(path)
    try:
        if resolved.endswith(KERAS_SUFFIXES):
            model.load_weights(resolved)
        else:
            restore_strict(tf.train.Checkpoint(model=model), resolved, model)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as err:  # truncated .keras / .weights.h5
        raise damaged_checkpoint(resolved, err) from None
    except (ValueError, AssertionError, tf.errors.OpError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {resolved!r} does not fit this model (check --encoder, --bts_size, "
            f"--dataset): {first[:300]}") from None
    return resolved

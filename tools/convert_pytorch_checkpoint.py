# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Convert an official BTS PyTorch checkpoint (model zoo ``model`` file, ``.pth``, ``.tar``) to Keras.

    python tools/convert_pytorch_checkpoint.py --pytorch_checkpoint models/bts_nyu_v2_pytorch_densenet161/model \
        --encoder densenet161_bts --dataset nyu --output_path models/bts_nyu_v2_pytorch_densenet161/model.keras

The source is a dict with key ``model`` (what the official training script saves) or a bare state
dict, keys with or without the ``module.`` prefix of DataParallel/DDP. The mapping is strict: every
Keras weight gets exactly one source tensor (name from ``bts_model.pytorch_key_for``), every source
tensor is used exactly once except the BN ``num_batches_tracked`` counters, and shapes must agree;
otherwise a one-line error lists the missing, unexpected and mismatched keys and nothing is written.
Conv kernels go (out, in, kh, kw) → (kh, kw, in, out); BN weight/bias/running_mean/running_var →
gamma/beta/moving_mean/moving_variance.

Output: a ``.keras`` model file by default. It carries the architecture config (encoder, nf,
max_depth, dataset) next to the weights, so it loads on its own (``keras.models.load_model``) as
well as through ``--checkpoint_path`` (``utils.checkpoints.load_model_weights``); a path ending in
``.weights.h5`` writes weights only. The model is built without a fixed input size, so the same
file serves 480×640 (NYU) and 352×1216 (KITTI).

PyTorch is needed only here, to unpickle the file; it is imported lazily.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOG = logging.getLogger("convert_pytorch_checkpoint")

MODULE_PREFIX = "module."
SKIPPED_SUFFIX = ".num_batches_tracked"  # BN step counters: no Keras counterpart
TORCH_INSTALL_HINT = ("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu "
                      "(CPU build; only the converters need it)")
# numpy objects that official training checkpoints may pickle next to the tensors (e.g. the
# best-eval step counters); allowed in addition to torch's own weights-only set.
_NUMPY_GLOBAL_NAMES = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                       "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
                       "numpy.ndarray", "numpy.dtype")


class ConversionError(ValueError):
    """A source file that cannot be converted, with a one-line reason."""


# --------------------------------------------------------------------------------------------
# Reading PyTorch files
# --------------------------------------------------------------------------------------------
def import_torch():
    """``torch``, or a one-line ConversionError telling how to install the CPU build."""
    try:
        import torch
    except ImportError:
        raise ConversionError(f"PyTorch is needed to read .pth files but is not installed: "
                              f"{TORCH_INSTALL_HINT}") from None
    return torch


def _numpy_safe_globals() -> List[tuple]:
    """(object, pickled name) pairs for the numpy globals in ``_NUMPY_GLOBAL_NAMES``."""
    import importlib

    pairs = []
    for name in _NUMPY_GLOBAL_NAMES:
        module_name, _, attribute = name.rpartition(".")
        try:
            pairs.append((getattr(importlib.import_module(module_name), attribute), name))
        except (ImportError, AttributeError):
            continue
    dtype_module = importlib.import_module("numpy.dtypes")
    for attribute in dir(dtype_module):
        if attribute.endswith("DType"):
            pairs.append((getattr(dtype_module, attribute), f"numpy.dtypes.{attribute}"))
    return pairs


def load_torch_file(path: str):
    """Unpickle ``path`` on the CPU in torch's weights-only mode (no arbitrary code runs).

    numpy arrays and scalars are allowed too (official checkpoints may hold some).
    """
    torch = import_torch()
    if not os.path.isfile(path):
        raise ConversionError(f"--pytorch_checkpoint {path!r} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConversionError(f"cannot read {path!r} as a PyTorch checkpoint: {first[:300]}") from None


def extract_state_dict(obj, source: str = "checkpoint") -> Dict[str, np.ndarray]:
    """The tensors of a checkpoint dict (``obj['model']``) or a bare state dict, as numpy arrays.

    The ``module.`` prefix is removed. Raises ConversionError if ``obj`` is neither.
    """
    torch = import_torch()
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{source} holds neither a state dict nor a dict with key 'model' "
                              f"(found {type(obj).__name__})")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ConversionError(f"{source} is not a state dict: entries {_preview(not_tensors)} are "
                              "not tensors (expected a bare state dict or a dict with key 'model')")
    state = {}
    for key, tensor in obj.items():
        name = key[len(MODULE_PREFIX):] if key.startswith(MODULE_PREFIX) else key
        if name in state:
            raise ConversionError(f"{source} has {name!r} both with and without the 'module.' prefix")
        state[name] = tensor.detach().cpu().float().numpy() if tensor.is_floating_point() \
            else tensor.detach().cpu().numpy()
    return state


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """State dict (numpy arrays, no ``module.`` prefix) of the PyTorch file ``path``."""
    return extract_state_dict(load_torch_file(path), source=repr(path))


# --------------------------------------------------------------------------------------------
# Strict mapping
# --------------------------------------------------------------------------------------------
def _preview(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def torch_to_keras(array: np.ndarray) -> np.ndarray:
    """Conv kernel (out, in, kh, kw) → (kh, kw, in, out); vectors unchanged."""
    return np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array


def is_skipped_key(key: str) -> bool:
    """Source entries with no Keras counterpart (BN ``num_batches_tracked`` counters)."""
    return key.endswith(SKIPPED_SUFFIX)


def assign_state_dict(model, state: Mapping[str, np.ndarray],
                      key_for: Optional[Callable[[str], str]] = None,
                      ignore: Callable[[str], bool] = is_skipped_key,
                      source: str = "checkpoint") -> int:
    """Copy ``state`` (PT key → array) into every weight of ``model``; returns the count.

    ``key_for(variable_path)`` names the source key of each Keras weight (default
    ``bts_model.pytorch_key_for``). Every weight must find its key with a compatible shape and
    every source key not ``ignore``d must be used exactly once; otherwise ConversionError lists
    the missing, unexpected and mismatched keys and no weight is changed.
    """
    if key_for is None:
        import bts_model

        key_for = bts_model.pytorch_key_for
    plan, missing, mismatched, users = [], [], [], {}
    for variable in model.weights:
        try:
            key = key_for(variable.path)
        except KeyError as err:
            raise ConversionError(f"Keras weight {variable.path!r} has no PyTorch name: {err}") \
                from None
        users.setdefault(key, []).append(variable.path)
        if key not in state:
            missing.append(key)
            continue
        value = torch_to_keras(state[key])
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(f"{key} {tuple(state[key].shape)} vs Keras {variable.path} "
                              f"{tuple(variable.shape)}")
            continue
        plan.append((variable, value))
    shared = [f"{key} ← {', '.join(paths)}" for key, paths in users.items() if len(paths) > 1]
    unexpected = [k for k in state if k not in users and not ignore(k)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_preview(mismatched, 4)}")
    if shared:
        problems.append(f"keys used twice: {_preview(shared, 4)}")
    if problems:
        raise ConversionError(f"{source} does not match this model (check --encoder, --bts_size): "
                              + "; ".join(problems))
    for variable, value in plan:
        variable.assign(value.astype(variable.dtype))
    return len(plan)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------
def save_model(model, path: str) -> None:
    """Save ``model`` to ``path`` (``.keras`` or ``.weights.h5``) atomically: temp name + rename."""
    import tensorflow as tf

    if not path.endswith((".keras", ".weights.h5")):
        raise ConversionError(f"--output_path {path!r} must end with .keras or .weights.h5")
    folder, base = os.path.split(path)
    if folder:
        tf.io.gfile.makedirs(folder)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{base}")  # keeps the suffix Keras needs
    try:
        if path.endswith(".keras"):
            model.save(tmp)
        else:
            model.save_weights(tmp)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def convert_checkpoint(source_path: str, output_path: str, config) -> int:
    """Read ``source_path``, build the model for ``config`` (a BtsConfig), fill it, save it.

    Returns the number of weights set.
    """
    import bts_model

    state = read_state_dict(source_path)  # before building: a bad file fails fast
    model = bts_model.build_bts_model(config)
    count = assign_state_dict(model, state, source=repr(source_path))
    skipped = sum(1 for k in state if is_skipped_key(k))
    LOG.info("set %d Keras weights (%d learnable parameters) from %d tensors; skipped %d "
             "num_batches_tracked", count, bts_model.count_params(model.trainable_weights),
             len(state), skipped)
    save_model(model, output_path)
    return count


def default_output_path(source_path: str) -> str:
    """``model.keras`` next to the source file."""
    return os.path.join(os.path.dirname(source_path) or ".", "model.keras")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from utils.arguments import parse_args
    from utils.pretrained import source_checkpoint_validator

    args = parse_args(groups=("model", "weights"), argv=argv,
                      description="Official BTS PyTorch checkpoint → Keras .keras model",
                      validate=source_checkpoint_validator("official BTS checkpoint file"))
    import bts_model

    output = args.output_path or default_output_path(args.pytorch_checkpoint)
    try:
        if args.encoder not in bts_model.DENSENET_CONFIGS:  # the official zoo's encoders we have
            raise ConversionError(f"--encoder {args.encoder!r}: official PyTorch BTS checkpoints "
                                  f"convert only to {', '.join(bts_model.DENSENET_CONFIGS)}")
        sizes = {} if args.bts_size is None else {"bts_size": args.bts_size}  # None: encoder's nf
        config = bts_model.BtsConfig(encoder=args.encoder, dataset=args.dataset,
                                     max_depth=args.max_depth, **sizes)
        count = convert_checkpoint(args.pytorch_checkpoint, output, config)
    except (ConversionError, ValueError, OSError) as err:  # ConversionError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"converted {args.pytorch_checkpoint} → {output} ({count} weights, encoder {args.encoder}, "
          f"dataset {args.dataset}, max_depth {config.resolved_max_depth():g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Convert an official BTS PyTorch checkpoint (model zoo ``model`` file, ``.pth``, ``.tar``) to Keras.

    python -m tools.convert_pytorch_checkpoint --pytorch_checkpoint models/bts_nyu_v2_pytorch_densenet161/model \
        --encoder densenet161_bts --dataset nyu --output_path models/bts_nyu_v2_pytorch_densenet161/model.keras

Every official encoder converts (``utils.encoders.OFFICIAL_ENCODERS``: densenet161/121_bts,
resnet50/101_bts, resnext50/101_bts, mobilenetv2_bts); the ``keras.applications`` ones
(``resnet50``, ``mobilenetv2``, ...) are other networks and are refused.

The source is a dict with key ``model`` (what the official training script saves) or a bare state
dict, keys with or without the ``module.`` prefix of DataParallel/DDP. The mapping is strict: every
Keras weight gets exactly one source tensor (name from :func:`pytorch_key_for`), every source
tensor is used exactly once except the BN ``num_batches_tracked`` counters (and, for the ResNets and
ResNeXts, torchvision's unused ImageNet classifier ``encoder.base_model.fc.*``), and shapes must agree;
otherwise a one-line error lists the missing, unexpected and mismatched keys and nothing is written.
Conv kernels go (out, in/groups, kh, kw) → (kh, kw, in/groups, out), depthwise ones (C, 1, kh, kw) →
(kh, kw, C, 1); BN weight/bias/running_mean/running_var → gamma/beta/moving_mean/moving_variance.

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
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from utils.encoders import ENCODER_PREFIX
from utils.pretrained import mismatch_report, preview_names

LOG = logging.getLogger("convert_pytorch_checkpoint")

MODULE_PREFIX = "module."
SKIPPED_SUFFIX = ".num_batches_tracked"  # BN step counters: no Keras counterpart
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
    from utils.optional import MissingRequirement, import_optional

    try:
        return import_optional("torch", "requirements-convert.txt")
    except MissingRequirement as err:
        raise ConversionError(f"reading .pth files needs PyTorch: {err}") from None


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
        raise ConversionError(f"{source} is not a state dict: entries {preview_names(not_tensors)} are "
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
# Keras ↔ PyTorch names (the map lives here, in the converter, not in the model)
# --------------------------------------------------------------------------------------------
# Keras layer path (``/``-joined, sub-layers included) → PT module path. Encoder layers
# ``encoder.X`` map to ``encoder.base_model.X`` (torchvision ``features`` names, unchanged).
PT_NAME_TABLE: Dict[str, str] = {
    "upconv5/conv": "decoder.upconv5.conv", "bn5": "decoder.bn5", "conv5": "decoder.conv5.0",
    "upconv4/conv": "decoder.upconv4.conv", "bn4": "decoder.bn4", "conv4": "decoder.conv4.0",
    "bn4_2": "decoder.bn4_2",
    **{f"daspp_{r}/{k}": f"decoder.daspp_{r}.atrous_conv.{v}"
       for r in (3, 6, 12, 18, 24)
       for k, v in (("first_bn", "first_bn"), ("conv1x1", "aconv_sequence.1"),
                    ("bn", "aconv_sequence.2"), ("conv3x3", "aconv_sequence.4"))
       if not (r == 3 and k == "first_bn")},
    "daspp_conv": "decoder.daspp_conv.0",
    "upconv3/conv": "decoder.upconv3.conv", "bn3": "decoder.bn3", "conv3": "decoder.conv3.0",
    "upconv2/conv": "decoder.upconv2.conv", "bn2": "decoder.bn2", "conv2": "decoder.conv2.0",
    "upconv1/conv": "decoder.upconv1.conv", "conv1": "decoder.conv1.0",
    "get_depth": "decoder.get_depth.0",
    # reduction heads: sub-layers inter_{i}_{o} → reduc.inter_{i}_{o}.0, handled by the rule below
}
PT_ENCODER_PREFIX = "encoder.base_model."  # PT BTS: the torchvision ``features`` module
_REDUCTION_HEADS = ("reduc8x8", "reduc4x4", "reduc2x2", "reduc1x1")
_VARIABLE_SUFFIX = {"kernel": "weight", "gamma": "weight", "beta": "bias",
                    "moving_mean": "running_mean", "moving_variance": "running_var"}


def pytorch_module_for(layer_path: str) -> str:
    """PT module path of the Keras layer path ``layer_path`` (e.g. ``daspp_6/conv1x1``)."""
    if layer_path.startswith(ENCODER_PREFIX):
        return PT_ENCODER_PREFIX + layer_path[len(ENCODER_PREFIX):]
    if layer_path in PT_NAME_TABLE:
        return PT_NAME_TABLE[layer_path]
    head, _, sub = layer_path.partition("/")
    if head in _REDUCTION_HEADS and sub:
        if sub.startswith("inter_") or sub == "final":
            return f"decoder.{head}.reduc.{sub}.0"
        if sub == "plane_params":
            return f"decoder.{head}.reduc.plane_params"
    raise KeyError(f"no PyTorch module is known for Keras layer {layer_path!r}")


def pytorch_key_for(variable_path: str) -> str:
    """PT state-dict key (without ``module.``) of a Keras variable path such as ``bn5/gamma``."""
    layer_path, _, leaf = variable_path.rpartition("/")
    return f"{pytorch_module_for(layer_path)}.{_VARIABLE_SUFFIX[leaf]}"


# --------------------------------------------------------------------------------------------
# Strict mapping
# --------------------------------------------------------------------------------------------
def torch_to_keras(array: np.ndarray, target_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Conv kernel (out, in/groups, kh, kw) → (kh, kw, in/groups, out); vectors unchanged.

    A depthwise kernel (C, 1, kh, kw) goes to Keras DepthwiseConv2D's (kh, kw, C, 1) when
    ``target_shape`` (the Keras variable's) is that shape.
    """
    if array.ndim != 4:
        return array
    out, per_group, kh, kw = array.shape
    if per_group == 1 and target_shape is not None and tuple(target_shape) == (kh, kw, out, 1):
        return np.transpose(array, (2, 3, 0, 1))
    return np.transpose(array, (2, 3, 1, 0))


def is_skipped_key(key: str) -> bool:
    """Source entries with no Keras counterpart (BN ``num_batches_tracked`` counters)."""
    return key.endswith(SKIPPED_SUFFIX)


# The official ResNet/ResNeXt encoders hold torchvision's whole network, ImageNet classifier
# included (2,049,000 parameters, counted in upstream's #Params); the forward pass skips it.
UNUSED_CLASSIFIER_KEYS = (PT_ENCODER_PREFIX + "fc.weight", PT_ENCODER_PREFIX + "fc.bias")


def skipped_keys_rule(encoder: str) -> Callable[[str], bool]:
    """The source keys an official checkpoint of ``encoder`` holds without a Keras counterpart."""
    from utils.encoders import RESNET_CONFIGS

    if encoder in RESNET_CONFIGS:
        return lambda key: is_skipped_key(key) or key in UNUSED_CLASSIFIER_KEYS
    return is_skipped_key


def assign_state_dict(model, state: Mapping[str, np.ndarray],
                      key_for: Callable[[str], str] = pytorch_key_for,
                      ignore: Callable[[str], bool] = is_skipped_key,
                      source: str = "checkpoint") -> int:
    """Copy ``state`` (PT key → array) into every weight of ``model``; returns the count.

    ``key_for(variable_path)`` names the source key of each Keras weight (default
    :func:`pytorch_key_for`). Every weight must find its key with a compatible shape and
    every source key not ``ignore``d must be used exactly once; otherwise ConversionError lists
    the missing, unexpected and mismatched keys and no weight is changed.
    """
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
        value = torch_to_keras(state[key], tuple(variable.shape))
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(f"{key} {tuple(state[key].shape)} vs Keras {variable.path} "
                              f"{tuple(variable.shape)}")
            continue
        plan.append((variable, value))
    shared = [f"{key} ← {', '.join(paths)}" for key, paths in users.items() if len(paths) > 1]
    unexpected = [k for k in state if k not in users and not ignore(k)]
    problems = mismatch_report(missing, unexpected, mismatched, shared)
    if problems:
        raise ConversionError(f"{source} does not match this model (check --encoder, --bts_size): "
                              + problems)
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
    skipped = skipped_keys_rule(config.encoder)
    count = assign_state_dict(model, state, ignore=skipped, source=repr(source_path))
    counters = sum(1 for k in state if is_skipped_key(k))
    unused = sorted(k for k in state if skipped(k) and not is_skipped_key(k))
    LOG.info("set %d Keras weights (%d learnable parameters) from %d tensors; skipped %d "
             "num_batches_tracked%s", count, bts_model.count_params(model.trainable_weights),
             len(state), counters, f" and the unused classifier ({', '.join(unused)})" if unused else "")
    save_model(model, output_path)
    return count


def default_output_path(source_path: str) -> str:
    """``model.keras`` next to the source file."""
    from utils.checkpoints import MODEL_FILE

    return os.path.join(os.path.dirname(source_path) or ".", MODEL_FILE)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from utils.arguments import check_input_paths, model_config, parse_args
    from utils.pretrained import official_encoder_problem, source_checkpoint_validator
    from utils.quiet import quiet_tensorflow

    args = parse_args(groups=("model", "weights"), argv=argv,
                      description="Official BTS PyTorch checkpoint → Keras .keras model",
                      validate=source_checkpoint_validator("official BTS checkpoint file"))
    quiet_tensorflow(args.verbose)
    output = args.output_path or default_output_path(args.pytorch_checkpoint)
    try:  # the cheap checks first: the model is built (TensorFlow starts) only then
        problem = check_input_paths(args, files=("pytorch_checkpoint",))
        if problem:
            raise ConversionError(problem)
        problem = official_encoder_problem(args.encoder, "official PyTorch BTS checkpoints")
        if problem:
            raise ConversionError(problem)
        config = model_config(args)
        count = convert_checkpoint(args.pytorch_checkpoint, output, config)
    except (ConversionError, ValueError, OSError) as err:  # ConversionError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"converted {args.pytorch_checkpoint} → {output} ({count} weights, encoder {args.encoder}, "
          f"dataset {args.dataset}, max_depth {config.max_depth:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Depth prediction on any image: one object holding a loaded BTS model and all pre/post-processing.

Used by ``bts_test.py`` (evaluation and ``--image_path`` prediction) and by the web demo.

Any size: the network needs H and W divisible by 32 (the encoder stride). We **pad** rather than
resize: padding keeps every original pixel at its original position, so the focal length (and
KITTI's focal scaling of the output, spec §1.9) and the camera intrinsics stay valid, and no
interpolation blurs depth edges. The pad (< 32 px per side pair, split evenly between the two
sides so the principal point stays centred) replicates the border pixels ('edge' mode, defined for
any image size, unlike reflection) and is cut away from the prediction, which therefore comes back
at exactly the original size.

KITTI with ``do_kb_crop``: an image at least 352×1216 is cut to the KITTI-benchmark crop
(bottom-aligned, centred; spec §5.4), predicted, and the prediction is pasted back into a zero
canvas of the original size (zeros = not predicted), the way the official evaluation does.

Thread safety: calls into the model are serialised by an internal lock, so one predictor may be
shared by several threads (the demo also serialises its calls); numpy pre/post-processing runs
outside the lock.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

import bts_dataloader  # the data pipeline owns the one normalisation formula
import bts_model
from utils.checkpoints import CheckpointError, load_model_weights, resolve_checkpoint
from utils.datasets import get_dataset_facts, kb_crop_offsets
from utils.encoders import DEFAULT_ENCODER
from utils.metrics import average_metrics, evaluate_image

LOGGER = logging.getLogger(__name__)

ENCODER_STRIDE = 32
FocalLike = Union[None, float, Sequence[float], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the network input came from in the original image, to map the prediction back.

    The network saw ``image[crop_top:crop_top+crop_height, crop_left:crop_left+crop_width]``
    padded by ``pads`` = (top, bottom, left, right) pixels.
    """

    height: int
    width: int
    crop_top: int
    crop_left: int
    crop_height: int
    crop_width: int
    pads: Tuple[int, int, int, int]

    @property
    def is_cropped(self) -> bool:
        return (self.crop_height, self.crop_width) != (self.height, self.width)


def padding_to_multiple(height: int, width: int, multiple: int = ENCODER_STRIDE
                        ) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) padding making (H, W) divisible by ``multiple``, centred."""
    extra_h = -height % multiple
    extra_w = -width % multiple
    return extra_h // 2, extra_h - extra_h // 2, extra_w // 2, extra_w - extra_w // 2


def pad_batch(images: np.ndarray, pads: Tuple[int, int, int, int]) -> np.ndarray:
    """Edge-pad (B, H, W, C) images by (top, bottom, left, right)."""
    top, bottom, left, right = pads
    if not any(pads):
        return images
    return np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="edge")


def unpad_batch(depth: np.ndarray, pads: Tuple[int, int, int, int]) -> np.ndarray:
    """Cut (top, bottom, left, right) padding from (B, H, W, ...) arrays."""
    top, bottom, left, right = pads
    return depth[:, top:depth.shape[1] - bottom, left:depth.shape[2] - right]


def paste_into_canvas(crop: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    """A zero float32 (height, width) canvas with ``crop`` (h, w) pasted at (top, left)."""
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return canvas


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB image; grayscale (H, W) and RGBA are converted."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def _input_facts_of(model: keras.Model) -> Tuple[str, str]:
    """(encoder, preprocessing) recorded in the model's final layer; '' where not recorded."""
    try:
        layer = model.get_layer("depth")
    except ValueError:
        return "", ""
    return getattr(layer, "encoder", "") or "", getattr(layer, "preprocessing", "") or ""


def _depth_facts_of(model: keras.Model) -> Tuple[Optional[float], Optional[bool]]:
    """(max_depth, scale_by_focal) of a BTS model's final ``depth`` layer, None if absent."""
    try:
        layer = model.get_layer("depth")
    except ValueError:
        return None, None
    return getattr(layer, "max_depth", None), getattr(layer, "scale_by_focal", None)


class DepthPredictor:
    """A built and loaded BTS model plus everything around it: normalisation, padding, KB crop.

    Args:
        model: a BTS ``keras.Model`` with inputs {"image": (B,H,W,3), "focal": (B,)} and output
            (B,H,W,1) metres; spatial dims may be None (any size divisible by 32).
        dataset: 'nyu' or 'kitti' (default focal, KB crop geometry).
        encoder: encoder name; selects the input normalisation (``EncoderSpec.preprocessing``).
        post_process: average with the prediction on the horizontally flipped image (PT has no
            test-time post-processing, so this is off by default).
        do_kb_crop: KITTI benchmark crop for images of at least 352×1216 (``predict_image``).
    """

    def __init__(self, model: keras.Model, dataset: str, *, encoder: str = "densenet161_bts",
                 post_process: bool = False, do_kb_crop: bool = False):
        self.model = model
        self.dataset = dataset
        self.facts = get_dataset_facts(dataset)
        # A model that records its encoder's normalisation (FinalDepth config) is fed that way.
        carried_encoder, carried_preprocessing = _input_facts_of(model)
        self.encoder = carried_encoder or encoder
        self.preprocessing = carried_preprocessing or bts_model.encoder_spec(encoder).preprocessing
        self.post_process = bool(post_process)
        self.do_kb_crop = bool(do_kb_crop) and self.facts.kb_crop_size is not None
        max_depth, _ = _depth_facts_of(model)
        self.max_depth = float(max_depth if max_depth is not None else self.facts.max_depth)
        self.default_focal = float(self.facts.default_focal)
        self._lock = threading.Lock()
        self._depth_fn = self._compile(model)
        self._maps_model: Optional[keras.Model] = None
        self._maps_fn = None

    # ---------------------------------------------------------------------------------------
    # Construction
    # ---------------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, args, *, allow_untrained: bool = False) -> "DepthPredictor":
        """Build the model from parsed arguments and load ``args.checkpoint_path``.

        A ``.keras`` file carries its own architecture and is loaded as saved (its input size is
        relaxed to any size); weights files and training checkpoints are loaded into a model built
        from ``--encoder/--dataset/--max_depth/--bts_size``. No checkpoint raises CheckpointError
        unless ``allow_untrained`` (random weights, with a loud warning).
        """
        checkpoint = getattr(args, "checkpoint_path", "") or ""
        if not checkpoint:
            if not allow_untrained:
                raise CheckpointError("--checkpoint_path is empty; pass a .keras/.weights.h5 file, "
                                      "a training checkpoint or a run folder")
            LOGGER.warning("NO CHECKPOINT: predicting with an UNTRAINED, randomly initialised "
                           "model; the depth maps are meaningless")
            model = build_model_any_size(args)
        else:
            resolved = resolve_checkpoint(checkpoint)
            if resolved.endswith(".keras"):
                model = load_keras_bts_model(resolved, args)
            else:
                model = build_model_any_size(args)
                load_model_weights(model, resolved)
            LOGGER.info("loaded weights from %s", resolved)
        return cls(model, args.dataset, encoder=args.encoder,
                   post_process=getattr(args, "post_process", False),
                   do_kb_crop=getattr(args, "do_kb_crop", False))

    @staticmethod
    def _compile(model: keras.Model):
        """One traced graph for every batch size and image size (fixed, fully dynamic signature)."""
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="image"),
                     tf.TensorSpec([None], tf.float32, name="focal")]

        def forward(image, focal):
            return model({"image": image, "focal": focal}, training=False)

        return tf.function(forward, input_signature=signature, reduce_retracing=True)

    # ---------------------------------------------------------------------------------------
    # Pre-processing
    # ---------------------------------------------------------------------------------------
    def normalize(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 RGB (..., H, W, 3) → float32 network input (the encoder's normalisation)."""
        image01 = np.asarray(images_uint8, dtype=np.float32) / 255.0
        return np.asarray(bts_dataloader.normalize_image(image01, self.preprocessing), np.float32)

    def placement_for(self, height: int, width: int) -> Placement:
        """Crop (KITTI KB crop when enabled and the image is large enough) and padding."""
        crop = (0, 0, height, width)
        if self.do_kb_crop:
            crop_h, crop_w = self.facts.kb_crop_size
            if height >= crop_h and width >= crop_w:
                top, left = kb_crop_offsets(height, width)
                crop = (top, left, crop_h, crop_w)
            else:
                LOGGER.info("image %dx%d is smaller than the KB crop %dx%d: not cropped",
                            height, width, crop_h, crop_w)
        top, left, crop_h, crop_w = crop
        return Placement(height, width, top, left, crop_h, crop_w, padding_to_multiple(crop_h, crop_w))

    def focal_vector(self, focal: FocalLike, batch: int) -> np.ndarray:
        """(B,) float32 focal lengths in px; None → the dataset default."""
        if focal is None:
            return np.full((batch,), self.default_focal, np.float32)
        values = np.broadcast_to(np.asarray(focal, np.float32).reshape(-1), (batch,))
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"focal length must be a positive number of pixels, got {focal}")
        return np.array(values, np.float32)

    # ---------------------------------------------------------------------------------------
    # Prediction
    # ---------------------------------------------------------------------------------------
    def predict_batch(self, images: np.ndarray, focal: FocalLike = None) -> np.ndarray:
        """Depth (B, H, W) float32 metres for normalised images (B, H, W, 3) of any H, W.

        Inputs come from :meth:`normalize` or the data pipeline (already normalised); they are
        edge-padded to a multiple of 32 and the padding is cut from the prediction.
        """
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected normalised images (B, H, W, 3), got shape {images.shape}")
        pads = padding_to_multiple(images.shape[1], images.shape[2])
        padded = pad_batch(images, pads)
        focal_px = self.focal_vector(focal, images.shape[0])
        depth = self._run(self._depth_fn, padded, focal_px)
        if self.post_process:
            flipped = self._run(self._depth_fn, np.ascontiguousarray(padded[:, :, ::-1]), focal_px)
            depth = 0.5 * (depth + flipped[:, :, ::-1])  # (B, H, W, 1)
        return np.ascontiguousarray(unpad_batch(depth, pads)[..., 0], dtype=np.float32)

    def predict_maps(self, images: np.ndarray, focal: FocalLike = None) -> Dict[str, np.ndarray]:
        """Final depth and the LPG maps, each (B, H, W) float32, for normalised images.

        Keys: ``depth`` (metres) and ``depth_8x8_scaled``, ``depth_4x4_scaled``,
        ``depth_2x2_scaled``, ``reduc1x1`` (units of max_depth, see bts_model). No flip averaging.
        """
        if self._maps_fn is None:
            self._maps_model = bts_model.build_lpg_maps_model(self.model)
            self._maps_fn = self._compile(self._maps_model)
        images = np.asarray(images, np.float32)
        pads = padding_to_multiple(images.shape[1], images.shape[2])
        outputs = self._run(self._maps_fn, pad_batch(images, pads),
                            self.focal_vector(focal, images.shape[0]))
        return {name: np.ascontiguousarray(unpad_batch(np.asarray(value), pads)[..., 0], np.float32)
                for name, value in outputs.items()}

    def predict_image(self, image: np.ndarray, focal: Optional[float] = None) -> np.ndarray:
        """Depth (H, W) float32 metres for one uint8 RGB image (H, W, 3) of any size.

        ``focal`` in px (None: the dataset default; it only matters for KITTI's output scaling).
        """
        image = as_rgb_uint8(image)
        placement = self.placement_for(*image.shape[:2])
        network_input = self.normalize(self.crop(image, placement))[None]
        depth = self.predict_batch(network_input, focal)[0]
        return self.restore(depth, placement)

    @staticmethod
    def crop(image: np.ndarray, placement: Placement) -> np.ndarray:
        """The part of ``image`` the network sees (before padding)."""
        p = placement
        return image[p.crop_top:p.crop_top + p.crop_height, p.crop_left:p.crop_left + p.crop_width]

    @staticmethod
    def restore(depth: np.ndarray, placement: Placement) -> np.ndarray:
        """Map a crop-size prediction back to the original size (zeros outside a KB crop)."""
        if not placement.is_cropped:
            return depth
        return paste_into_canvas(depth, placement.height, placement.width,
                                 placement.crop_top, placement.crop_left)

    def _run(self, fn, images: np.ndarray, focal_px: np.ndarray):
        with self._lock:
            outputs = fn(tf.constant(images), tf.constant(focal_px))
        if isinstance(outputs, dict):
            return {name: value.numpy() for name, value in outputs.items()}
        return outputs.numpy()


# -------------------------------------------------------------------------------------------
# Model construction / loading
# -------------------------------------------------------------------------------------------
def build_model_any_size(args) -> keras.Model:
    """BTS from parsed arguments with free spatial dims (any multiple of 32)."""
    config = bts_model.BtsConfig.from_args(args, input_height=None, input_width=None)
    return bts_model.build_bts_model(config)


def load_keras_bts_model(path: str, args) -> keras.Model:
    """Load a full ``.keras`` BTS model, relax its input size, check it suits ``args.dataset``."""
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - any failure to deserialise is a bad checkpoint
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path!r} is not a loadable BTS .keras model: {first}") \
            from None
    input_names = sorted(getattr(t, "name", "") for t in model.inputs)
    if input_names != ["focal", "image"]:
        raise CheckpointError(f"checkpoint {path!r} is not a BTS model (inputs {input_names}, "
                              "expected image and focal)")
    encoder, preprocessing = _input_facts_of(model)
    wanted_encoder = getattr(args, "encoder", "") or encoder
    # The file knows its encoder: only an explicit, different --encoder is a conflict.
    if encoder and wanted_encoder not in (encoder, DEFAULT_ENCODER):
        raise CheckpointError(f"checkpoint {path!r} holds a {encoder} model (input normalisation "
                              f"{preprocessing!r}) but --encoder is {wanted_encoder}; pass "
                              f"--encoder {encoder}")
    max_depth, scale_by_focal = _depth_facts_of(model)
    facts = get_dataset_facts(args.dataset)
    wanted_depth = float(getattr(args, "max_depth", None) or facts.max_depth)
    if scale_by_focal is not None and scale_by_focal != facts.scale_output_by_focal:
        raise CheckpointError(f"checkpoint {path!r} was built for the other dataset "
                              f"(focal scaling {scale_by_focal}); check --dataset {args.dataset}")
    if max_depth is not None and abs(max_depth - wanted_depth) > 1e-6:
        raise CheckpointError(f"checkpoint {path!r} has max_depth {max_depth:g} but --max_depth "
                              f"is {wanted_depth:g}")
    return _with_free_input_size(model)


def _with_free_input_size(model: keras.Model) -> keras.Model:
    """The same functional model with image input (None, None, None, 3); weights shared by copy."""
    image_input = next(t for t in model.inputs if t.name == "image")
    if tuple(image_input.shape[1:3]) == (None, None):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer" and layer["config"].get("name") == "image":
            layer["config"]["batch_shape"] = [None, None, None, 3]
    relaxed = keras.Model.from_config(config)
    relaxed.set_weights(model.get_weights())
    return relaxed


# ---- the one evaluation loop (was bts_predict.py) ----
def evaluate_samples(model: keras.Model, args: argparse.Namespace, samples: Sequence,
                     predictor: Optional[DepthPredictor] = None) -> Tuple[Dict[str, float], List]:
    """(mean metrics, per-image metrics or None for images without valid ground truth).

    Frames of any size: ``predictor`` (default: one around ``model``) edge-pads each frame to a
    multiple of 32 and cuts the padding from the depth, exactly as ``bts_test.py`` predicts.
    """
    eval_args = argparse.Namespace(**{**vars(args), "batch_size": 1})
    dataset = bts_dataloader.make_dataset(eval_args, "eval", samples=samples)
    predictor = predictor or DepthPredictor(model, args.dataset, encoder=args.encoder)
    per_image = []
    batches = iter(dataset)
    while True:
        with bts_dataloader.data_errors(samples):  # a bad file: one line naming its list line
            batch = next(batches, None)
        if batch is None:
            break
        if not bool(batch["has_depth"][0]):
            per_image.append(None)
            continue
        pred = predictor.predict_batch(batch["image"].numpy(), batch["focal"].numpy())[0]
        gt = batch["depth"].numpy()[0, ..., 0]
        per_image.append(evaluate_image(
            gt, pred, args.min_depth_eval, args.max_depth_eval, args.dataset,
            eigen_crop=args.eigen_crop, garg_crop=args.garg_crop,
            do_kb_crop=args.do_kb_crop and args.dataset == "kitti"))
    return average_metrics(per_image), per_image


def online_evaluator() -> Callable:
    """An ``evaluate_fn(model, args, samples) -> metrics`` for the trainer (one compiled predict)."""
    cache: Dict[int, DepthPredictor] = {}

    def evaluate(model: keras.Model, args: argparse.Namespace, samples: Sequence) -> Dict[str, float]:
        key = id(model)
        if key not in cache:
            cache[key] = DepthPredictor(model, args.dataset, encoder=args.encoder)
        metrics, _ = evaluate_samples(model, args, samples, cache[key])
        return metrics

    return evaluate

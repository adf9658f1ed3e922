# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The one predictor, the one model loader and the one evaluation loop.

* :class:`DepthPredictor`: a loaded BTS model and all pre/post-processing;
  ``predict_image(rgb, focal, with_maps=...)`` serves ``bts_test.py --image_path``, the web demo and
  ``bts_export.py``'s parity reference; ``predict_batch`` (the same forward pass) takes the data
  pipeline's normalised frames.
* :func:`load_model`: a run folder, ``ckpt-N``, ``best/``, ``model.keras`` or ``.weights.h5`` to a
  model for any input size, rebuilt from the configuration the checkpoint carries.
* :func:`predict_samples` / :func:`evaluate_samples`: the evaluation loop of ``bts_test.py``'s list
  mode and of online validation (:func:`online_evaluator`), so both score the same weights alike.

Any size: the network needs H and W divisible by 32 (the encoder stride). We **pad** rather than
resize: padding keeps every original pixel at its original position, so the focal length (and
KITTI's focal scaling of the output, design §1.9) and the camera intrinsics stay valid, and no
interpolation blurs depth edges. The pad (< 32 px per side pair, split evenly between the two
sides so the principal point stays centred) replicates the border pixels ('edge' mode, defined for
any image size, unlike reflection) and is cut away from the prediction, which therefore comes back
at exactly the original size.

KITTI with ``do_kb_crop``: an image at least 352×1216 is cut to the KITTI-benchmark crop
(bottom-aligned, centred; design §5.4), predicted, and the prediction is pasted back into a zero
canvas of the original size (zeros = not predicted), the way the official evaluation does.

Thread safety: calls into the model are serialised by an internal lock, so one predictor may be
shared by several threads (the demo also serialises its calls); numpy pre/post-processing runs
outside the lock.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Collection, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

import bts_dataloader  # the data pipeline owns the one normalisation formula
import bts_model
from utils.checkpoints import (CheckpointError, load_model_weights, model_config_path,
                               read_model_config, resolve_checkpoint)
from utils.configs import BtsConfig, ConfigError, EvalConfig, PipelineConfig
from utils.datasets import get_dataset_facts, kb_crop_offsets, paste_kb_crop
from utils.encoders import DEFAULT_ENCODER, DENSENET_CONFIGS, encoder_facts
from utils.image_io import quantize_depth
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


def input_normalization(model: keras.Model, encoder: str = DEFAULT_ENCODER,
                        normalization: Optional[str] = None) -> str:
    """How ``model`` expects its input normalised: as its final layer records (the encoder it
    was trained with), else ``normalization``, else ``encoder``'s (older ``.keras`` files)."""
    return _input_facts_of(model)[1] or normalization or encoder_facts(encoder).normalization


class DepthPredictor:
    """A built and loaded BTS model plus everything around it: normalisation, padding, KB crop.

    Args:
        model: a BTS ``keras.Model`` with inputs {"image": (B,H,W,3), "focal": (B,)} and output
            (B,H,W,1) metres; spatial dims may be None (any size divisible by 32).
        dataset: 'nyu' or 'kitti' (default focal, KB crop geometry).
        encoder: encoder name (``load_model``'s ``BtsConfig.encoder``); its normalisation feeds a
            model that records none (older ``.keras`` files).
        normalization: the input normalisation mode for such a model, instead of the encoder's.
        post_process: average with the prediction on the horizontally flipped image (PT has no
            test-time post-processing, so this is off by default).
        do_kb_crop: KITTI benchmark crop for images of at least 352×1216 (``predict_image``).
    """

    def __init__(self, model: keras.Model, dataset: str, *, encoder: str = DEFAULT_ENCODER,
                 normalization: Optional[str] = None, post_process: bool = False,
                 do_kb_crop: bool = False):
        self.model = model
        self.dataset = dataset
        self.facts = get_dataset_facts(dataset)
        # What the loaded model records of itself wins over the caller's names (the flags').
        self.model_config: Optional[BtsConfig] = bts_model.model_config_of(model)  # None: older file
        self.encoder = ((self.model_config and _encoder_name(self.model_config))
                        or _input_facts_of(model)[0] or encoder)
        self.preprocessing = input_normalization(model, encoder, normalization)
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
    def predict_batch(self, images: np.ndarray, focal: FocalLike = None, *,
                      with_maps: bool = False):
        """Depth (B, H, W) float32 metres for normalised images (B, H, W, 3) of any H, W.

        Inputs come from :meth:`normalize` or the data pipeline (already normalised); they are
        edge-padded to a multiple of 32 and the padding is cut from the prediction.
        ``with_maps``: ``(depth, maps)``, maps the LPG maps of :meth:`predict_maps` (without
        ``depth``); the depth is then the maps model's own unless ``post_process`` averages.
        """
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected normalised images (B, H, W, 3), got shape {images.shape}")
        if with_maps:
            maps = self.predict_maps(images, focal)
            depth = maps.pop("depth")
            return (self.predict_batch(images, focal) if self.post_process else depth), maps
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

    def predict_image(self, image: np.ndarray, focal: Optional[float] = None, *,
                      with_maps: bool = False):
        """Depth (H, W) float32 metres for one uint8 RGB image (H, W, 3) of any size.

        ``focal`` in px (None: the dataset default; it only matters for KITTI's output scaling).
        ``with_maps``: ``(depth, maps)``, the LPG maps (see :meth:`predict_maps`) mapped back to
        the image's size like the depth.
        """
        image = as_rgb_uint8(image)
        placement = self.placement_for(*image.shape[:2])
        network_input = self.normalize(self.crop(image, placement))[None]
        if not with_maps:
            return self.restore(self.predict_batch(network_input, focal)[0], placement)
        depth, maps = self.predict_batch(network_input, focal, with_maps=True)
        return (self.restore(depth[0], placement),
                {name: self.restore(value[0], placement) for name, value in maps.items()})

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
        return paste_kb_crop(depth, placement.height, placement.width)  # the only crop is KB

    def _run(self, fn, images: np.ndarray, focal_px: np.ndarray):
        with self._lock:
            outputs = fn(tf.constant(images), tf.constant(focal_px))
        if isinstance(outputs, dict):
            return {name: value.numpy() for name, value in outputs.items()}
        return outputs.numpy()


# -------------------------------------------------------------------------------------------
# The one model loader
# -------------------------------------------------------------------------------------------
def load_model(checkpoint: str, flags: BtsConfig, *, explicit: Collection[str] = (),
               allow_untrained: bool = False,
               model_ops: bts_model.ModelOps = bts_model.DEFAULT_MODEL_OPS
               ) -> Tuple[keras.Model, BtsConfig]:
    """A BTS model for any input size with the weights of ``checkpoint``, and its BtsConfig.

    ``checkpoint``: a run folder, ``ckpt-N`` prefix, ``best/``, ``.keras`` or ``.weights.h5``
    (``utils.checkpoints.resolve_checkpoint``). The model is rebuilt from what the checkpoint
    records: a ``.keras`` file's own config, else the ``bts_config.json`` beside it; ``flags``
    (the config the command line describes) serves checkpoints that record none. A recorded
    config must agree with the ``explicit`` fields of ``flags`` (those the user set) and with
    its focal scaling (the dataset's), else ConfigError naming the field; the other fields come
    from the checkpoint. Empty ``checkpoint``: CheckpointError, or with ``allow_untrained`` a
    randomly initialised model built from ``flags`` (with a loud warning). Models built here
    compute with ``model_ops``; a ``.keras`` file keeps the ops it was saved with
    (``bts_trainer.model_in_global_policy`` rebuilds it with others).
    """
    if not checkpoint:
        if not allow_untrained:
            raise CheckpointError("--checkpoint_path is empty; pass a .keras/.weights.h5 file, "
                                  "a training checkpoint or a run folder")
        LOGGER.warning("NO CHECKPOINT: an UNTRAINED, randomly initialised model; its depth "
                       "maps are meaningless")
        config = _for_prediction(flags)
        return bts_model.build_bts_model(config, model_ops), config
    resolved = resolve_checkpoint(checkpoint)
    if resolved.endswith(".keras"):
        model, config = _load_keras_file(resolved, flags, explicit)
    else:
        recorded = read_model_config(resolved)
        config = _for_prediction(flags if recorded is None else _agreeing(
            recorded, flags, explicit, model_config_path(resolved)))
        model = bts_model.build_bts_model(config, model_ops)
        load_model_weights(model, resolved)
    LOGGER.info("loaded weights from %s", resolved)
    return model, config


def _for_prediction(config: BtsConfig) -> BtsConfig:
    """The config rebuilt for inference: any input size, no ImageNet download (weights follow)."""
    return dataclasses.replace(config, input_height=None, input_width=None, imagenet_weights=False)


def _encoder_name(config: BtsConfig) -> str:
    """The encoder a config builds: a DenseNet shape override is named by the entry it equals."""
    if config.densenet is None:
        return config.encoder
    return next((name for name, shape in DENSENET_CONFIGS.items() if shape == config.densenet),
                config.encoder)


def _differ(given, saved) -> bool:
    """Whether a flag's value and a recorded one differ (numbers up to JSON round-off)."""
    if isinstance(given, (int, float)) and isinstance(saved, (int, float)):
        return abs(float(given) - float(saved)) > 1e-6
    return given != saved


def _agreeing(recorded: BtsConfig, flags: BtsConfig, explicit: Collection[str],
              source: str) -> BtsConfig:
    """``recorded`` once checked against the fields the user set (ConfigError on a conflict)."""
    for field in sorted(set(explicit)):
        given = getattr(flags, field)
        saved = _encoder_name(recorded) if field == "encoder" else getattr(recorded, field)
        if _differ(given, saved):
            given, saved = (f"{v:g}" if isinstance(v, float) else v for v in (given, saved))
            raise ConfigError(field, f"is {given}, but {source} records {field} {saved}; leave "
                                     f"the flag out (the checkpoint knows its model) or give {saved}")
    if (recorded.focal_normaliser is None) != (flags.focal_normaliser is None):
        raise ConfigError("dataset", f"does not suit {source}: its model was built for the other "
                                     f"dataset (depth scaled by focal: {recorded.scale_by_focal})")
    return recorded


def _load_keras_file(path: str, flags: BtsConfig, explicit: Collection[str]
                     ) -> Tuple[keras.Model, BtsConfig]:
    """A full ``.keras`` BTS model, checked against the flags, its input size relaxed."""
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
    try:
        recorded = bts_model.model_config_of(model) or _config_of_older_file(model, flags)
    except ValueError as err:  # a recorded config this code cannot read
        raise CheckpointError(f"checkpoint {path!r}: {err}") from None
    config = _agreeing(recorded, flags, explicit, f"{path} (its saved config)")
    return _with_free_input_size(model), _for_prediction(config)


def _config_of_older_file(model: keras.Model, flags: BtsConfig) -> BtsConfig:
    """What a ``.keras`` file from before recorded configs says of itself (its final layer's
    encoder, max depth and focal scaling); the rest from ``flags``."""
    encoder, _ = _input_facts_of(model)
    max_depth, scale_by_focal = _depth_facts_of(model)
    values = {"encoder": encoder or flags.encoder}
    if max_depth is not None:
        values["max_depth"] = float(max_depth)
    if scale_by_focal is not None:
        layer = model.get_layer("depth")
        values["focal_normaliser"] = float(layer.focal_normaliser) if scale_by_focal else None
    return dataclasses.replace(flags, **values)


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


# -------------------------------------------------------------------------------------------
# The one evaluation loop: bts_test.py's list mode and online validation
# -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SamplePrediction:
    """One listed frame, predicted and (where it has ground truth) scored."""

    index: int  # position in the samples
    depth: np.ndarray  # (H, W) float32 metres as predicted; the 352×1216 KB crop with do_kb_crop
    maps: Optional[Dict[str, np.ndarray]]  # LPG maps (with_maps), each like depth
    has_gt: bool  # the frame has ground truth and was scored
    metrics: Optional[Dict[str, float]]  # None: no ground truth, or no valid pixel in the crop
    seconds: float  # model time: that of the call that predicted it, divided by its frames
    frames: int = 1  # frames predicted in that call (bts_test.py --batch_size)


def quantization_note(evaluation: EvalConfig) -> str:
    """The line saying which depth the metrics score (printed by bts_test.py, logged online)."""
    if evaluation.quantize:
        scale = get_dataset_facts(evaluation.dataset).depth_scale
        return f"metrics on predictions quantised to the 16-bit PNG grid (1/{scale:g} m)"
    return "metrics on float32 predictions, not quantised to the 16-bit PNG grid"


def protocol_note(evaluation: EvalConfig) -> str:
    """The line naming a non-default evaluation protocol ('' for the offline one, and where the
    official online one scores identically: NYU, KITTI without the KB crop)."""
    if evaluation.protocol == "offline" or not evaluation.do_kb_crop:
        return ""
    return ("official online protocol (upstream bts_main.py online_eval): ground truth cut to the "
            "352x1216 KB crop, crop fractions of the crop; not the published numbers' protocol")


def score_prediction(gt_m: np.ndarray, depth_m: np.ndarray, evaluation: EvalConfig
                     ) -> Optional[Dict[str, float]]:
    """Metrics of one prediction against its full-size ground truth (utils.metrics.evaluate_image,
    under ``evaluation.protocol``); with ``evaluation.quantize`` the depth is scored as its raw
    PNG reads back."""
    if evaluation.quantize:
        depth_m = quantize_depth(depth_m, get_dataset_facts(evaluation.dataset).depth_scale)
    return evaluate_image(gt_m, depth_m, evaluation.min_depth_eval, evaluation.max_depth_eval,
                          evaluation.dataset, eigen_crop=evaluation.eigen_crop,
                          garg_crop=evaluation.garg_crop, do_kb_crop=evaluation.do_kb_crop,
                          protocol=evaluation.protocol)


def _pipeline_frames(data: tf.data.Dataset, samples: Sequence) -> Iterator[Dict[str, np.ndarray]]:
    """The frames of an eval/test pipeline (batches of 1) one at a time, as numpy without the
    batch axis; a file that does not decode is a one-line DataError naming its list line."""
    batches = iter(data)
    while True:
        with bts_dataloader.data_errors(samples):
            batch = next(batches, None)
        if batch is None:
            return
        yield {key: value.numpy()[0] for key, value in batch.items()}


def equal_shape_runs(frames: Iterable, batch_size: int, shape_of: Callable = lambda frame: frame.shape
                     ) -> Iterator[List]:
    """``frames`` in order, in groups of at most ``batch_size`` consecutive frames of one shape
    (``shape_of(frame)``): a frame of another shape closes the group and starts the next, so
    frames of different sizes are never predicted together and the list order is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    run: List = []
    for frame in frames:
        if run and shape_of(frame) != shape_of(run[0]):
            yield run
            run = []
        run.append(frame)
        if len(run) == batch_size:  # full: predicted now, not when the next frame arrives
            yield run
            run = []
    if run:
        yield run


def predict_samples(predictor: DepthPredictor, samples: Sequence, pipeline: PipelineConfig,
                    evaluation: EvalConfig, *, with_maps: bool = False
                    ) -> Iterator[SamplePrediction]:
    """Predict every sample and score those with ground truth, in list order.

    The data pipeline decodes, normalises and KB-crops one frame at a time (prefetching ahead of
    the model); up to ``pipeline.batch_size`` consecutive frames of one network-input size are
    predicted in one call (:func:`equal_shape_runs`; online validation: 1), then each is scored
    against its own full-size ground truth. A file that does not decode is a one-line DataError
    naming its list line.
    """
    has_gt = any(s.depth_path is not None for s in samples)
    batch_size = pipeline.batch_size
    data = bts_dataloader.make_dataset(pipeline, "eval" if has_gt else "test", samples=samples)
    data = data.prefetch(tf.data.AUTOTUNE if batch_size == 1 else 2 * batch_size)  # frames
    runs = equal_shape_runs(_pipeline_frames(data, samples), batch_size,
                            shape_of=lambda frame: frame["image"].shape)
    for run in runs:
        images = np.stack([frame["image"] for frame in run])  # (n, H, W, 3)
        focal = np.stack([frame["focal"] for frame in run])  # (n,)
        start = time.perf_counter()
        if with_maps:
            depth, maps = predictor.predict_batch(images, focal, with_maps=True)
        else:
            depth, maps = predictor.predict_batch(images, focal), None
        seconds = (time.perf_counter() - start) / len(run)
        for i, frame in enumerate(run):
            scored = has_gt and bool(frame["has_depth"])
            metrics = score_prediction(frame["depth"][:, :, 0], depth[i], evaluation) if scored else None
            frame_maps = None if maps is None else {name: value[i] for name, value in maps.items()}
            yield SamplePrediction(int(frame["index"]), depth[i], frame_maps, scored, metrics, seconds,
                                   frames=len(run))


def evaluate_samples(predictor: DepthPredictor, samples: Sequence, pipeline: PipelineConfig,
                     evaluation: EvalConfig) -> Tuple[Dict[str, float], List]:
    """(mean metrics, per-image metrics in list order of the samples that have ground truth;
    None for those without a valid pixel). Frames without ground truth are not predicted."""
    with_gt = [s for s in samples if s.depth_path is not None]
    per_image = [p.metrics for p in predict_samples(predictor, with_gt, pipeline, evaluation)
                 ] if with_gt else []
    return average_metrics(per_image), per_image


def online_evaluator(pipeline: PipelineConfig, evaluation: EvalConfig
                     ) -> Callable[[keras.Model, Sequence], Dict[str, float]]:
    """The trainer's ``evaluate_fn(model, samples) -> mean metrics``: the loop bts_test.py runs,
    with one compiled predictor per model."""
    if pipeline.batch_size != 1:  # validation predicts frame by frame, as it always has
        pipeline = dataclasses.replace(pipeline, batch_size=1)
    LOGGER.info("validation: %s", quantization_note(evaluation))
    if protocol_note(evaluation):
        LOGGER.info("validation: %s", protocol_note(evaluation))
    cache: Dict[int, DepthPredictor] = {}

    def evaluate(model: keras.Model, samples: Sequence) -> Dict[str, float]:
        if id(model) not in cache:
            cache[id(model)] = DepthPredictor(model, pipeline.dataset,
                                              normalization=pipeline.normalization)
        return evaluate_samples(cache[id(model)], samples, pipeline, evaluation)[0]

    return evaluate

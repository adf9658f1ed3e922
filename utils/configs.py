# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Typed, validated configurations: what the model, the input pipeline and the evaluator need.

The CLI scripts build these once from their parsed arguments (``utils.arguments.model_config``,
``pipeline_config``, ``eval_config``); everything below the scripts takes them and never reads an
argparse ``Namespace``. Copies are made with ``dataclasses.replace`` (validation runs again).

Errors are :class:`ConfigError` naming the field; field names equal the command-line flag names,
so a script reports ``--<field> <message>``. Plain Python: no TensorFlow, no ``bts_*`` module.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional

from utils.datasets import DatasetFacts, KITTI_FOCAL_NORMALISER, get_dataset_facts
from utils.encoders import DEFAULT_ENCODER, ENCODER_NAMES, NORMALIZATION_MODES, DenseNetConfig, encoder_facts
from utils.metrics import EVAL_PROTOCOLS

CONFIG_VERSION = 1
MIN_BTS_SIZE = 128  # the reduction heads need bts_size/32 >= 4 channels (PT reduction_1x1)
MODEL_CONFIG_NAME = "bts_config.json"  # beside ckpt-N files, in best/ and next to model.keras
# A run folder ({log_directory}/{model_name}): ckpt-N files, bts_config.json, and these.
BEST_DIR = "best"  # the best checkpoint by --best_metric, with best_metrics.json
BEST_METRICS_FILE = "best_metrics.json"
MODEL_FILE = "model.keras"  # the final model, written when training ends
ARGUMENTS_FILE = "arguments.txt"  # the resolved flags, replayable as an argument file
KERAS_SUFFIXES = (".keras", ".weights.h5")  # weight files --checkpoint_path accepts besides ckpt-N


class ConfigError(ValueError):
    """A configuration value that cannot work; ``field`` is the offending field (= flag name)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def as_flag_error(self) -> str:
        """The one-line message a script prints: ``--field message``."""
        return f"--{self.field} {self}"


def _positive(field: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0:
        raise ConfigError(field, f"must be positive, got {value!r}")


@dataclasses.dataclass(frozen=True)
class BtsConfig:
    """How to build a BTS model: plain model facts only (no dataset name, no paths).

    ``bts_size`` None resolves to the encoder's default nf at construction; ``focal_normaliser``
    set (KITTI: 715.0873) multiplies the final depth by focal / normaliser; ``input_height/width``
    None builds a model for any size divisible by 32; ``densenet`` overrides the encoder's DenseNet
    shape (tests); ``imagenet_weights`` loads keras.applications ImageNet weights.
    """

    encoder: str = DEFAULT_ENCODER
    bts_size: Optional[int] = None
    max_depth: float = 10.0
    focal_normaliser: Optional[float] = None
    input_height: Optional[int] = None
    input_width: Optional[int] = None
    densenet: Optional[DenseNetConfig] = None
    imagenet_weights: bool = False

    def __post_init__(self):
        try:
            facts = encoder_facts(self.encoder)
        except ValueError:
            raise ConfigError("encoder", f"{self.encoder!r} is unknown; valid encoders: "
                                         f"{', '.join(ENCODER_NAMES)}") from None
        if self.bts_size is None:
            object.__setattr__(self, "bts_size", facts.default_bts_size)
        if not isinstance(self.bts_size, int) or self.bts_size < MIN_BTS_SIZE:
            raise ConfigError("bts_size", f"must be an integer >= {MIN_BTS_SIZE} (the decoder halves "
                                          f"it down to bts_size/32 channels), got {self.bts_size!r}")
        _positive("max_depth", self.max_depth)
        _positive("focal_normaliser", self.focal_normaliser, allow_none=True)
        for field in ("input_height", "input_width"):
            value = getattr(self, field)
            if value is not None and (value <= 0 or value % 32):
                raise ConfigError(field, f"must be a positive multiple of 32, got {value}")
        if self.imagenet_weights and not facts.imagenet:
            raise ConfigError("pretrained_model", f"imagenet: --encoder {self.encoder} has no "
                              "keras.applications ImageNet weights; give a converted weights file instead")
        if isinstance(self.densenet, dict):  # from JSON
            object.__setattr__(self, "densenet", _densenet_from_dict(self.densenet))

    @classmethod
    def for_dataset(cls, dataset: str, **fields) -> "BtsConfig":
        """The dataset's model facts (max depth, KITTI focal scaling) plus ``fields``."""
        facts = get_dataset_facts(dataset)
        values: Dict[str, Any] = {"max_depth": facts.max_depth,
                                  "focal_normaliser": KITTI_FOCAL_NORMALISER if facts.scale_output_by_focal
                                  else None}
        values.update({k: v for k, v in fields.items() if v is not None or k not in values})
        return cls(**values)

    @property
    def scale_by_focal(self) -> bool:
        return self.focal_normaliser is not None

    def to_dict(self) -> Dict[str, Any]:
        values = dataclasses.asdict(self)
        values["version"] = CONFIG_VERSION
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "BtsConfig":
        values = dict(values)
        version = values.pop("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ValueError(f"{source}: model config version {version} is not supported "
                             f"(this code reads version {CONFIG_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown model config field(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "BtsConfig":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object of model settings")
        return cls.from_dict(values, source)


def _densenet_from_dict(values: Dict[str, Any]) -> DenseNetConfig:
    values = dict(values)
    values["block_config"] = tuple(values.get("block_config", ()))
    return DenseNetConfig(**values)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the tf.data pipeline needs for one split (see ``bts_dataloader.make_dataset``).

    Sources: ``filenames_file`` (+ ``data_path``/``gt_path`` roots) or ``tfrecord_path`` (a shard
    prefix or glob; wins over the file list when set). ``normalization`` is the model's input
    normalisation, supplied by the caller (see utils.encoders). ``input_height/width``: the
    training crop. ``batch_size``: training, the batch; test (``bts_test.py --batch_size``), the
    frames ``bts_predict.predict_samples`` predicts together (runs of equal size; the eval/test
    pipeline itself yields one frame at a time); online validation, 1.
    ``seed`` None and not ``deterministic``: unseeded, parallel-order augmentation.
    ``use_right`` (``--use_right``, KITTI training lists only): each sample reads the list's
    right-camera columns instead with probability 0.5, per epoch (``bts_dataloader.choose_cameras``).
    """

    facts: DatasetFacts
    normalization: str
    input_height: int
    input_width: int
    batch_size: int = 1
    filenames_file: str = ""
    data_path: str = ""
    gt_path: str = ""
    tfrecord_path: str = ""
    do_kb_crop: bool = False
    do_random_rotate: bool = False
    degree: float = 0.0
    seed: Optional[int] = None
    deterministic: bool = False
    num_threads: int = -1  # -1 / 0: tf.data AUTOTUNE
    xla_compatible: bool = False  # gather-based resampling (see bts_dataloader.apply_transform)
    jit: bool = True  # augmentation as one XLA-compiled function (see bts_dataloader.train_sample)
    use_right: bool = False  # KITTI training: a seeded half of the samples read the right camera

    def __post_init__(self):
        if not isinstance(self.facts, DatasetFacts):
            raise ConfigError("dataset", f"expected resolved dataset facts, got {self.facts!r}")
        if self.normalization not in NORMALIZATION_MODES:
            raise ConfigError("encoder", f"normalisation {self.normalization!r} is unknown; expected one "
                                         f"of {NORMALIZATION_MODES}")
        for field in ("input_height", "input_width", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(field, f"must be a positive integer, got {value!r}")
        if self.degree < 0:
            raise ConfigError("degree", f"must be >= 0, got {self.degree}")
        if self.use_right and self.facts.name != "kitti":
            raise ConfigError("use_right", f"reads KITTI's right camera (image_03); --dataset "
                                           f"{self.facts.name} has none")
        if self.use_right and self.tfrecord_path:
            raise ConfigError("use_right", "reads the right camera's columns 4 and 5 of "
                                           "--filenames_file; --tfrecord_path shards hold one camera")

    @property
    def dataset(self) -> str:
        return self.facts.name


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The official evaluation protocol for one dataset (utils.metrics.evaluate_image).

    ``quantize``: round predictions to the saved-PNG grid (1/depth_scale m, as ``bts_test.py``'s
    PNG files hold them) before scoring, so online validation and ``bts_test.py`` report the same
    numbers for the same weights; False scores the float32 depth as predicted.
    ``protocol`` (``--online_eval_protocol``, ``utils.metrics.EVAL_PROTOCOLS``): ``offline``, the
    published numbers' (KB-crop prediction pasted into the full frame), or ``official_online``,
    upstream ``bts_main.py``'s online eval (ground truth cut to the KB crop); they differ only for
    KITTI with ``do_kb_crop``.
    """

    dataset: str
    min_depth_eval: float
    max_depth_eval: float
    eigen_crop: bool = False
    garg_crop: bool = False
    do_kb_crop: bool = False
    quantize: bool = True
    protocol: str = "offline"

    def __post_init__(self):
        get_dataset_facts(self.dataset)
        if not 0 <= self.min_depth_eval < self.max_depth_eval:
            raise ConfigError("min_depth_eval", f"{self.min_depth_eval} must be >= 0 and below "
                                                f"--max_depth_eval {self.max_depth_eval}")
        if self.do_kb_crop and self.dataset != "kitti":
            object.__setattr__(self, "do_kb_crop", False)  # the KB crop is a KITTI convention
        if self.protocol not in EVAL_PROTOCOLS:
            raise ConfigError("online_eval_protocol", f"{self.protocol!r} is unknown; expected one "
                                                      f"of {', '.join(EVAL_PROTOCOLS)}")


# ---------------------------------------------------------------------------------------------
# Training (bts_trainer.Trainer)
# ---------------------------------------------------------------------------------------------
DISTRIBUTION_STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("none", "bf16", "fp16")  # Keras policies float32, mixed_bfloat16, mixed_float16
# --mixed_precision also takes "auto": the script resolves it to one of PRECISIONS for its machine
# (bts_trainer.resolve_mixed_precision, utils/precision.py) before any config or model is built, so
# a TrainConfig, and the run folder's arguments.txt, hold the resolved value, never "auto".
AUTO_PRECISION = "auto"
# --model_ops "auto": the script resolves it for its devices (bts_trainer.resolve_model_ops)
AUTO_MODEL_OPS = "auto"
PRECISION_CHOICES = PRECISIONS + (AUTO_PRECISION,)
# --adamw: PyTorch's update (ε added to the bias-corrected √v̂, as the official code) or Keras's
# (ε added to the uncorrected √v, an implicit warm-up while √(1−β2ᵗ) is small).
ADAMW_VARIANTS = ("pytorch", "keras")
# What --validation_split with --tfrecord_path gets (after "--validation_split ").
VALIDATION_SPLIT_WITH_SHARDS = (
    "holds out scenes of --filenames_file, which --tfrecord_path shards cannot split: train from "
    "the files, or convert the training scenes only and validate on a list of the held-out ones "
    "with --do_online_eval --filenames_file_eval")
_AT_LEAST_ONE = ("keep_checkpoints", "num_epochs", "gradient_accumulation_steps", "log_freq",
                 "save_freq", "eval_freq", "num_gpus", "num_cpu_devices")


def _in_range(field: str, value: float, low: float, high: float = math.inf,
              closed_high: bool = True) -> None:
    if not (math.isfinite(value) and low <= value and (value <= high if closed_high else value < high)):
        bracket = "]" if closed_high and math.isfinite(high) else ")"
        raise ConfigError(field, f"must be a finite number in [{low:g}, {high:g}{bracket}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: the model, its data, the PT recipe, the loop and where it writes.

    ``data`` is the training split: its ``batch_size`` is the global batch of one micro-batch,
    so one optimizer step reads ``batch_size × gradient_accumulation_steps`` samples.
    ``eval_data`` (the ``*_eval`` list, or only the settings when ``validation_split`` holds out
    training scenes) and ``evaluation`` drive online validation; ``first_blocks`` (0, 1, 2) are
    the extra stage-1 units frozen (FreezeRule). ``end_learning_rate`` < 0 means 0.1 ×
    ``learning_rate``; ``num_steps`` 0 means ``num_epochs`` epochs; ``seed`` None draws one.
    ``argument_text`` is the run folder's ``arguments.txt``, rendered by the script that parsed them.
    Plain field names equal the flag names (ConfigError.field).
    """

    model: BtsConfig
    data: PipelineConfig
    evaluation: EvalConfig
    eval_data: Optional[PipelineConfig]
    first_blocks: int
    # run folder and initial weights
    log_directory: str
    model_name: str
    retrain: bool
    checkpoint_path: str
    pretrained_model: str
    keep_checkpoints: int
    # recipe
    num_epochs: int
    num_steps: int
    learning_rate: float
    end_learning_rate: float
    adam_eps: float
    weight_decay: float
    variance_focus: float
    gradient_accumulation_steps: int
    mixed_precision: str
    seed: Optional[int]
    # loop
    log_freq: int
    save_freq: int
    eval_freq: int
    # strategy
    distribution_strategy: str
    num_gpus: int
    num_cpu_devices: int
    tpu_name: str
    tpu_zone: str
    gcp_project: str
    # online validation
    do_online_eval: bool
    validation_split: float
    best_metric: str
    eval_summary_directory: str
    argument_text: str = ""
    adamw: str = "pytorch"
    bn_no_track_stats: bool = False  # every BN normalises with (and keeps) its moving statistics

    def __post_init__(self):
        for field in _AT_LEAST_ONE:
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(field, f"must be an integer >= 1, got {value!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 0:
            raise ConfigError("num_steps", f"must be an integer >= 0, got {self.num_steps!r}")
        if self.first_blocks not in (0, 1, 2):
            raise ConfigError("fix_first_conv_blocks", f"freezes 0, 1 or 2 units, got {self.first_blocks!r}")
        _positive("learning_rate", self.learning_rate)
        _positive("adam_eps", self.adam_eps)
        if not math.isfinite(self.end_learning_rate):
            raise ConfigError("end_learning_rate", f"must be finite, got {self.end_learning_rate!r}")
        _in_range("weight_decay", self.weight_decay, 0.0)
        _in_range("variance_focus", self.variance_focus, 0.0, 1.0)
        _in_range("validation_split", self.validation_split, 0.0, 1.0, closed_high=False)
        if self.seed is not None and not 0 <= self.seed < 2 ** 31:
            raise ConfigError("seed", f"must be an integer in [0, 2147483647], got {self.seed!r}")
        if self.mixed_precision == AUTO_PRECISION:
            raise ConfigError("mixed_precision", "auto reached the training config unresolved: "
                                                 "resolve it first (bts_trainer.resolve_mixed_"
                                                 f"precision) to one of {', '.join(PRECISIONS)}")
        for field, choices in (("mixed_precision", PRECISIONS), ("adamw", ADAMW_VARIANTS),
                               ("distribution_strategy", DISTRIBUTION_STRATEGIES)):
            if getattr(self, field) not in choices:
                raise ConfigError(field, f"{getattr(self, field)!r} is not one of {', '.join(choices)}")
        self._check_sources()

    def _check_sources(self) -> None:
        """Combinations of the data and validation settings that cannot work."""
        if self.evaluation.dataset != self.data.dataset:
            raise ConfigError("dataset", f"the training data is {self.data.dataset} but the "
                                         f"evaluation protocol is {self.evaluation.dataset}'s")
        if self.validation_split > 0 and self.data.tfrecord_path:
            raise ConfigError("validation_split", VALIDATION_SPLIT_WITH_SHARDS)
        if self.validation_split == 0 and self.do_online_eval and not (
                self.eval_data is not None and self.eval_data.filenames_file):
            raise ConfigError("do_online_eval", "needs --filenames_file_eval or --validation_split")

    @property
    def dataset(self) -> str:
        return self.data.dataset

    @property
    def batch_size(self) -> int:
        return self.data.batch_size

    @property
    def samples_per_step(self) -> int:
        """Samples one optimizer step reads: the batch times the accumulated micro-batches."""
        return self.data.batch_size * self.gradient_accumulation_steps

    @property
    def final_learning_rate(self) -> float:
        """The learning rate the schedule decays to (``end_learning_rate``, 0.1 × lr if < 0)."""
        return self.end_learning_rate if self.end_learning_rate >= 0 else 0.1 * self.learning_rate

    @property
    def run_dir(self) -> str:
        """``{log_directory}/{model_name}``: checkpoints, arguments.txt, summaries, best/."""
        return os.path.join(self.log_directory, self.model_name)

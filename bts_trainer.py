# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""BTS training: the official PyTorch recipe as a custom loop under any tf.distribute strategy.

Why a custom loop: Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), and the recipe needs exact control of weight-decay groups, frozen
variables, gradient accumulation and resume.

Recipe (design §4, as PT): AdamW (ε ``--adam_eps``, decay ``--weight_decay`` on encoder variables
only), learning rate polynomially decayed (power 0.9) from ``--learning_rate`` to
``--end_learning_rate`` (0.1·lr when negative) over the total steps, stem conv and all encoder BN
γ/β frozen (BN still uses batch statistics; with ``--bn_no_track_stats`` every BN uses and keeps its
moving statistics, :func:`use_moving_statistics`), silog loss on the final depth only.

Everything comes in one :class:`utils.configs.TrainConfig` (built by the script from its flags);
configuration problems found here are ``ConfigError(field)``, which the script reports as
``--field ...``; faults of the run itself (NaN loss, a failed write) are :class:`TrainingError`.

Run folder ``{log_directory}/{model_name}``:
  ``ckpt-N.*``            TF checkpoints (model, optimizer slots and iteration, data position)
  ``bts_config.json``     the BtsConfig of every ckpt-N and of model.keras (also in ``best/``)
  ``arguments.txt``       the resolved arguments (replay with ``python bts_main.py arguments.txt``)
  ``summaries/``          TensorBoard: loss, learning rate, depth images, validation metrics
  ``best/``               best weights per ``--best_metric`` (with online evaluation, scored
                          under ``--online_eval_protocol``, offline by default)
  ``model.keras``         the final model
Temporary files of killed or failed saves (TF's ``ckpt-N_temp/``) are removed at start-up; a save
that fails (full disk) stops the run with one line, the earlier checkpoints intact.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import keras
from keras import ops
import numpy as np
import tensorflow as tf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import bts_dataloader
import bts_losses
import bts_model
from utils import checkpoints, precision, visualization
from utils.configs import (AUTO_MODEL_OPS, AUTO_PRECISION, MODEL_CONFIG_NAME, BtsConfig, ConfigError, PipelineConfig,
                           TrainConfig)
from utils.io import (WriteError, atomic_write, atomic_write_text, check_writable_folder,
                      write_errors, write_failure_reason)
from utils.metrics import METRIC_NAMES, is_better

LOG = logging.getLogger("bts.train")


class TrainingError(RuntimeError):
    """A training run that must stop, with a one-line reason (NaN loss, bad configuration)."""


# --------------------------------------------------------------------------------------------
# Strategy
# --------------------------------------------------------------------------------------------
def build_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The distribution strategy of ``config.distribution_strategy`` (see :func:`strategy_choice`)."""
    configure_cpu_devices(config.num_cpu_devices)  # before anything below starts TF's devices
    choice = strategy_choice(config, len(tf.config.list_physical_devices("GPU")))
    if choice == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=config.tpu_name or None, zone=config.tpu_zone or None,
            project=config.gcp_project or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if choice == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if choice == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            devices = [d.name for d in gpus[:config.num_gpus]] if config.num_gpus > 1 else None
            return tf.distribute.MirroredStrategy(devices)
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < 2:
            raise ConfigError(
                "distribution_strategy", "mirrored: no GPU and only one CPU device, so it would "
                "train a single replica; add --num_cpu_devices N to split the CPU into N logical "
                "devices (N replicas), or use --distribution_strategy default")
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def strategy_choice(config: TrainConfig, visible_gpus: int) -> str:
    """The strategy to build: ``distribution_strategy``, or for ``auto``: TPU when ``tpu_name`` is
    set; several workers when ``TF_CONFIG`` names a cluster; mirrored when more than one GPU is
    visible and ``num_gpus`` > 1, or over the logical CPU devices when there is no GPU and
    ``num_cpu_devices`` > 1; else default. Mirrored without GPUs needs ``num_cpu_devices`` > 1
    (one CPU device is one replica, which would silently not be the multi-replica run asked for).
    """
    choice, num_gpus, num_cpu_devices = config.distribution_strategy, config.num_gpus, config.num_cpu_devices
    clustered = bool(config.tpu_name) or _tf_config_has_cluster()
    wants_gpus = choice == "mirrored" or (choice == "auto" and not clustered)
    if wants_gpus and num_gpus > 1 and num_gpus > visible_gpus:
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ConfigError("num_gpus", f"{num_gpus}: only {visible_gpus} GPU(s) visible to TensorFlow"
                          + (f" (CUDA_VISIBLE_DEVICES={mask!r})" if mask is not None else ""))
    if choice == "auto":
        if config.tpu_name:
            choice = "tpu"
        elif _tf_config_has_cluster():
            choice = "multi_worker"
        elif (num_gpus > 1 and visible_gpus > 1) or (num_cpu_devices > 1 and not visible_gpus):
            choice = "mirrored"
        else:
            choice = "default"
    if num_cpu_devices > 1 and (choice != "mirrored" or visible_gpus):
        LOG.warning("--num_cpu_devices %d has no effect: only MirroredStrategy on a machine without "
                    "GPUs uses the logical CPU devices (this run: %s, %d GPU(s))",
                    num_cpu_devices, choice, visible_gpus)
    return choice


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into ``count`` logical devices (``--num_cpu_devices``).

    TF fixes its devices when the runtime starts, so this must run before any op or device query
    (``build_strategy`` calls it first). A process already split into ``count`` is left as it is.
    """
    if count < 1:
        raise ConfigError("num_cpu_devices", f"{count} must be >= 1")
    if count == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # the runtime already started with another device layout
        have = len(tf.config.list_logical_devices("CPU"))
        raise ConfigError("num_cpu_devices", f"{count}: TensorFlow already started in this process "
                          f"with {have} CPU device(s); pass the flag to a fresh bts_main.py "
                          "process") from None


def _tf_config_has_cluster() -> bool:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return len(config.get("cluster", {}).get("worker", [])) > 1


_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def lost_worker_message(err: tf.errors.OpError, run_dir: Optional[str], command: str
                        ) -> Optional[str]:
    """One line for a ``MultiWorkerMirroredStrategy`` run whose peer died, or None outside a cluster.

    A dead peer surfaces on the survivors as an ``UnavailableError`` from a collective (TF's
    coordination service notices the missing heartbeats within seconds). Its message names the
    peer as ``/job:worker/replica:0/task:N`` (heartbeats stopped) or by address (connection
    refused); both are mapped to the TF_CONFIG entry.
    """
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    if sum(len(addresses) for addresses in cluster.values()) < 2:
        return None
    me = (config.get("task", {}).get("type"), int(config.get("task", {}).get("index", 0)))
    text = getattr(err, "message", str(err))
    # "The following tasks are unhealthy: <tasks>": the tasks before it only reported the fault.
    named = text.split("unhealthy", 1)[-1]
    lost = [(job, int(index)) for job, index in _TASK_NAME.findall(named)]
    lost += [(job, index) for job, addresses in cluster.items()
             for index, address in enumerate(addresses)
             if re.search(re.escape(address) + r"(?!\d)", text)]
    lost = list(dict.fromkeys(key for key in lost if key != me))
    who = ", ".join(
        f"{job} {index} ({cluster[job][index]})" if index < len(cluster.get(job, [])) else
        f"{job} {index}" for job, index in lost) or "a peer"
    try:
        latest = checkpoints.latest_training_checkpoint(run_dir) if run_dir else None
    except (tf.errors.OpError, OSError):
        latest = None
    resume = (f"it resumes from {latest}" if latest else
              "no checkpoint was written yet, so it starts again")
    return (f"lost contact with {who} of the multi-worker cluster (TF_CONFIG): it stopped or "
            f"crashed, so training stopped. Restart it and rerun the same command on every "
            f"worker ({command}); {resume}")


# Names that interrupted or failed writes leave in a run folder: TF's sharded-save folder
# ('<prefix>_temp/', tensorflow/python/checkpoint/functional_saver.py), TF's atomic write of the
# 'checkpoint' state file ('checkpoint.tmp<uuid4 hex>', lib/io/file_io.py) and
# utils.io.atomic_write's '.tmp-<8 hex>-<name>'. Nothing else is ever deleted.
TF_SAVE_TEMP_SUFFIX = "_temp"
STALE_TEMPORARY = re.compile(r"ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32}|\.tmp-[0-9a-f]{8}-.+")
# Errors of a collective op (a lost multi-worker peer) are not write faults, even in a save.
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                     tf.errors.DeadlineExceededError)


def prepare_run_folder(run_dir: str) -> List[str]:
    """Start-up of the chief: the run folder must be writable (a ConfigError of ``log_directory``
    otherwise), and temporary files of killed or failed saves are deleted. Returns those paths."""
    try:
        check_writable_folder(run_dir, "run folder")
    except WriteError as err:
        raise ConfigError("log_directory", str(err)) from None
    removed = []
    for folder in (run_dir, os.path.join(run_dir, checkpoints.BEST_DIR)):
        if not tf.io.gfile.isdir(folder):
            continue
        for name in tf.io.gfile.listdir(folder):
            if not STALE_TEMPORARY.fullmatch(name.rstrip("/")):
                continue
            path = os.path.join(folder, name.rstrip("/"))
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
            removed.append(path)
    if removed:
        LOG.info("removed %d temporary file(s) of interrupted saves: %s", len(removed),
                 ", ".join(removed))
    return removed


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


# --------------------------------------------------------------------------------------------
# Model, freezing, optimizer
# --------------------------------------------------------------------------------------------
def apply_freezing(model: keras.Model, encoder: str, first_blocks: int = 0) -> List[str]:
    """Freeze what ``encoder``'s rule names (``bts_model.EncoderSpec.freeze``, design §4.3).

    PT default for DenseNet: stem conv + every encoder BN γ/β, plus the first dense layer(s) with
    ``first_blocks`` (1 or 2: ``--fix_first_conv_block(s)``); other encoders follow their own rule (docs/encoders.md).
    BN layers stay trainable so they keep using batch statistics and updating their moving
    statistics (PT train mode); only their γ/β variables are frozen. Returns the frozen paths.
    """
    rule = bts_model.encoder_spec(encoder).freeze
    frozen = []
    for layer in model.layers:
        name = layer.name
        if not name.startswith(bts_model.ENCODER_PREFIX):
            continue
        local = name[len(bts_model.ENCODER_PREFIX):]
        if isinstance(layer, keras.layers.BatchNormalization):
            if rule.frozen_bn_affine(local, first_blocks):
                for variable in (layer.gamma, layer.beta):
                    variable.trainable = False
                    frozen.append(variable.path)
        elif rule.frozen_layer(local, first_blocks) and layer.weights:
            layer.trainable = False
            frozen.extend(w.path for w in layer.weights)
    return frozen


def use_moving_statistics(model: keras.Model) -> List[str]:
    """``--bn_no_track_stats`` (PT ``bn_init_as_tf`` after ``model.train()``): every BN layer of
    ``model``, encoder and decoder, nested ones included, normalises with its moving statistics
    and leaves them unchanged in training steps too. γ/β keep their ``trainable`` flags (the
    recipe's frozen encoder γ/β stay frozen, the decoder's train). Call after
    :func:`apply_freezing`. Returns the BN layers' names.

    ``bts_model.BatchNorm`` has a switch for it; Keras's own BN (inside keras.applications
    backbones) uses moving statistics only when not trainable, so such a layer is made
    non-trainable, which is the same when its γ/β are frozen already and a ConfigError otherwise.
    """
    switched = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, bts_model.BatchNorm):
            layer.use_moving_statistics = True
        elif isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable_weights:
                raise ConfigError("bn_no_track_stats", f"the Keras BatchNormalization {layer.name} "
                                  "has trainable gamma/beta, which it cannot keep while normalising "
                                  "with its moving statistics; use an official *_bts encoder")
            layer.trainable = False
        else:
            continue
        switched.append(layer.name)
    return switched


def default_pretrained_path(encoder: str) -> str:
    """Where ./init_densenet_161.sh puts the ImageNet weights of ``encoder`` ('' if nowhere)."""
    from utils.pretrained import INIT_COMMANDS, default_encoder_weights_path

    return default_encoder_weights_path(encoder) if encoder in INIT_COMMANDS else ""


def learning_rate_schedule(learning_rate: float, end_learning_rate: float, total_steps: int):
    """lr(step) = (lr0 − lr_end)·(1 − step/total)^0.9 + lr_end, step clamped at total."""
    return keras.optimizers.schedules.PolynomialDecay(
        learning_rate, max(total_steps, 1), end_learning_rate, power=0.9)


@keras.saving.register_keras_serializable(package="bts")
class TorchAdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with ``torch.optim.AdamW``'s update (the official optimiser).

    Per step t, with the decay applied first by the base class (θ ← θ − lr·wd·θ, as PyTorch):
    m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
    θ ← θ − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε).
    Keras's AdamW divides by √v + ε instead, i.e. ε·√(1−β2ᵗ) in PyTorch's terms: with the
    recipe's ε = 1e-3 and gradients ~1e-3 its first updates are a few percent of PyTorch's.
    Same slots (m, v) as the parent, so its checkpoints restore into either class.
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("TorchAdamW does not implement amsgrad")
        super().__init__(*args, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        correction_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        correction_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / correction_1), denominator))


ADAMW_CLASSES = {"pytorch": TorchAdamW, "keras": keras.optimizers.AdamW}


def make_optimizer(config: TrainConfig, model: keras.Model, total_steps: int):
    """AdamW (``--adamw``) with PT's groups: weight decay on trainable encoder variables only."""
    schedule = learning_rate_schedule(config.learning_rate, config.final_learning_rate, total_steps)
    optimizer = ADAMW_CLASSES[config.adamw](learning_rate=schedule, weight_decay=config.weight_decay,
                                            beta_1=0.9, beta_2=0.999, epsilon=config.adam_eps)
    decoder = [v for v in model.trainable_variables if not bts_model.is_encoder_variable(v)]
    optimizer.exclude_from_weight_decay(var_list=decoder)  # must precede build()
    if config.mixed_precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


PRECISION_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def set_precision_policy(mixed_precision: str) -> None:
    """The global Keras dtype policy of ``--mixed_precision`` (none, bf16, fp16; ``auto`` is
    resolved first, :func:`resolve_mixed_precision`)."""
    if mixed_precision not in PRECISION_POLICIES:
        raise ValueError(f"--mixed_precision {mixed_precision!r} has no dtype policy (auto is "
                         "resolved with resolve_mixed_precision first)")
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision])


PRECISION_LOG = logging.getLogger("bts.precision")


def visible_gpus() -> List[Tuple[str, Optional[Tuple[int, int]]]]:
    """(name, compute capability or None) of every GPU TensorFlow sees (no device is started)."""
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, tf.errors.OpError):
            details = {}
        gpus.append((details.get("device_name") or device.name, details.get("compute_capability")))
    return gpus


def uses_tpu(distribution_strategy: str, tpu_name: str) -> bool:
    """Whether training runs on a TPU (:func:`strategy_choice`'s rule), for ``auto``."""
    return distribution_strategy == "tpu" or (distribution_strategy == "auto" and bool(tpu_name))


def resolve_mixed_precision(requested: str, *, tpu: bool = False) -> str:
    """``--mixed_precision`` for this machine: ``auto`` becomes none, bf16 or fp16 by the rules of
    ``utils/precision.py`` (the visible GPUs, ``tpu``, the CPU's /proc/cpuinfo flags and vendor,
    TF_ENABLE_ONEDNN_OPTS), logged in one line; other values are returned unchanged, unlogged.

    Call it once at start-up, before the policy is set and any model or strategy is built.
    """
    if requested != AUTO_PRECISION:
        return requested
    resolved, reason = auto_precision(tpu=tpu)
    PRECISION_LOG.info(precision.auto_message(resolved, reason))
    return resolved


def auto_precision(*, tpu: bool = False) -> Tuple[str, str]:
    """(precision, reason) that ``--mixed_precision auto`` becomes on this machine, unlogged."""
    cpuinfo = precision.read_cpuinfo()
    return precision.resolve_precision(
        AUTO_PRECISION, cpu_flags=precision.cpu_bf16_features(cpuinfo), gpus=visible_gpus(),
        tpu=tpu, onednn_off=precision.onednn_disabled(os.environ),
        vendor=precision.cpu_vendor(cpuinfo))


def resolve_model_ops(requested: str, *, tpu: bool = False,
                      training_pixels: int = 0) -> bts_model.ModelOps:
    """``--model_ops`` for this machine: ``auto`` is the standard graph where a GPU or TPU
    computes; on a CPU ``bts_model.CPU_MODEL_OPS``, or ``CPU_TRAINING_MODEL_OPS`` (recompute) for
    training batches of ``training_pixels`` (batch × height × width; 0 when not training) ≥
    ``RECOMPUTE_MIN_PIXELS``; logged in one line. ``standard`` or ``KEY=VALUE,...`` is parsed
    (ConfigError naming the flag). Call it once at start-up."""
    if requested != AUTO_MODEL_OPS:
        return bts_model.ModelOps.parse(requested)
    if tpu or visible_gpus():
        resolved, reason = bts_model.DEFAULT_MODEL_OPS, "a GPU/TPU computes"
    elif training_pixels >= bts_model.RECOMPUTE_MIN_PIXELS:
        resolved, reason = bts_model.CPU_TRAINING_MODEL_OPS, (
            f"CPU only; training batches of {training_pixels} pixels")
    else:
        resolved, reason = bts_model.CPU_MODEL_OPS, "CPU only"
    PRECISION_LOG.info("model ops: auto -> %s (%s)", resolved, reason)
    return resolved


def model_in_global_policy(model: keras.Model, config: BtsConfig,
                           model_ops: bts_model.ModelOps = bts_model.DEFAULT_MODEL_OPS) -> keras.Model:
    """``model`` computing under the global dtype policy and with ``model_ops``: a ``.keras``
    file records the policy and the op choices of each layer as it was saved, so loading one
    under another policy keeps part of the model in the saver's (a float32 file under
    mixed_bfloat16 keeps a float32 encoder, a bf16-trained one a bf16 encoder under float32).
    Such a model is rebuilt from ``config`` (the one ``bts_predict.load_model`` returns) with
    ``model_ops`` and its weights copied layer by layer; a model that already computes so is
    returned as it is. CheckpointError when the rebuilt model does not match."""
    policy = keras.mixed_precision.global_policy().name
    same_ops = bts_model.model_ops_of(model) == model_ops
    if same_ops and policy == "float32" and all(layer.dtype_policy.name == "float32"
                                                for layer in model.layers):
        return model
    rebuilt = bts_model.build_bts_model(config, model_ops)
    loaded = {layer.name: layer for layer in model.layers}
    if same_ops and all(loaded.get(layer.name) is not None
                        and loaded[layer.name].dtype_policy.name == layer.dtype_policy.name
                        for layer in rebuilt.layers):
        return model
    for layer in rebuilt.layers:
        if not layer.weights:
            continue
        source = loaded.get(layer.name)
        try:
            if source is None:
                raise ValueError("absent from the loaded model")
            layer.set_weights(source.get_weights())
        except ValueError as err:
            raise checkpoints.CheckpointError(
                f"cannot rebuild the model under the {policy} dtype policy: layer {layer.name}: "
                f"{str(err).splitlines()[0][:200]}; use --mixed_precision none") from None
    PRECISION_LOG.info("model rebuilt under the %s dtype policy with model ops %s (the checkpoint "
                       "recorded others)", policy, model_ops)
    return rebuilt


# --------------------------------------------------------------------------------------------
# Training state and data position
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunState:
    """Counters saved in every checkpoint so a resumed run continues exactly."""

    epoch: tf.Variable
    step_in_epoch: tf.Variable
    data_seed: tf.Variable

    @classmethod
    def create(cls, seed: int) -> "RunState":
        make = lambda value: tf.Variable(value, dtype=tf.int64, trainable=False)  # noqa: E731
        return cls(make(0), make(0), make(seed))


def steps_per_epoch(num_samples: int, samples_per_step: int) -> int:
    """Steps in one epoch: ⌈N / samples per step⌉, as PT's DataLoader (its last batch is partial)."""
    return -(-num_samples // samples_per_step)


def last_batch_policy(replicas: int, accumulation: int) -> str:
    """How an epoch's last ``N mod B`` samples are batched (``bts_dataloader.make_dataset``).

    One device, no accumulation: a smaller last batch, as PT (the step traces once more for it).
    Several replicas or micro-batches need B whole samples to split evenly: the last batch is
    filled up with the epoch's first samples, so the step count (the schedule) is still PT's.
    """
    return "keep" if replicas == 1 and accumulation == 1 else "fill"


def epoch_dataset(pipeline: PipelineConfig, samples, epoch: int, skip_steps: int, seed: int,
                  samples_per_step: int, last_batch: str = "keep") -> tf.data.Dataset:
    """One epoch of training batches of ``samples_per_step``, resumed after ``skip_steps``.

    ``pipeline``: the training split's settings (its batch size and seed are replaced here).
    ``samples``: a list of Samples (image files) or the ``bts_dataloader.ShardSet`` of
    ``--tfrecord_path``; either way the epoch's order is a function of (seed, epoch) only.
    ``last_batch``: :func:`last_batch_policy`.
    """
    shards = isinstance(samples, bts_dataloader.ShardSet)
    pipeline = dataclasses.replace(pipeline, batch_size=samples_per_step, seed=seed,
                                   tfrecord_path=samples.tfrecord_path if shards else "")
    dataset = bts_dataloader.make_dataset(pipeline, "train", samples=None if shards else samples,
                                          epoch=epoch, last_batch=last_batch)
    if shards:
        # AUTO would shard TFRecords by file over workers, giving each its own steps per epoch;
        # by data (as lists already are) every worker reads the same epoch and stays in step.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset.skip(skip_steps) if skip_steps else dataset


def epoch_batches(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, suspects=None):
    """The distributed batches of ``dataset``; a bad sample stops it with a one-line DataError.

    Only fetching a batch is wrapped: TF errors of the step itself are not data errors.
    ``suspects``: the epoch's samples from the current step on, to name an undecodable file fast.
    """
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    while True:
        with bts_dataloader.data_errors(suspects):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------
class StepFunctions:
    """Compiled distributed train step: forward, silog loss, accumulated gradients, update.

    The global batch of ``batch_size × accumulation`` samples is split over replicas by the
    strategy, then into ``accumulation`` micro-batches inside a ``tf.while_loop`` (traced once).
    The loss is silog of the silog statistics s = (Σd, Σd², count) pooled over *every* replica and
    micro-batch of the step, L = f(S), S = Σ s_i, exactly as one device with the whole batch would
    compute it (silog is not additive, so a mean of micro-batch losses would optimise another
    objective). Its gradient f'(S)·Σ ds_i/dθ is accumulated as the gradient of the surrogate
    c·s_i with the constant c = f'(S); with accumulation, S is found first by a forward-only pass
    over the micro-batches (BN moving statistics restored afterwards, so they move once per
    micro-batch). Only BN's batch statistics still differ from one big batch (they are per
    micro-batch, as in any accumulation). Returns the loss, whether the loss and every gradient
    were finite, and, for TensorBoard, the depth and LPG maps of the last micro-batch.
    """

    def __init__(self, strategy, model, optimizer, config: TrainConfig,
                 loss_fn: Optional[Callable] = None, jit_compile: bool = False):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        self.maps_model = bts_model.build_lpg_maps_model(model)
        self.accumulation = config.gradient_accumulation_steps
        self.min_depth = config.data.facts.loss_min_depth
        self.variance_focus = config.variance_focus
        self.loss_fn = loss_fn or bts_losses.silog_from_statistics
        # Every BN's moving statistics, nested ones (inside AtrousConv) included.
        self.bn_moving = [v for v in model.non_trainable_variables
                          if v.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")]
        self.train_step = tf.function(self._distributed_step, reduce_retracing=True,
                                      jit_compile=jit_compile or None)

    # ---------------------------------------------------------------- pieces
    def _statistics(self, batch):
        """Local (this replica, this micro-batch) silog statistics (3,) and the model outputs."""
        outputs = self.maps_model({"image": batch["image"], "focal": batch["focal"]}, training=True)
        return bts_losses.silog_statistics(outputs["depth"], batch["depth"], self.min_depth), outputs

    def _loss_and_coefficients(self, local_total):
        """L = f(S) of the statistics S pooled over replicas, and c = ∂L/∂S (constants)."""
        pooled = tf.stop_gradient(local_total)
        if self.strategy.num_replicas_in_sync > 1:
            pooled = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, pooled)
        with tf.GradientTape() as tape:
            tape.watch(pooled)
            loss = self.loss_fn(pooled, self.variance_focus)
        return loss, tf.stop_gradient(tape.gradient(loss, pooled))

    def _surrogate(self, stats, coefficients):
        """c·s, whose gradient is this replica's and micro-batch's share of ∂L/∂θ (call inside
        the tape; Keras sums the gradients over replicas)."""
        surrogate = tf.reduce_sum(coefficients * stats)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            surrogate = self.optimizer.scale_loss(surrogate)
        return surrogate

    def compute_gradients(self, batch):
        """(loss, gradients of this replica's share, outputs) for one step's replica batch."""
        micro = self.accumulation
        if micro == 1:
            with tf.GradientTape() as tape:
                stats, outputs = self._statistics(batch)
                loss, coefficients = self._loss_and_coefficients(stats)
                surrogate = self._surrogate(stats, coefficients)
            return loss, tape.gradient(surrogate, self.model.trainable_variables), outputs

        # (micro·b, ...) → (micro, b, ...) and index: slicing v[i*b:(i+1)*b] by a loop tensor
        # gave wrong micro-batches under XLA.
        parts = {k: tf.reshape(v, tf.concat([[micro, -1], tf.shape(v)[1:]], 0))
                 for k, v in batch.items()}

        def micro_batch(i):
            return {k: tf.gather(v, i) for k, v in parts.items()}

        # Pass 1: the step's pooled statistics (forward only; BN moving statistics kept as they were).
        saved = [tf.identity(v) for v in self.bn_moving]
        _, total = tf.while_loop(
            lambda i, _: i < micro,
            lambda i, acc: (i + 1, acc + self._statistics(micro_batch(i))[0]),
            (tf.constant(0), tf.zeros([3], tf.float32)))
        with tf.control_dependencies([total]):
            for variable, value in zip(self.bn_moving, saved):
                variable.assign(value)
        loss, coefficients = self._loss_and_coefficients(total)

        # Pass 2: accumulate c·ds_i/dθ micro-batch by micro-batch.
        def grads_of(i):
            with tf.GradientTape() as tape:
                stats, outputs = self._statistics(micro_batch(i))
                surrogate = self._surrogate(stats, coefficients)
            return tape.gradient(surrogate, self.model.trainable_variables), outputs

        grads, outputs = grads_of(0)

        def body(i, acc, _):
            sub_grads, sub_outputs = grads_of(i)
            return i + 1, [a + g for a, g in zip(acc, sub_grads)], sub_outputs

        _, grads, outputs = tf.while_loop(lambda i, *_: i < micro, body,
                                          (tf.constant(1), grads, outputs))
        return loss, grads, outputs

    def _finite(self, loss, grads):
        """Loss and gradients finite (fp16: loss only; its optimizer skips overflowing steps)."""
        checks = [tf.reduce_all(tf.math.is_finite(loss))]
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        return tf.reduce_all(tf.stack(checks))

    def _replica_step(self, batch):
        loss, grads, outputs = self.compute_gradients(batch)
        finite = self._finite(loss, grads)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss, 1.0 - tf.cast(finite, tf.float32), outputs

    def _distributed_step(self, batch):
        loss, nonfinite, outputs = self.strategy.run(self._replica_step, args=(batch,))
        mean_loss = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        # ReduceOp has no MIN: count the replicas that saw a non-finite loss or gradient.
        bad_replicas = self.strategy.reduce(tf.distribute.ReduceOp.SUM, nonfinite, axis=None)
        return mean_loss, tf.equal(bad_replicas, 0.0), outputs


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
class Trainer:
    """Owns one training run: strategy, model, optimizer, data, checkpoints and logging.

    ``evaluate_fn(model, samples) -> metrics`` validates (``bts_predict.online_evaluator``);
    ``loss_fn(statistics, variance_focus)`` replaces the silog loss (tests); ``report(step,
    metrics)`` sees every evaluation and may raise to stop the run (tuning: pruning);
    ``model_ops`` chooses how the model computes (:func:`resolve_model_ops`), never its weights.
    """

    def __init__(self, config: TrainConfig, *, evaluate_fn: Optional[Callable] = None,
                 loss_fn: Optional[Callable] = None, report: Optional[Callable] = None,
                 model_ops: bts_model.ModelOps = bts_model.DEFAULT_MODEL_OPS):
        self.config = config
        self.model_ops = model_ops  # how the graph computes, not what (--model_ops)
        self.report = report
        self.evaluate_fn = evaluate_fn
        set_precision_policy(config.mixed_precision)
        self.strategy = build_strategy(config)
        self.chief = is_chief(self.strategy)
        self.run_dir = config.run_dir
        if self.chief:  # before any work: an unwritable run folder fails now, not at the first save
            prepare_run_folder(self.run_dir)
        if not config.retrain and checkpoints.latest_training_checkpoint(self.run_dir):
            check_run_model_config(self.run_dir, config)  # a resume builds the run folder's model
        self.train_samples, self.eval_samples = select_samples(config)
        # Validation runs with --do_online_eval (an eval list) or --validation_split (held-out scenes).
        self.evaluating = bool(self.eval_samples) and self.evaluate_fn is not None
        self.accumulation = config.gradient_accumulation_steps
        self.samples_per_step = config.samples_per_step
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = config.num_steps or config.num_epochs * self.steps_per_epoch
        seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
        # Before the model: each layer's initializer takes its seed from Python's random when built.
        # A seeded CPU run is then bit-exact (tests/test_reproducibility.py) without TF op
        # determinism, which is process-wide and fails XLA's MaxPool gradient (--jit_compile);
        # GPU users who need exact reruns set TF_DETERMINISTIC_OPS=1 (docs/design.md §5.8).
        keras.utils.set_random_seed(seed)
        self._build(seed, loss_fn)
        self._writer = None  # summaries/, opened on first use (see writer)
        self.best: Dict[str, float] = {}
        self.last_checkpoint: Optional[str] = None
        self.steps_run = 0  # steps the last train() call ran (0: the run folder had none left)
        self._eval_summary_writer = None  # --eval_summary_directory, opened by _eval_writer

    # ---------------------------------------------------------------- set-up
    def _steps_per_epoch(self) -> int:
        """Whole steps in one epoch; a ConfigError without one, or for a batch the replicas
        cannot share."""
        data, count = self.config.data, len(self.train_samples)
        steps = steps_per_epoch(count, self.samples_per_step)
        if steps < 1:
            field, source = (("tfrecord_path", data.tfrecord_path) if data.tfrecord_path
                             else ("filenames_file", data.filenames_file))
            raise ConfigError(field, f"{source!r} has {count} training samples, fewer than one step "
                                     f"of {self.samples_per_step} (--batch_size x "
                                     "--gradient_accumulation_steps)")
        replicas = self.strategy.num_replicas_in_sync
        if data.batch_size % replicas:
            raise ConfigError("batch_size", f"{data.batch_size} must be divisible by the {replicas} "
                                            "replicas")
        return steps

    def _build(self, seed: int, loss_fn: Optional[Callable]) -> None:
        """Model (frozen parts marked), optimizer, run state and step function; their checkpoint."""
        config = self.config
        with self.strategy.scope():
            # Spatial size left open: the same model trains on crops and evaluates full frames.
            try:
                self.model = bts_model.build_bts_model(config.model, self.model_ops)
            except ConfigError:
                raise
            except ValueError as err:  # e.g. keras.applications weights that do not load
                raise TrainingError(str(err)) from None
            self.frozen = apply_freezing(self.model, config.model.encoder, config.first_blocks)
            if config.bn_no_track_stats:
                count = len(use_moving_statistics(self.model))
                LOG.info("--bn_no_track_stats: %d BN layers normalise with their moving statistics "
                         "and keep them", count)
            self.optimizer = make_optimizer(config, self.model, self.total_steps)
            self.state = RunState.create(seed)
            self.steps = StepFunctions(self.strategy, self.model, self.optimizer, config, loss_fn)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, epoch=self.state.epoch,
            step_in_epoch=self.state.step_in_epoch, data_seed=self.state.data_seed)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=config.keep_checkpoints,
            checkpoint_name="ckpt")

    def _checkpoint_dir(self) -> str:
        if self.chief:
            return self.run_dir
        # Non-chief workers take part in the save (it is collective) but write to a scratch dir.
        return os.path.join(tempfile.gettempdir(), f"bts_worker_{os.getpid()}")

    @property
    def writer(self):
        """The run's TensorBoard writer, opened on first use: rerunning a finished run adds no
        event file to its folder."""
        if self._writer is None:
            self._writer = (tf.summary.create_file_writer(os.path.join(self.run_dir, "summaries"))
                            if self.chief else tf.summary.create_noop_writer())
        return self._writer

    @property
    def step(self) -> int:
        return int(inner_optimizer(self.optimizer).iterations.numpy())

    def restore_or_init(self) -> str:
        """Resume from the run folder's latest checkpoint, else initialise; returns what happened."""
        latest = None if self.config.retrain else checkpoints.latest_training_checkpoint(self.run_dir)
        if latest:
            checkpoints.restore_strict(self.checkpoint, latest, self.model)
            self.last_checkpoint = latest
            self._load_best()
            return f"resumed from {latest} at step {self.step}"
        if self.config.checkpoint_path:
            path = checkpoints.load_model_weights(self.model, self.config.checkpoint_path)
            return f"initialised weights from {path}"
        return self._load_pretrained_encoder()

    def _load_pretrained_encoder(self) -> str:
        encoder = self.config.model.encoder
        path = self.config.pretrained_model or default_pretrained_path(encoder)
        if path == bts_model.IMAGENET:
            return f"encoder initialised from keras.applications ImageNet weights ({encoder})"
        if path and tf.io.gfile.exists(path):
            from utils.pretrained import PretrainedWeightsError, load_encoder_weights

            try:
                count = load_encoder_weights(self.model, path)
            except PretrainedWeightsError as err:
                raise ConfigError("pretrained_model", f"{path}: {err} (does it match --encoder "
                                                      f"{encoder}?)") from None
            return f"encoder initialised from {path} ({count} tensors)"
        from utils.pretrained import imagenet_weights_hint

        hint = imagenet_weights_hint(encoder)  # the script, flag or fact for this encoder
        if not path and not bts_model.encoder_spec(encoder).imagenet:  # none exist: nothing is missing
            LOG.info("%s", hint)
            return "random initialisation"
        where = f"at --pretrained_model {path!r}" if path else "(no --pretrained_model)"
        LOG.warning("no ImageNet encoder weights %s: training %s from random initialisation (%s)",
                    where, encoder, hint)
        return "random initialisation"

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> str:
        self._assert_finite_weights(f"ckpt-{self.step}")
        prefix = os.path.join(self._checkpoint_dir(), f"ckpt-{self.step}")
        try:
            path = self.manager.save(checkpoint_number=self.step)
        except COLLECTIVE_ERRORS:  # a lost multi-worker peer, not a write fault (bts_main.py)
            raise
        except write_errors() as err:  # full disk, folder gone read-only, ...
            raise self._write_failed(prefix, err, partial=prefix + TF_SAVE_TEMP_SUFFIX) from None
        if self.chief:
            self.last_checkpoint = path
            LOG.info("saved %s", path)
        else:
            shutil.rmtree(self._checkpoint_dir(), ignore_errors=True)
        return path

    def _write_run_files(self) -> None:
        """The run folder's arguments.txt and bts_config.json (chief only), before any ckpt-N."""
        if not self.chief:
            return
        if self.config.argument_text:
            arguments_file = os.path.join(self.run_dir, checkpoints.ARGUMENTS_FILE)
            try:
                atomic_write_text(arguments_file, self.config.argument_text)
            except write_errors() as err:
                raise self._write_failed(arguments_file, err) from None
        self._write_model_config(self.run_dir)

    def _write_model_config(self, folder: str) -> None:
        """``folder/bts_config.json``: how to rebuild the model of the checkpoints in ``folder``."""
        try:
            checkpoints.write_model_config(folder, saved_model_config(self.config.model))
        except write_errors() as err:
            raise self._write_failed(os.path.join(folder, MODEL_CONFIG_NAME), err) from None

    def _best_path(self) -> str:
        return os.path.join(self.run_dir, checkpoints.BEST_DIR, checkpoints.BEST_METRICS_FILE)

    def _load_best(self) -> None:
        if tf.io.gfile.exists(self._best_path()):
            with tf.io.gfile.GFile(self._best_path()) as handle:
                self.best = {k: v["value"] for k, v in json.load(handle).items()}

    def _save_best(self, metrics: Dict[str, float]) -> None:
        """Keep the best weights per ``--best_metric`` (one file, replaced atomically), as the
        validation protocol (``--online_eval_protocol``) scored them; the record names it."""
        name = self.config.best_metric
        if name not in metrics or not is_better(name, metrics[name], self.best.get(name)):
            return
        self.best[name] = metrics[name]
        if not self.chief:
            return
        folder = os.path.join(self.run_dir, checkpoints.BEST_DIR)
        path = os.path.join(folder, f"model-best_{name}.weights.h5")
        self._assert_finite_weights(path)
        self._write_model_config(folder)  # first: best/ never holds weights it cannot describe
        record = {name: {"value": metrics[name], "step": self.step, "metrics": metrics,
                         "protocol": self.config.evaluation.protocol}}
        try:
            atomic_write(path, self.model.save_weights)
            atomic_write_text(self._best_path(), json.dumps(record, indent=2))
        except write_errors() as err:
            raise self._write_failed(path, err) from None
        LOG.info("new best %s %.5f at step %d -> %s", name, metrics[name], self.step, path)

    def save_final_model(self) -> Optional[str]:
        if not self.chief:
            return None
        path = os.path.join(self.run_dir, checkpoints.MODEL_FILE)
        self._assert_finite_weights(path)
        try:
            atomic_write(path, self.model.save)
        except write_errors() as err:
            raise self._write_failed(path, err) from None
        return path

    def _write_failed(self, target: str, err: BaseException,
                      partial: Optional[str] = None) -> TrainingError:
        """One line for a save that failed; its partial files (``partial``) are removed first."""
        if partial and self.chief:
            try:
                if tf.io.gfile.exists(partial):
                    tf.io.gfile.rmtree(partial)
            except write_errors():
                pass  # the next start-up removes it (prepare_run_folder)
        return TrainingError(f"cannot write {target}: {write_failure_reason(err)}; stopped at "
                             f"step {self.step}, the earlier checkpoints are intact (last good: "
                             f"{self._last_good()})")

    # ---------------------------------------------------------------- logging and eval
    def _log_scalars(self, loss: float) -> None:
        lr = float(inner_optimizer(self.optimizer).learning_rate)
        with self.writer.as_default(step=self.step):
            tf.summary.scalar("silog_loss", loss)
            tf.summary.scalar("learning_rate", lr)

    def _log_images(self, batch, outputs) -> None:
        local = lambda t: self.strategy.experimental_local_results(t)[0]  # noqa: E731
        max_depth = float(self.config.model.max_depth)
        images = {
            "image": visualization.denormalize(local(batch["image"]), self.config.model.encoder),
            "depth_gt": visualization.colorize(local(batch["depth"]), max_depth),
            "depth_est": visualization.colorize(local(outputs["depth"]), max_depth),
        }
        for name, key in (("lpg8x8", "depth_8x8_scaled"), ("lpg4x4", "depth_4x4_scaled"),
                          ("lpg2x2", "depth_2x2_scaled")):
            images[name] = visualization.colorize(local(outputs[key]) * max_depth, max_depth)
        images["reduc1x1"] = visualization.colorize(local(outputs["reduc1x1"]), 1.0)
        with self.writer.as_default(step=self.step):
            for name, value in images.items():
                tf.summary.image(name, value, max_outputs=4)

    def _eval_writer(self):
        """Online-eval scalars go to ``{--eval_summary_directory}/{model_name}`` when it is set
        (upstream BTS: one folder comparing the eval curves of many runs), else to summaries/."""
        if not self.config.eval_summary_directory or not self.chief:
            return self.writer
        if self._eval_summary_writer is None:  # created on first use
            self._eval_summary_writer = tf.summary.create_file_writer(
                os.path.join(self.config.eval_summary_directory, self.config.model_name))
        return self._eval_summary_writer

    def maybe_evaluate(self) -> Optional[Dict[str, float]]:
        if self.evaluate_fn is None or not self.eval_samples:
            return None
        metrics = self.evaluate_fn(self.model, self.eval_samples)
        writer = self._eval_writer()
        with writer.as_default(step=self.step):
            for name in METRIC_NAMES:
                if name in metrics:
                    tf.summary.scalar(f"eval/{name}", metrics[name])
        writer.flush()  # evaluations are rare; TensorBoard shows each one at once
        LOG.info("step %d eval: %s", self.step,
                 ", ".join(f"{k} {metrics[k]:.4f}" for k in METRIC_NAMES if k in metrics))
        self._save_best(metrics)
        if self.report is not None:
            self.report(self.step, metrics)
        return metrics

    # ---------------------------------------------------------------- loop
    def _suspects(self, epoch: int, skip: int):
        """This epoch's samples in reading order from step ``skip`` on (None for shards)."""
        if isinstance(self.train_samples, bts_dataloader.ShardSet):
            return None  # shard records were checked by the converter; errors name the record
        base_seed = bts_dataloader.epoch_seed(int(self.state.data_seed.numpy()), epoch, True)
        order = bts_dataloader.train_order(len(self.train_samples), base_seed)
        order = np.roll(order, -skip * self.samples_per_step)
        return [self.train_samples[i] for i in order]

    def _check_finite(self, loss: float, finite: bool = True) -> None:
        """Stop at a step whose loss or gradients are not finite (nothing of it is saved)."""
        if not math.isfinite(loss) or not finite:
            what = f"loss became {loss}" if not math.isfinite(loss) else "a gradient became non-finite"
            raise TrainingError(f"{what} at step {self.step}; stopping without saving. "
                                f"Last good checkpoint: {self._last_good()}")

    def _last_good(self) -> str:
        return self.last_checkpoint or "none (no checkpoint was written yet)"

    def _assert_finite_weights(self, target: str) -> None:
        """Refuse to write ``target`` from weights holding NaN/Inf (checked before every save)."""
        bad = [v.path for v in self.model.weights if not np.all(np.isfinite(v.numpy()))]
        if bad:
            raise TrainingError(f"{len(bad)} weights are not finite at step {self.step} (first: "
                                f"{bad[0]}); not writing {target}. Last good checkpoint: "
                                f"{self._last_good()}")

    def train(self, stop_at: Optional[int] = None) -> Dict[str, float]:
        """Run until ``total_steps`` (or ``stop_at``); returns the last loss and eval metrics.

        A run folder already at that step (the same command rerun after it finished) trains,
        evaluates and rewrites nothing: ``steps_run`` stays 0 and the result is empty."""
        stop = min(self.total_steps, stop_at or self.total_steps)
        self.steps_run = 0
        message = self.restore_or_init()
        LOG.info("%s; %d samples, %d steps/epoch, %d total steps, %d replica(s)", message,
                 len(self.train_samples), self.steps_per_epoch, self.total_steps,
                 self.strategy.num_replicas_in_sync)
        if self.last_checkpoint and self.step >= stop:
            self._complete_finished_run()
            return {}
        self._write_run_files()
        last = {"loss": float("nan")}
        if self.evaluating and self.step == 0:
            LOG.info("baseline evaluation of the initial weights")
            last.update(self.maybe_evaluate() or {})
        start_step, started = self.step, time.time()
        self._run_steps(stop, last)
        self._finish(last)
        elapsed = time.time() - started
        self.steps_run = self.step - start_step
        if self.step > start_step:
            LOG.info("%d steps in %.1f s (%.2f samples/s)", self.step - start_step, elapsed,
                     (self.step - start_step) * self.samples_per_step / max(elapsed, 1e-9))
        return last

    def _complete_finished_run(self) -> None:
        """A resumed run with no step left: only a final model.keras that a run stopped before
        writing (killed between its last checkpoint and the export) is still made."""
        if self.chief and not tf.io.gfile.exists(os.path.join(self.run_dir, checkpoints.MODEL_FILE)):
            LOG.info("writing the missing %s of the finished run", checkpoints.MODEL_FILE)
            self.save_final_model()

    def _run_steps(self, stop: int, last: Dict[str, float]) -> None:
        """Epochs of steps until step ``stop``; Ctrl-C finishes the step, saves and re-raises."""
        progress = tqdm(total=stop, initial=self.step, desc="train", unit="step",
                        disable=not self.chief, dynamic_ncols=True)
        interrupted = DeferredInterrupt()
        with logging_redirect_tqdm():  # log lines above the bar, never glued onto it
            try:
                interrupted.install()
                while self.step < stop:
                    self._run_epoch(stop, last, progress, interrupted)
            except KeyboardInterrupt:
                LOG.warning("interrupted at step %d: saving a checkpoint before exiting", self.step)
                self.save_checkpoint()
                raise
            finally:
                interrupted.uninstall()
                progress.close()
                self.writer.flush()

    def _run_epoch(self, stop: int, last: Dict[str, float], progress, interrupted) -> None:
        """The current epoch from its saved position up to step ``stop``. The epoch counter moves
        on only when its batches ran out, so a run stopped mid-epoch resumes mid-epoch."""
        epoch, skip = int(self.state.epoch.numpy()), int(self.state.step_in_epoch.numpy())
        dataset = epoch_dataset(self.config.data, self.train_samples, epoch, skip,
                                int(self.state.data_seed.numpy()), self.samples_per_step,
                                last_batch_policy(self.strategy.num_replicas_in_sync, self.accumulation))
        for batch in epoch_batches(self.strategy, dataset, self._suspects(epoch, skip)):
            loss_t, finite, outputs = self.steps.train_step(batch)
            loss = float(loss_t)
            self._check_finite(loss, bool(finite))
            self.state.step_in_epoch.assign_add(1)
            if interrupted.requested:  # Ctrl-C: this step is done; save and stop
                raise KeyboardInterrupt
            last["loss"] = loss
            progress.update(1)
            lr = float(inner_optimizer(self.optimizer).learning_rate)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", epoch=epoch, refresh=False)
            self._after_step(loss, batch, outputs, last)
            if self.step >= stop:
                return
        self.state.epoch.assign_add(1)
        self.state.step_in_epoch.assign(0)

    def _after_step(self, loss: float, batch, outputs, last: Dict[str, float]) -> None:
        """What the loop frequencies ask for at this step: logs, evaluation, a checkpoint."""
        step, config = self.step, self.config
        if step % config.log_freq == 0 or step == 1:
            self._log_scalars(loss)
            self._log_images(batch, outputs)
        if self.evaluating and step % config.eval_freq == 0:
            last.update(self.maybe_evaluate() or {})
        if step % config.save_freq == 0:
            self.save_checkpoint()

    def _finish(self, last: Dict[str, float]) -> None:
        """The last step's checkpoint and evaluation (unless the loop just made them), model.keras."""
        saved = int(self.last_checkpoint.rsplit("-", 1)[-1]) if self.last_checkpoint else -1
        if self.step != saved:
            self.save_checkpoint()
        if self.evaluating and self.step % self.config.eval_freq != 0:
            last.update(self.maybe_evaluate() or {})
        self.save_final_model()


def saved_model_config(model: BtsConfig) -> BtsConfig:
    """The BtsConfig a run folder records: ImageNet weights only initialise training (a reader
    loads the checkpoint over them), so a rebuild never downloads them."""
    return dataclasses.replace(model, imagenet_weights=False)


# BtsConfig fields a resumed run must share with its run folder, each with the flag that sets it.
RESUME_MODEL_FIELDS = (("encoder", "encoder"), ("densenet", "encoder"), ("bts_size", "bts_size"),
                       ("max_depth", "max_depth"), ("focal_normaliser", "dataset"))


def check_run_model_config(run_dir: str, config: TrainConfig) -> None:
    """A resumed run builds the model its run folder's ``bts_config.json`` describes: a
    ConfigError names the first setting that differs (a folder without the file passes)."""
    saved = checkpoints.read_model_config(run_dir)
    if saved is None:
        return
    path = checkpoints.model_config_path(run_dir)
    for field, flag in RESUME_MODEL_FIELDS:
        ours, theirs = getattr(config.model, field), getattr(saved, field)
        if ours != theirs:
            shown = config.dataset if flag == "dataset" else _shown(ours)
            raise ConfigError(flag, f"{shown} does not match the run folder's {field} "
                                    f"{_shown(theirs)} ({path})")


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class DeferredInterrupt:
    """SIGINT handler that only raises a flag, so Ctrl-C never lands inside TF (tracing, a kernel);
    the loop saves a checkpoint after the current step and stops. A second Ctrl-C aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        LOG.warning("Ctrl-C: saving a checkpoint after this step, then stopping (again to abort)")
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


# --------------------------------------------------------------------------------------------
# Which samples train and which evaluate
# --------------------------------------------------------------------------------------------
def scene_of(sample, dataset: str) -> str:
    """Scene (NYU: first folder of the RGB path) or drive (KITTI: the ``*_sync`` folder)."""
    parts = [p for p in sample.line.split()[0].replace("\\", "/").split("/") if p and p != "."]
    if dataset == "kitti":
        drives = [p for p in parts if p.endswith("_sync")]
        return drives[0] if drives else parts[0]
    return parts[0] if len(parts) > 1 else ""


def split_by_scene(samples, fraction: float, dataset: str, seed: int = 0):
    """Hold out about ``fraction`` of the scenes (never splitting one); returns (train, val)."""
    scenes = sorted({scene_of(s, dataset) for s in samples})
    if len(scenes) < 2:
        raise ConfigError("validation_split", "needs at least two scenes/drives in the training list")
    order = np.random.default_rng(seed).permutation(len(scenes))
    count = min(len(scenes) - 1, max(1, round(fraction * len(scenes))))
    held = {scenes[i] for i in order[:count]}
    train = [s for s in samples if scene_of(s, dataset) not in held]
    val = [s for s in samples if scene_of(s, dataset) in held]
    return train, val


def select_samples(config: TrainConfig):
    """(training samples, evaluation samples) from the list files and ``validation_split``.

    With ``tfrecord_path`` the training samples are the shards' records (a
    ``bts_dataloader.ShardSet``, counted and checked here); validation then needs its own list
    (``eval_data``), since shards cannot be split by scene (TrainConfig refuses the split).
    Every listed local file must exist (checked once, before step 1).
    """
    data = config.data
    if data.tfrecord_path:
        train = bts_dataloader.open_shards(data.tfrecord_path)
    else:
        train = bts_dataloader.read_filenames_file(data.filenames_file, data.data_path, data.gt_path)
    evaluation = []
    if config.validation_split > 0:
        train, evaluation = split_by_scene(train, config.validation_split, config.dataset,
                                           config.seed or 0)
    elif config.do_online_eval:
        listing = config.eval_data
        evaluation = bts_dataloader.read_filenames_file(listing.filenames_file, listing.data_path,
                                                        listing.gt_path)
    for samples in (train, evaluation):
        if not isinstance(samples, bts_dataloader.ShardSet):
            bts_dataloader.check_files_exist(samples)
    return train, evaluation

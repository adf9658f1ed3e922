# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The GPU benchmark of ``gpu_check.py`` on Keras 3's JAX backend, for machines without TensorFlow.

    python -m benchmarks.gpu_check_jax --bench_output gpu_jax.json     # on a GPU machine with JAX
    python -m benchmarks.gpu_check_jax --quick --cases quick_gpu_forward_64x96_b1_fp32   # smoke run

The same ``bts_model.py`` graph (DenseNet-161 BTS, random weights) is built under
``KERAS_BACKEND=jax`` and run through ``jax.jit`` of ``model.stateless_call``: forward latency
(inference BN), one silog + AdamW training step (batch-statistics BN, donated state; fp16 with
dynamic loss scaling), and the NYU test workload (654 synthetic 480×640 uint8 images, normalised
on the device, batch-1 forward each, host-to-device copies included). Cases, timing and JSON are
``gpu_check.py``'s. What differs from the TensorFlow runtime: XLA compiles every step (TF runs
oneDNN/cuDNN kernels op by op unless ``--jit_compile``), and BN is Keras's (the fused-kernel BN of
``bts_model.BatchNorm`` is TensorFlow-only). Training and evaluation in this project use TF.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

# First, before anything imports Keras: importing it sets KERAS_BACKEND=jax (Keras reads it once).
from benchmarks import _jax_backend  # noqa: F401  (imported for that side effect)

import jax
import jax.numpy as jnp
import keras
import numpy as np

from benchmarks import common
from bts_losses import silog_loss
from utils.arguments import parse_args
from utils.datasets import get_dataset_facts
from utils.encoders import IMAGENET_MEAN, IMAGENET_STD

LOG = logging.getLogger("gpu_check_jax")
Case = common.Case


def _values(variables) -> List[jax.Array]:
    return [variable.value for variable in variables]


def make_forward_step(model: keras.Model) -> Callable:
    """Jitted inputs → depth (inference BN) over the model's current weights."""
    trainable, non_trainable = _values(model.trainable_variables), _values(model.non_trainable_variables)

    @jax.jit
    def forward(trainable, non_trainable, image, focal):
        depth, _ = model.stateless_call(trainable, non_trainable, {"image": image, "focal": focal},
                                        training=False)
        return depth

    return lambda batch: forward(trainable, non_trainable, batch["image"], batch["focal"])


def make_train_step(model: keras.Model, precision: str, min_depth: float) -> Callable:
    """Jitted silog/AdamW step; the state lives in the closure and is donated to each call."""
    optimizer = common.make_optimizer(precision)
    optimizer.build(model.trainable_variables)
    state = {"trainable": _values(model.trainable_variables),
             "non_trainable": _values(model.non_trainable_variables),
             "optimizer": _values(optimizer.variables)}

    def loss_fn(trainable, non_trainable, optimizer_values, image, focal, depth_gt):
        depth, non_trainable = model.stateless_call(
            trainable, non_trainable, {"image": image, "focal": focal}, training=True)
        loss = silog_loss(depth, depth_gt, min_depth)
        # As Keras's own JAX trainer: the loss scale variable is read through a stateless scope.
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
            scaled = optimizer.scale_loss(loss)
        return scaled, (loss, non_trainable)

    def step(trainable, non_trainable, optimizer_values, image, focal, depth_gt):
        grads, (loss, non_trainable) = jax.grad(loss_fn, has_aux=True)(
            trainable, non_trainable, optimizer_values, image, focal, depth_gt)
        trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
        return loss, trainable, non_trainable, optimizer_values

    step = jax.jit(step, donate_argnums=(0, 1, 2))  # state updated in place: batch 16 fits

    def run(batch):
        loss, state["trainable"], state["non_trainable"], state["optimizer"] = step(
            state["trainable"], state["non_trainable"], state["optimizer"],
            batch["image"], batch["focal"], batch["depth"])
        return loss

    return run


def _fetch(result) -> None:
    np.asarray(jnp.sum(result))


def gpu_peak_mib() -> Optional[float]:
    """Peak device memory of the process so far (JAX cannot reset it), MiB."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def run_case(case: Case, quick: bool, warmup: int, repeats: int) -> Dict[str, object]:
    keras.backend.clear_session()
    load_before = os.getloadavg()[0]
    model = common.build_model(case, quick)
    batch = {key: jnp.asarray(value) for key, value in common.synthetic_arrays(case).items()}
    if case.kind == "forward":
        step = make_forward_step(model)
    else:
        step = make_train_step(model, case.precision,
                               get_dataset_facts(case.dataset).min_depth_eval)
    LOG.info("%s: compiling and timing (%d warm-up, %d repeats)", case.name, warmup, repeats)
    record = dataclasses.asdict(case)
    record.update(common.time_calls(step, batch, warmup, repeats, _fetch))
    record.update(images_per_s=case.batch / record["median_s"], peak_rss_mib=common.peak_rss_mib(),
                  gpu_peak_mib_so_far=gpu_peak_mib(), load_avg_1min_before=load_before)
    keras.mixed_precision.set_global_policy("float32")
    return record


def nyu_test_workload(precision: str, quick: bool, num_images: int) -> Dict[str, object]:
    """Seconds for ``num_images`` synthetic uint8 images: copy, normalise, batch-1 forward each."""
    height, width = common.QUICK_SIZE if quick else (480, 640)
    case = Case("eval", "forward", height, width, 1, precision)
    model = common.build_model(case, quick)
    forward = make_forward_step(model)
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    focal = jnp.asarray([518.8579], jnp.float32)

    @jax.jit
    def normalise(image_u8):
        return (image_u8.astype(jnp.float32) / 255.0 - mean) / std

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (8, 1, height, width, 3), dtype=np.uint8)  # cycled: speed only
    _fetch(forward({"image": normalise(pool[0]), "focal": focal}))  # compile outside the timing
    start = time.perf_counter()
    last = None
    for index in range(num_images):
        last = forward({"image": normalise(pool[index % len(pool)]), "focal": focal})
    _fetch(last)
    seconds = time.perf_counter() - start
    keras.mixed_precision.set_global_policy("float32")
    return {"precision": precision, "images": num_images, "seconds": seconds,
            "images_per_s": num_images / seconds,
            "upstream_seconds_rtx2080ti": common.UPSTREAM_NYU_TEST_SECONDS}


def environment() -> Dict[str, object]:
    device = jax.devices()[0]
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "backend": "jax",
            "jax": jax.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "platform": device.platform, "device_kind": device.device_kind,
            "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(groups=("bench",), argv=argv, prog="gpu_check_jax.py",
                      description="BTS speed on a GPU under Keras's JAX backend.")
    common.check_repeats(args)
    cases = common.select_gpu_cases(args.cases, args.quick)
    output = args.bench_output or common.default_output("gpu_check_jax")
    payload: Dict[str, object] = {"environment": environment(), "quick": args.quick, "model": [],
                                  "nyu_test_workload": []}
    # The test-set workload first: it is the figure upstream publishes, and a cut-off run keeps it.
    num_images = 16 if args.quick else common.NYU_TEST_IMAGES
    for precision in ("fp32", "bf16"):
        payload["nyu_test_workload"].append(nyu_test_workload(precision, args.quick, num_images))
        common.write_json(output, payload)
    for case in cases:
        payload["model"].append(run_case(case, args.quick, args.warmup, args.repeats))
        LOG.info("%s: median %.4f s", case.name, payload["model"][-1]["median_s"])
        common.write_json(output, payload)  # after every case: a cut-off run keeps its results
    common.print_gpu_report(payload["model"], payload["nyu_test_workload"], output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

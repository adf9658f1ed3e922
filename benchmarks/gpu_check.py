# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Prepared GPU benchmark: run it on a machine with a GPU and ``tensorflow[and-cuda]==2.21.0``.

    pip install -r requirements-gpu.txt                               # on the GPU machine
    python -m benchmarks.gpu_check --bench_output gpu_results.json    # ~5 min on one GPU
    python -m benchmarks.gpu_check --quick                            # tiny model, smoke test

Measures, each after warm-up (median/min/max of ``--repeats``):

* forward 480×640 at batch 1 and batch 8, fp32, bf16 and fp16 (inference BN);
* training step 416×544 (silog + AdamW, batch-statistics BN) at batch 4 and 16, bf16 and fp16
  (fp16 with dynamic loss scaling), plus fp32 at batch 4 as the reference;
* the NYU test-set workload: 654 synthetic 480×640 uint8 images through normalisation and the
  batch-1 forward pass (a ``tf.data`` pipeline feeding the GPU), total seconds, fp32 and bf16.
  Upstream reports 654 NYU images in 34 s on an RTX 2080 Ti (PyTorch, fp32).

Speed only: inputs are synthetic and the weights random. TF enables TF32 matmuls/convolutions on
Ampere and newer by default, and this script leaves it so (it is what users get); the JSON
records the setting. Parity checks on a GPU must disable it first (design §9.4).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

import bts_dataloader
from benchmarks import bench_model, common
from utils.arguments import parse_args

LOG = logging.getLogger("gpu_check")
Case = bench_model.Case

gpu_cases = common.gpu_cases


def nyu_test_workload(precision: str, quick: bool, num_images: int) -> Dict[str, object]:
    """Seconds for ``num_images`` synthetic uint8 images: normalise + batch-1 forward each."""
    height, width = common.QUICK_SIZE if quick else (480, 640)
    model = common.build_model(Case("eval", "forward", height, width, 1, precision), quick)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8)  # cycled: speed only

    def normalise(image_u8):
        return bts_dataloader.normalize_image(tf.cast(image_u8, tf.float32) / 255.0, "torch")

    data = (tf.data.Dataset.from_tensor_slices(pool).repeat().take(num_images)
            .map(normalise, num_parallel_calls=tf.data.AUTOTUNE).batch(1)
            .prefetch(tf.data.AUTOTUNE))
    focal = tf.constant([518.8579], tf.float32)

    @tf.function(reduce_retracing=True)
    def forward(image):
        return model({"image": image, "focal": focal}, training=False)

    bench_model._fetch(forward(next(iter(data))))  # trace outside the timed loop
    start = time.perf_counter()
    last = None
    for image in data:
        last = forward(image)
    bench_model._fetch(last)
    seconds = time.perf_counter() - start
    keras.mixed_precision.set_global_policy("float32")
    return {"precision": precision, "images": num_images, "seconds": seconds,
            "images_per_s": num_images / seconds, "upstream_seconds_rtx2080ti": common.UPSTREAM_NYU_TEST_SECONDS}


def gpu_facts() -> Dict[str, object]:
    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    return {"gpus": [d.get("device_name", "GPU") for d in details],
            "compute_capability": [d.get("compute_capability") for d in details],
            "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(groups=("bench",), argv=argv, prog="gpu_check.py",
                      description="BTS speed on a GPU: forward, training step, NYU test workload.")
    if not tf.config.list_physical_devices("GPU"):
        print("gpu_check.py: error: TensorFlow sees no GPU; pip install -r requirements-gpu.txt "
              "(tensorflow[and-cuda]) on a machine with an NVIDIA GPU "
              "(tf.config.list_physical_devices('GPU') is empty)", file=sys.stderr)
        return 1
    common.check_repeats(args)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # so peak memory is visible
    cases = common.select_gpu_cases(args.cases, args.quick)
    records = []
    for case in cases:
        record = bench_model.run_case(case, quick=args.quick, warmup=args.warmup,
                                      repeats=args.repeats, profile_dir=args.profile_dir,
                                      jit_compile=args.jit_compile)
        record["gpu_peak_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        tf.config.experimental.reset_memory_stats("GPU:0")
        records.append(record)
        LOG.info("%s: median %.4f s", case.name, record["median_s"])
    num_images = 16 if args.quick else common.NYU_TEST_IMAGES
    workload = [nyu_test_workload(precision, args.quick, num_images) for precision in ("fp32", "bf16")]
    payload = {"environment": {**bench_model.environment(), **gpu_facts()}, "quick": args.quick,
               "model": records, "nyu_test_workload": workload}
    output = args.bench_output or bench_model.default_output("gpu_check")
    bench_model.write_json(output, payload)
    common.print_gpu_report(records, workload, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

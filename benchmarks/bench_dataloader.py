# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Train-pipeline throughput at 416x544 from image files and from TFRecords (synthetic NYU data).

    python -m benchmarks.bench_dataloader        # from the repository root

Writes NUM_SAMPLES synthetic 480x640 NYU-layout frames to a temporary folder, converts them to
TFRecords, then times the full NYU training chain (border crop, rotation 2.5 degrees, random crop,
flip, colour augmentation, normalisation, batches of 4) over a few epochs after one warm-up epoch.

Two figures per source: samples/s (wall clock: what this machine gives right now, so it drops
when other processes share the cores) and CPU-ms per sample (user + system time of this process
per sample, much less sensitive to sharing). ``cores * 1000 / CPU-ms`` is the throughput the
pipeline can reach on that many otherwise idle cores.

Anchors on the 2-core development box (PLATFORM notes): the official PyTorch loader gives 95-102
samples/s with 2 workers; one fp32 training step at batch 2 and 416x544 takes ~5.8 s, i.e. the
model consumes ~0.35 samples/s, so the loader must give >= 1.7 samples/s (5x) not to limit it.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Tuple

import tensorflow as tf

import bts_convert_data
import bts_dataloader
from tools.synthetic_data import generate_dataset
from utils.configs import PipelineConfig
from utils.datasets import get_dataset_facts

NUM_SAMPLES = 64
FRAME_SIZE = (480, 640)
INPUT_SIZE = (416, 544)
BATCH_SIZE = 4
EPOCHS = 3
TRAIN_STEP_SAMPLES_PER_S = 2 / 5.8  # fp32 train step, batch 2, 416x544, this box (PLATFORM notes)


def train_args(paths: dict, tfrecord_path: str = "") -> PipelineConfig:
    """The pipeline of the upstream NYU training files (rotation 2.5 degrees)."""
    return PipelineConfig(
        facts=get_dataset_facts("nyu"), normalization="torch", input_height=INPUT_SIZE[0],
        input_width=INPUT_SIZE[1], batch_size=BATCH_SIZE, do_kb_crop=False, do_random_rotate=True,
        degree=2.5, filenames_file=paths["train_filenames"], data_path=paths["data_path"],
        gt_path=paths["gt_path"], tfrecord_path=tfrecord_path, num_threads=-1, deterministic=False,
        seed=None)


def throughput(args: PipelineConfig) -> Tuple[float, float]:
    """(samples/s, CPU-ms/sample) over EPOCHS epochs after one warm-up epoch."""
    for _ in bts_dataloader.make_dataset(args, "train", epoch=0):
        pass
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    for epoch in range(1, EPOCHS + 1):
        for batch in bts_dataloader.make_dataset(args, "train", epoch=epoch):
            count += int(batch["image"].shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, cpu * 1000.0 / count


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_dataset("nyu", tmp, NUM_SAMPLES, 0, *FRAME_SIZE, seed=0)
        samples = bts_dataloader.read_filenames_file(paths["train_filenames"], paths["data_path"],
                                                     paths["gt_path"])
        prefix = os.path.join(tmp, "tfrecords", "nyu-train")
        bts_convert_data.convert(samples, prefix, num_shards=4, num_workers=1)
        results = {"files": throughput(train_args(paths)),
                   "TFRecords": throughput(train_args(paths, prefix))}
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"train pipeline, NYU {FRAME_SIZE[0]}x{FRAME_SIZE[1]} -> {INPUT_SIZE[0]}x{INPUT_SIZE[1]}, "
          f"rotation on, batch {BATCH_SIZE}, {cores} CPUs (load average {load:.1f}), TF {tf.__version__}")
    for name, (rate, cpu_ms) in results.items():
        print(f"  {name:10s} {rate:7.1f} samples/s now, {cpu_ms:5.1f} CPU-ms/sample "
              f"-> {cores * 1000.0 / cpu_ms:6.1f} samples/s on {cores} idle cores; "
              f"{rate / TRAIN_STEP_SAMPLES_PER_S:5.0f}x an fp32 train step")


if __name__ == "__main__":
    main()

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Train-pipeline throughput at 416x544 from image files and from TFRecords (synthetic NYU data).

    python benchmarks/bench_dataloader.py

Writes NUM_SAMPLES synthetic 480x640 NYU-layout frames to a temporary folder, converts them to
TFRecords, then times the full NYU training chain (border crop, rotation, random crop, flip,
colour augmentation, normalisation, batches of 4) over a few epochs after one warm-up epoch.
Anchors on the 2-core development box (docs/PLATFORM notes): the official PyTorch loader gives
95-102 samples/s with 2 workers; one fp32 train step at batch 2 takes ~5 s (~0.4 samples/s).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

import bts_convert_data  # noqa: E402
import bts_dataloader  # noqa: E402
from utils.synthetic_data import generate_dataset  # noqa: E402

NUM_SAMPLES = 64
FRAME_SIZE = (480, 640)
INPUT_SIZE = (416, 544)
BATCH_SIZE = 4
EPOCHS = 3


def train_args(paths: dict, tfrecord_path: str = "") -> argparse.Namespace:
    """The arguments of the upstream NYU training files (rotation 2.5 degrees)."""
    return argparse.Namespace(
        dataset="nyu", encoder="densenet161_bts", input_height=INPUT_SIZE[0], input_width=INPUT_SIZE[1],
        batch_size=BATCH_SIZE, do_kb_crop=False, do_random_rotate=True, degree=2.5,
        filenames_file=paths["train_filenames"], data_path=paths["data_path"], gt_path=paths["gt_path"],
        tfrecord_path=tfrecord_path, num_threads=-1, deterministic=False, seed=None)


def samples_per_second(args: argparse.Namespace) -> float:
    """Mean throughput over EPOCHS epochs after one warm-up epoch."""
    for _ in bts_dataloader.make_dataset(args, "train", epoch=0):
        pass
    count, start = 0, time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        for batch in bts_dataloader.make_dataset(args, "train", epoch=epoch):
            count += int(batch["image"].shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_dataset("nyu", tmp, NUM_SAMPLES, 0, *FRAME_SIZE, seed=0)
        samples = bts_dataloader.read_filenames_file(paths["train_filenames"], paths["data_path"],
                                                     paths["gt_path"])
        prefix = os.path.join(tmp, "tfrecords", "nyu-train")
        bts_convert_data.convert(samples, prefix, num_shards=4, num_workers=1)
        from_files = samples_per_second(train_args(paths))
        from_records = samples_per_second(train_args(paths, prefix))
    print(f"train pipeline, NYU {FRAME_SIZE[0]}x{FRAME_SIZE[1]} -> {INPUT_SIZE[0]}x{INPUT_SIZE[1]}, "
          f"rotation on, batch {BATCH_SIZE}, {os.cpu_count()} CPUs, TF {tf.__version__}")
    print(f"  files:      {from_files:7.1f} samples/s")
    print(f"  TFRecords:  {from_records:7.1f} samples/s")


if __name__ == "__main__":
    main()

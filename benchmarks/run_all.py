# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""One run, one JSON: model speed, input-pipeline throughput and end-to-end ``bts_test.py``.

    python -m benchmarks.run_all                     # full sizes (~50 min on 2 AVX2 cores)
    python -m benchmarks.run_all --quick             # tiny model, few images (CI smoke run)
    python -m benchmarks.run_all --profile_dir /tmp/bts_profile --bench_output results.json

Sections of the JSON (``--bench_output``, default ``benchmarks/results/run_all.json``):

* ``model``: the cases of ``bench_model.py`` (DenseNet-161: forward 480×640 and 352×1216, train
  step 416×544 batch 2, fp32 and bf16; ``resnet50_bts`` and ``resnext101_bts``: forward 480×640
  and train step 416×544 batch 2, fp32), median/min/max seconds after warm-up and peak RSS.
* ``dataloader``: the NYU training chain (``bench_dataloader.py``'s settings: rotation, crops,
  flips, colour, batch 4) from image files and from TFRecords, samples/s per epoch after a
  warm-up epoch (median/min/max over epochs), synthetic 480×640 frames.
* ``end_to_end``: ``bts_test.py`` evaluating a synthetic NYU test list with a saved ``.keras``
  model (random weights: speed only): model seconds per image after the first (median/min/max),
  and images/s over the whole run, reading, metrics and start-up included.
"""
from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence

from benchmarks import bench_model
from utils.arguments import parse_args

LOG = logging.getLogger("run_all")

FRAME_SIZE = (480, 640)  # NYU frames
FULL_SIZES = {"dataloader_samples": 48, "dataloader_epochs": 3, "test_images": 8}
QUICK_SIZES = {"dataloader_samples": 8, "dataloader_epochs": 2, "test_images": 3}


def summarise(values: Sequence[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --------------------------------------------------------------------------------------------
# Input pipeline
# --------------------------------------------------------------------------------------------
def epoch_throughputs(args, epochs: int) -> List[float]:
    """Samples/s of each of ``epochs`` training epochs after one untimed warm-up epoch."""
    import bts_dataloader

    for _ in bts_dataloader.make_dataset(args, "train", epoch=0):
        pass
    rates = []
    for epoch in range(1, epochs + 1):
        count, start = 0, time.perf_counter()
        for batch in bts_dataloader.make_dataset(args, "train", epoch=epoch):
            count += int(batch["image"].shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def run_dataloader_benchmark(num_samples: int, epochs: int, workdir: str) -> Dict[str, object]:
    """Files and TFRecords throughput of the NYU training chain (bench_dataloader's settings)."""
    import bts_convert_data
    import bts_dataloader
    from benchmarks import bench_dataloader
    from tools.synthetic_data import generate_dataset

    paths = generate_dataset("nyu", os.path.join(workdir, "train_data"), num_samples, 0, *FRAME_SIZE,
                             seed=0)
    samples = bts_dataloader.read_filenames_file(paths["train_filenames"], paths["data_path"],
                                                 paths["gt_path"])
    prefix = os.path.join(workdir, "tfrecords", "nyu-train")
    bts_convert_data.convert(samples, prefix, num_shards=2, num_workers=1)
    record = {"frame_size": list(FRAME_SIZE), "input_size": list(bench_dataloader.INPUT_SIZE),
              "batch": bench_dataloader.BATCH_SIZE, "samples": num_samples, "epochs": epochs}
    for source, tfrecord_path in (("files", ""), ("tfrecords", prefix)):
        bench_model.reset_peak_rss()
        rates = epoch_throughputs(bench_dataloader.train_args(paths, tfrecord_path), epochs)
        record[source] = {"samples_per_s": summarise(rates), "per_epoch": rates,
                          "peak_rss_mib": bench_model.peak_rss_mib()}
        LOG.info("dataloader %s: median %.1f samples/s", source, record[source]["samples_per_s"]["median"])
    return record


# --------------------------------------------------------------------------------------------
# End to end: bts_test.py
# --------------------------------------------------------------------------------------------
def save_benchmark_model(path: str, quick: bool) -> None:
    """A randomly initialised NYU model (DenseNet-161, or the tiny encoder) saved as ``.keras``."""
    import keras

    from benchmarks import common

    common.build_model(common.Case("saved", "forward", 0, 0, 1, "fp32"), quick).save(path)
    keras.backend.clear_session()


@contextlib.contextmanager
def recorded_throughput(bts_test) -> Iterator[List[List[float]]]:
    """Record every per-image model time that ``bts_test``'s Throughput sees."""
    runs: List[List[float]] = []
    original = bts_test.Throughput

    class Recorder(original):
        def __init__(self) -> None:
            super().__init__()
            self.times: List[float] = []
            runs.append(self.times)

        def add(self, seconds: float, frames: int = 1) -> None:
            super().add(seconds, frames)
            self.times.append(seconds)

    bts_test.Throughput = Recorder
    try:
        yield runs
    finally:
        bts_test.Throughput = original


def run_end_to_end_benchmark(num_images: int, workdir: str, quick: bool) -> Dict[str, object]:
    """Evaluate a synthetic NYU test list with ``bts_test.main`` and time it."""
    import bts_test
    from tools.synthetic_data import generate_dataset

    paths = generate_dataset("nyu", os.path.join(workdir, "test_data"), 1, num_images, *FRAME_SIZE,
                             seed=1)
    checkpoint = os.path.join(workdir, "bts_random.keras")
    save_benchmark_model(checkpoint, quick)
    argv = ["--mode", "test", "--dataset", "nyu", "--checkpoint_path", checkpoint,
            "--data_path", paths["data_path_eval"], "--gt_path", paths["gt_path_eval"],
            "--filenames_file", paths["test_filenames"], "--eigen_crop",
            "--output_directory", os.path.join(workdir, "result")]
    bench_model.reset_peak_rss()
    with recorded_throughput(bts_test) as runs:
        start = time.perf_counter()
        status = bts_test.main(argv)
        wall = time.perf_counter() - start
    if status != 0 or not runs or len(runs[0]) != num_images:
        raise RuntimeError(f"bts_test.py failed on the synthetic test list (exit {status})")
    times = runs[0]
    steady = times[1:] or times
    return {"images": num_images, "image_size": list(FRAME_SIZE), "encoder": "tiny" if quick else
            "densenet161_bts", "first_image_s": times[0], "model_s_per_image": summarise(steady),
            "model_images_per_s": 1.0 / statistics.median(steady), "wall_s": wall,
            "end_to_end_images_per_s": num_images / wall, "peak_rss_mib": bench_model.peak_rss_mib()}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def format_summary(payload: Dict[str, object]) -> str:
    lines = [bench_model.format_table(payload["model"]), ""]
    loader = payload["dataloader"]
    for source in ("files", "tfrecords"):
        rate = loader[source]["samples_per_s"]
        lines.append(f"input pipeline ({source}): {rate['median']:.1f} samples/s "
                     f"(min {rate['min']:.1f}, max {rate['max']:.1f}), peak RSS "
                     f"{loader[source]['peak_rss_mib']:.0f} MiB")
    e2e = payload["end_to_end"]
    lines.append(f"bts_test.py end to end: {e2e['end_to_end_images_per_s']:.2f} images/s over "
                 f"{e2e['images']} images ({e2e['wall_s']:.1f} s with start-up); model "
                 f"{e2e['model_s_per_image']['median']:.3f} s/image after the first "
                 f"({e2e['model_images_per_s']:.2f} images/s), peak RSS {e2e['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(groups=("bench",), argv=argv, prog="run_all.py",
                      description="All BTS benchmarks in one run, one JSON file.")
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    payload: Dict[str, object] = {"environment": bench_model.environment(), "quick": args.quick}
    payload["model"] = bench_model.run_model_benchmarks(args)
    with tempfile.TemporaryDirectory(prefix="bts_bench_") as workdir:
        payload["dataloader"] = run_dataloader_benchmark(sizes["dataloader_samples"],
                                                         sizes["dataloader_epochs"], workdir)
        payload["end_to_end"] = run_end_to_end_benchmark(sizes["test_images"], workdir, args.quick)
    output = args.bench_output or bench_model.default_output("run_all")
    bench_model.write_json(output, payload)
    print(format_summary(payload))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

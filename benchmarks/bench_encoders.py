# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Encoder table for the README: parameters, skip channels, fp32 forward latency at 480×640.

    python -m benchmarks.bench_encoders                          # every registered encoder
    python -m benchmarks.bench_encoders --cases resnet50 mobilenetv2 --repeats 5
    python -m benchmarks.bench_encoders --quick                  # 64x96, 1 repeat (smoke run)

Each encoder: the full BTS model (decoder width = the encoder's default nf, random weights) on one
480×640 image, forward in a ``tf.function`` (first call = trace, untimed), ``--warmup`` untimed
calls, then ``--repeats`` timed calls; the table shows the fastest (the least disturbed by other
load on a shared machine), the JSON all of them. Prints a Markdown table and writes JSON
(``--bench_output``, default ``benchmarks/results/bench_encoders.json``).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

import bts_model
from utils.arguments import parse_args
from utils.io import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOG = logging.getLogger("bts.bench_encoders")
SKIPPED = ("densenet_tiny",)  # a smoke-test encoder, not a real backbone


def measure(name: str, height: int, width: int, warmup: int, repeats: int) -> Dict[str, object]:
    """Parameters, skip channels and forward latency (s) of BTS with encoder ``name``."""
    keras.backend.clear_session()
    gc.collect()
    spec = bts_model.encoder_spec(name)
    image = keras.Input((None, None, 3), name="image")
    features = spec.build(image)
    channels = [int(features[k].shape[-1]) for k in bts_model.FEATURE_NAMES]
    model = bts_model.build_bts_model(bts_model.BtsConfig(encoder=name))
    encoder = sum(int(np.prod(v.shape)) for v in model.weights if bts_model.is_encoder_variable(v))
    inputs = {"image": tf.random.uniform((1, height, width, 3)), "focal": tf.constant([518.8579])}
    forward = tf.function(lambda x: model(x, training=False))
    started = time.perf_counter()
    forward(inputs).numpy()
    first = time.perf_counter() - started
    for _ in range(warmup):
        forward(inputs).numpy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward(inputs).numpy()
        times.append(time.perf_counter() - started)
    return {"encoder": name, "encoder_params": encoder, "total_params": int(model.count_params()),
            "skip_channels": channels, "nf": spec.default_bts_size, "preprocessing": spec.preprocessing,
            "first_call_s": first, "forward_s": min(times), "median_s": statistics.median(times),
            "times_s": times}


def markdown(records: List[Dict[str, object]], height: int, width: int) -> str:
    rows = [f"| encoder | encoder params | BTS params | skip channels (H/2..H/32) | nf | "
            f"preprocessing | forward {height}×{width} fp32 (best of N) |", "|---|---:|---:|---|---:|---|---:|"]
    for r in records:
        rows.append(f"| `{r['encoder']}` | {r['encoder_params'] / 1e6:.2f} M | {r['total_params'] / 1e6:.2f} M "
                    f"| {', '.join(map(str, r['skip_channels']))} | {r['nf']} | {r['preprocessing']} "
                    f"| {r['forward_s']:.2f} s |")
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(groups=("bench",), argv=argv, prog="bench_encoders.py")
    names = args.cases or [n for n in bts_model.ENCODERS if n not in SKIPPED]
    height, width = (64, 96) if args.quick else (480, 640)
    repeats = 1 if args.quick else args.repeats
    records = []
    for name in names:
        bts_model.encoder_spec(name)  # unknown names fail before any work
        records.append(measure(name, height, width, 0 if args.quick else args.warmup, repeats))
        LOG.info("%s: %.2f s", name, records[-1]["forward_s"])
    output = args.bench_output or os.path.join(ROOT, "benchmarks", "results", "bench_encoders.json")
    atomic_write_text(output, json.dumps({"height": height, "width": width, "records": records},
                                         indent=2) + "\n")
    print(markdown(records, height, width))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""What every benchmark script shares and that needs no TensorFlow: cases, timing, memory, output.

Kept free of TensorFlow so that ``gpu_check_jax.py`` runs on GPU machines that only have JAX.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence

import keras
import numpy as np

import bts_model
from benchmarks._protocol import peak_rss_mib, reset_peak_rss  # noqa: F401  (re-exported)
from utils.datasets import get_dataset_facts
from utils.encoders import DEFAULT_ENCODER
from utils.io import atomic_write_text

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# --quick runs use the registered smoke-test encoder at the smallest decoder width (the test
# suite's tiny model, tests/conftest.py).
QUICK_ENCODER, QUICK_BTS_SIZE = "densenet_tiny", 128
QUICK_SIZE = (64, 96)

NYU_TEST_IMAGES = 654
UPSTREAM_NYU_TEST_SECONDS = 34.0  # RTX 2080 Ti, official PyTorch bts_test.py


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed configuration: a forward pass (inference BN) or a full training step."""

    name: str
    kind: str  # "forward" or "train"
    height: int
    width: int
    batch: int
    precision: str  # key of POLICIES
    dataset: str = "nyu"
    encoder: str = ""  # "": the benchmark model (DenseNet-161, or the tiny encoder with --quick)


def model_config(dataset: str, quick: bool, encoder: str = "") -> "bts_model.BtsConfig":
    """BTS for ``dataset``: with ``encoder`` that encoder at its default nf, else DenseNet-161
    (nf 512), or the tiny encoder (nf 128) for --quick runs."""
    if encoder:
        return bts_model.BtsConfig.for_dataset(dataset, encoder=encoder)
    return bts_model.BtsConfig.for_dataset(dataset, encoder=QUICK_ENCODER if quick else DEFAULT_ENCODER,
                                           bts_size=QUICK_BTS_SIZE if quick else 512)


def build_model(case: Case, quick: bool,
                model_ops: "bts_model.ModelOps" = bts_model.DEFAULT_MODEL_OPS) -> keras.Model:
    """BTS under the case's dtype policy (any Keras backend), its ops chosen by ``model_ops``."""
    keras.mixed_precision.set_global_policy(POLICIES[case.precision])
    return bts_model.build_bts_model(model_config(case.dataset, quick, case.encoder), model_ops)


def check_repeats(args) -> None:
    """One-line error unless ``--repeats`` and ``--warmup`` are at least 1."""
    if args.repeats < 1 or args.warmup < 1:
        raise SystemExit("error: --repeats and --warmup must be >= 1")


def synthetic_arrays(case: Case, seed: int = 0) -> Dict[str, np.ndarray]:
    """Normalised-looking image (B,H,W,3), focal (B,) px and ground-truth depth (B,H,W,1) m.

    Speed does not depend on pixel values; the depth lies in the dataset's evaluation range.
    """
    rng = np.random.default_rng(seed)
    facts = get_dataset_facts(case.dataset)
    shape = (case.batch, case.height, case.width)
    return {"image": rng.standard_normal(shape + (3,), dtype=np.float32),
            "focal": np.full((case.batch,), facts.default_focal, np.float32),
            "depth": rng.uniform(facts.min_depth_eval, facts.max_depth, shape + (1,))
            .astype(np.float32)}


def make_optimizer(precision: str) -> keras.optimizers.Optimizer:
    """AdamW with training's settings; fp16 additionally needs dynamic loss scaling.

    Keras's AdamW, not bts_trainer.TorchAdamW: the same ops per variable (the two differ only in
    where ε goes), and this module must import without TensorFlow (gpu_check_jax.py).
    """
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-2, epsilon=1e-6)
    if precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def gpu_cases(quick: bool) -> List[Case]:
    """Forward 480×640 b1/b8 × fp32/bf16/fp16; train 416×544 b4/b16 × bf16/fp16 and fp32 b4."""
    (fh, fw), (th, tw) = (QUICK_SIZE, QUICK_SIZE) if quick else ((480, 640), (416, 544))
    prefix = "quick_" if quick else ""
    cases = [Case(f"{prefix}gpu_forward_{fh}x{fw}_b{batch}_{precision}", "forward", fh, fw, batch,
                  precision)
             for batch in (1, 8) for precision in ("fp32", "bf16", "fp16")]
    cases.append(Case(f"{prefix}gpu_train_{th}x{tw}_b4_fp32", "train", th, tw, 4, "fp32"))
    cases += [Case(f"{prefix}gpu_train_{th}x{tw}_b{batch}_{precision}", "train", th, tw, batch,
                   precision)
              for batch in (4, 16) for precision in ("bf16", "fp16")]
    return cases


def select_gpu_cases(names, quick: bool) -> List[Case]:
    """The GPU cases named, in the order given (all of the mode's cases when ``names`` is empty)."""
    cases = gpu_cases(quick)
    if not names:
        return cases
    by_name = {case.name: case for case in cases}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SystemExit(f"error: --cases {' '.join(unknown)} unknown; valid: {', '.join(by_name)}")
    return [by_name[name] for name in names]


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def time_calls(step: Callable, batch, warmup: int, repeats: int,
               fetch: Callable[[object], None]) -> Dict[str, float]:
    """Wall time of the first call, then of ``repeats`` calls after ``warmup`` untimed ones.

    ``fetch(result)`` must block until the step's work is done (a device-to-host copy).
    """
    start = time.perf_counter()
    fetch(step(batch))
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        fetch(step(batch))
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fetch(step(batch))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    # CPU seconds (all threads) per call: on a shared machine wall time grows with the load,
    # CPU time much less, so it tells a busy box's numbers apart from the model's own cost.
    return {"first_call_s": first, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "times_s": times, "cpu_median_s": statistics.median(cpu_times)}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def format_table(records: Sequence[Dict[str, object]]) -> str:
    """Markdown table of the model cases."""
    lines = ["| case | batch | median s | min s | max s | CPU s | first call s | img/s | peak RSS MiB "
             "| load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['batch']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['max_s']:.3f} | {r['cpu_median_s']:.2f} | {r['first_call_s']:.1f} | "
                     f"{r['images_per_s']:.2f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['load_avg_1min_before']:.1f} |")
    return "\n".join(lines)


def print_gpu_report(records: Sequence[Dict[str, object]], workload: Sequence[Dict[str, object]],
                     output: str) -> None:
    """The GPU scripts' closing table, test-set workload lines and results path."""
    print(format_table(records))
    for run in workload:
        print(f"NYU test workload ({run['images']} images, {run['precision']}): {run['seconds']:.1f} s "
              f"= {run['images_per_s']:.1f} images/s (upstream PyTorch, RTX 2080 Ti: "
              f"{UPSTREAM_NYU_TEST_SECONDS:.0f} s for {NYU_TEST_IMAGES})")
    print(f"results written to {output}")


def default_output(script: str) -> str:
    return os.path.join(ROOT, "benchmarks", "results", f"{script}.json")


def write_json(path: str, payload: Dict[str, object]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Model speed on this machine: forward latency and training-step time, fp32 and bf16.

    python benchmarks/bench_model.py                      # all cases (~10 min on 2 cores)
    python benchmarks/bench_model.py --cases forward_480x640_bf16 --repeats 10
    python benchmarks/bench_model.py --quick              # tiny model, 64x96 (CI smoke run)
    python benchmarks/bench_model.py --profile_dir /tmp/bts_profile   # + TensorBoard trace

Each case builds the model under its dtype policy, wraps one step in a ``tf.function`` (the first
call traces: reported separately as ``first_call_s``), runs ``--warmup`` untimed calls, then
``--repeats`` timed ones; median/min/max are reported with the process's peak RSS during the case
(VmHWM, reset before each case) and the CPU seconds per call (all threads; on a shared machine
wall time grows with the load much more than CPU time). Inputs are synthetic: speed does not depend on pixel values.
The training step is a plain GradientTape step with the silog loss and AdamW (as bts_main.py's),
batch statistics in every BN. Results go to a table on stdout and to a JSON file.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bts_model  # noqa: E402
from bts_losses import silog_loss  # noqa: E402
from utils.arguments import parse_args  # noqa: E402
from utils.datasets import get_dataset_facts  # noqa: E402
from utils.io import atomic_write_text  # noqa: E402

LOG = logging.getLogger("bench_model")

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# The tiny encoder of the test-suite (tests/conftest.py) for --quick runs.
TINY_DENSENET = bts_model.DenseNetConfig(growth_rate=8, num_init_features=16,
                                         block_config=(1, 1, 1, 1), bn_size=2)
TINY_BTS_SIZE = 128


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


def _cases(prefix: str, forward_sizes, train_size, train_batch: int) -> List[Case]:
    cases = []
    for (height, width), dataset in forward_sizes:
        for precision in ("fp32", "bf16"):
            cases.append(Case(f"{prefix}forward_{height}x{width}_{precision}", "forward",
                              height, width, 1, precision, dataset))
    for precision in ("fp32", "bf16"):
        cases.append(Case(f"{prefix}train_{train_size[0]}x{train_size[1]}_b{train_batch}_{precision}",
                          "train", train_size[0], train_size[1], train_batch, precision))
    return cases


# NYU test size, KITTI benchmark crop, NYU training crop at the upstream batch of 2 per GPU... here.
FULL_CASES = _cases("", [((480, 640), "nyu"), ((352, 1216), "kitti")], (416, 544), 2)
QUICK_CASES = _cases("quick_", [((64, 96), "nyu")], (64, 96), 2)


def select_cases(names: Optional[Sequence[str]], quick: bool) -> List[Case]:
    """The cases named (all of the mode's cases when ``names`` is empty)."""
    table = QUICK_CASES if quick else FULL_CASES
    if not names:
        return list(table)
    known = {case.name: case for case in FULL_CASES + QUICK_CASES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"error: --cases {' '.join(unknown)} unknown; valid: "
                         f"{', '.join(case.name for case in FULL_CASES + QUICK_CASES)}")
    return [known[name] for name in names]


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last reset, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource  # fallback: lifetime peak (ru_maxrss is KiB on Linux)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------
def build_model(case: Case, quick: bool) -> keras.Model:
    """BTS under the case's dtype policy (DenseNet-161, or the tiny encoder for --quick)."""
    keras.mixed_precision.set_global_policy(POLICIES[case.precision])
    config = bts_model.BtsConfig(dataset=case.dataset,
                                 densenet=TINY_DENSENET if quick else None,
                                 bts_size=TINY_BTS_SIZE if quick else 512)
    return bts_model.build_bts_model(config)


def synthetic_inputs(case: Case, seed: int = 0) -> Dict[str, tf.Tensor]:
    """Normalised-looking image (B,H,W,3), focal (B,) px and ground-truth depth (B,H,W,1) m."""
    rng = np.random.default_rng(seed)
    facts = get_dataset_facts(case.dataset)
    shape = (case.batch, case.height, case.width)
    return {
        "image": tf.constant(rng.standard_normal(shape + (3,), dtype=np.float32)),
        "focal": tf.constant(np.full((case.batch,), facts.default_focal, np.float32)),
        "depth": tf.constant(rng.uniform(facts.min_depth_eval, facts.max_depth, shape + (1,))
                             .astype(np.float32)),
    }


def make_forward_step(model: keras.Model, jit_compile: bool = False) -> Callable:
    """tf.function: inputs → depth (inference mode)."""

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def forward(image, focal):
        return model({"image": image, "focal": focal}, training=False)

    return lambda batch: forward(batch["image"], batch["focal"])


def make_optimizer(precision: str) -> keras.optimizers.Optimizer:
    """AdamW as training uses it; fp16 additionally needs dynamic loss scaling."""
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-2, epsilon=1e-6)
    if precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(model: keras.Model, precision: str, min_depth: float,
                    jit_compile: bool = False) -> Callable:
    """tf.function: one silog/AdamW step with batch-statistics BN; returns the loss."""
    optimizer = make_optimizer(precision)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def train_step(image, focal, depth_gt):
        with tf.GradientTape() as tape:
            depth = model({"image": image, "focal": focal}, training=True)
            loss = silog_loss(depth, depth_gt, min_depth)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply(grads, variables)
        return loss

    return lambda batch: train_step(batch["image"], batch["focal"], batch["depth"])


def _fetch(result) -> None:
    """Wait for the step to finish (bring a value to the host; needed on GPUs)."""
    np.asarray(tf.reduce_sum(result))


def time_calls(step: Callable, batch, warmup: int, repeats: int) -> Dict[str, float]:
    """Wall time of the first call, then of ``repeats`` calls after ``warmup`` untimed ones."""
    start = time.perf_counter()
    _fetch(step(batch))
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        _fetch(step(batch))
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        _fetch(step(batch))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    # CPU seconds (all threads) per call: on a shared machine wall time grows with the load,
    # CPU time much less, so it tells a busy box's numbers apart from the model's own cost.
    return {"first_call_s": first, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "times_s": times, "cpu_median_s": statistics.median(cpu_times)}


def profile_step(step: Callable, batch, logdir: str, steps: int = 2) -> None:
    """Write a TensorBoard profile trace of ``steps`` calls (view: tensorboard --logdir DIR)."""
    tf.profiler.experimental.start(logdir)
    try:
        for index in range(steps):
            with tf.profiler.experimental.Trace("step", step_num=index, _r=1):
                _fetch(step(batch))
    finally:
        tf.profiler.experimental.stop()


def run_case(case: Case, *, quick: bool = False, warmup: int = 2, repeats: int = 5,
             profile_dir: str = "", jit_compile: bool = False) -> Dict[str, object]:
    """Build, time (and optionally profile) one case; returns its result record."""
    keras.backend.clear_session()
    gc.collect()
    reset_peak_rss()
    load_before = os.getloadavg()[0]
    model = build_model(case, quick)
    batch = synthetic_inputs(case)
    if case.kind == "forward":
        step = make_forward_step(model, jit_compile)
    else:
        min_depth = get_dataset_facts(case.dataset).min_depth_eval
        step = make_train_step(model, case.precision, min_depth, jit_compile)
    LOG.info("%s: tracing and timing (%d warm-up, %d repeats)", case.name, warmup, repeats)
    timing = time_calls(step, batch, warmup, repeats)
    record = dataclasses.asdict(case)
    record.update(timing)
    record.update(images_per_s=case.batch / timing["median_s"], peak_rss_mib=peak_rss_mib(),
                  load_avg_1min_before=load_before, load_avg_1min_after=os.getloadavg()[0],
                  jit_compile=jit_compile)
    if profile_dir:
        logdir = os.path.join(profile_dir, case.name)
        profile_step(step, batch, logdir)
        record["profile_dir"] = logdir
    keras.mixed_precision.set_global_policy("float32")
    return record


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def environment() -> Dict[str, object]:
    """Versions and machine facts stored with every result file."""
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "devices": devices,
            "gpu": bool(tf.config.list_physical_devices("GPU"))}


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


def default_output(script: str) -> str:
    return os.path.join(ROOT, "benchmarks", "results", f"{script}.json")


def write_json(path: str, payload: Dict[str, object]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def run_model_benchmarks(args, on_case: Optional[Callable[[List[Dict[str, object]]], None]] = None
                         ) -> List[Dict[str, object]]:
    """All selected cases of ``args`` (parsed with the ``bench`` group), in order.

    ``on_case(records_so_far)`` runs after each case (e.g. to save partial results).
    """
    if args.repeats < 1 or args.warmup < 1:
        raise SystemExit("error: --repeats and --warmup must be >= 1")
    records = []
    for case in select_cases(args.cases, args.quick):
        records.append(run_case(case, quick=args.quick, warmup=args.warmup, repeats=args.repeats,
                                profile_dir=args.profile_dir, jit_compile=args.jit_compile))
        LOG.info("%s: median %.3f s", case.name, records[-1]["median_s"])
        if on_case is not None:
            on_case(records)
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(groups=("bench",), argv=argv, prog="bench_model.py",
                      description="Forward and training-step speed of BTS on this machine.")
    output = args.bench_output or default_output("bench_model")
    save = lambda records: write_json(  # noqa: E731  (after every case: long runs keep results)
        output, {"environment": environment(), "quick": args.quick, "model": records})
    records = run_model_benchmarks(args, on_case=save)
    print(format_table(records))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

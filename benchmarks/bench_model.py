# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Model speed on this machine: forward latency and training-step time, fp32 and bf16.

    python -m benchmarks.bench_model                      # all cases (~45 min on 2 AVX2 cores)
    python -m benchmarks.bench_model --cases forward_480x640_bf16 --repeats 10
    python -m benchmarks.bench_model --cases resnext101_bts_forward_480x640_fp32 forward_480x640_fp32
    python -m benchmarks.bench_model --quick              # tiny model, 64x96 (CI smoke run)
    python -m benchmarks.bench_model --profile_dir /tmp/bts_profile   # + TensorBoard trace
    python -m benchmarks.bench_model --model_ops conv1x1=matmul padding=fused   # bts_model.ModelOps

Cases: DenseNet-161 BTS (the default encoder, nf 512) forward at 480x640 (NYU) and 352x1216
(KITTI crop), batch 1, and a training step at 416x544, batch 2, each fp32 and bf16; next to it the
official ``resnet50_bts`` and ``resnext101_bts`` encoders (nf 512), forward 480x640 and training
step 416x544 b2 in fp32 (``<encoder>_forward_480x640_fp32``, ``<encoder>_train_416x544_b2_fp32``).
Each case builds the model under its dtype policy, wraps one step in a ``tf.function`` (the first
call traces: reported separately as ``first_call_s``), runs ``--warmup`` untimed calls, then
``--repeats`` timed ones; median/min/max are reported with the process's peak RSS during the case
(VmHWM, reset before each case) and the CPU seconds per call (all threads; on a shared machine
wall time grows with the load much more than CPU time). Inputs are synthetic: speed does not depend on pixel values.
The training step is a plain GradientTape step with the silog loss and AdamW (as bts_main.py's),
batch statistics in every BN. ``--model_ops KEY=VALUE ...`` (on the command line, not in an
argument file) builds every case's model with that :class:`bts_model.ModelOps` (``conv1x1=conv|matmul``,
``padding=separate|fused``, ``upconv=upsample|subpixel``, or ``standard``; default ``auto``, what
``bts_main.py`` and ``bts_test.py`` build on this machine), recorded in each result. Results go to
a table on stdout and to a JSON file.
"""
from __future__ import annotations

import collections
import dataclasses
import gc
import glob
import logging
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common
from benchmarks.common import (QUICK_SIZE, Case, build_model, default_output, format_table, peak_rss_mib,
                               reset_peak_rss, write_json)
from bts_losses import silog_loss
from bts_model import DEFAULT_MODEL_OPS, STANDARD_MODEL_OPS, ModelOps
from utils.arguments import parse_args
from utils.configs import AUTO_MODEL_OPS, ConfigError
from utils.datasets import get_dataset_facts

LOG = logging.getLogger("bench_model")


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


# The other official encoders timed next to DenseNet-161: the NYU forward pass and the training
# step, fp32 (on CPUs without AMX bf16 convolutions are emulated, and their gradients several
# times slower than fp32: see docs/performance.md).
ENCODER_CASE_ENCODERS = ("resnet50_bts", "resnext101_bts")


def _encoder_cases(encoder: str) -> List[Case]:
    return [Case(f"{encoder}_forward_480x640_fp32", "forward", 480, 640, 1, "fp32", "nyu", encoder),
            Case(f"{encoder}_train_416x544_b2_fp32", "train", 416, 544, 2, "fp32", "nyu", encoder)]


# NYU test size, KITTI benchmark crop, NYU training crop at the upstream batch of 2 per GPU... here.
FULL_CASES = (_cases("", [((480, 640), "nyu"), ((352, 1216), "kitti")], (416, 544), 2)
              + [case for encoder in ENCODER_CASE_ENCODERS for case in _encoder_cases(encoder)])
QUICK_CASES = _cases("quick_", [(QUICK_SIZE, "nyu")], QUICK_SIZE, 2)


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
# --model_ops
# --------------------------------------------------------------------------------------------
MODEL_OPS_FLAG = "--model_ops"


def parse_model_ops(values: Sequence[str]) -> ModelOps:
    """``["conv1x1=matmul", "padding=fused"]``, ``["standard"]`` or ``["auto"]`` (also no words:
    what ``bts_main.py``/``bts_test.py`` build here, ``bts_trainer.resolve_model_ops``) →
    ModelOps; a one-line SystemExit otherwise."""
    from bts_trainer import resolve_model_ops

    try:
        return resolve_model_ops(" ".join(values) or AUTO_MODEL_OPS)
    except ConfigError as err:
        raise SystemExit(f"bench_model.py: error: {MODEL_OPS_FLAG} {err}") from None


def split_model_ops(argv: Sequence[str]):
    """(ModelOps, the other arguments): ``--model_ops`` takes the KEY=VALUE words after it
    (``--model_ops=KEY=VALUE`` works too); everything else goes on to the argument parser."""
    rest, values, index, given = [], [], 0, False
    argv = list(argv)
    while index < len(argv):
        token = argv[index]
        if token == MODEL_OPS_FLAG or token.startswith(MODEL_OPS_FLAG + "="):
            given = True
            if "=" in token:
                values.append(token.split("=", 1)[1])
            index += 1
            while index < len(argv) and not argv[index].startswith("-") and (
                    "=" in argv[index] or argv[index] in (AUTO_MODEL_OPS, STANDARD_MODEL_OPS)):
                values.append(argv[index])
                index += 1
            continue
        rest.append(token)
        index += 1
    if given and not values:
        raise SystemExit(f"bench_model.py: error: {MODEL_OPS_FLAG} needs KEY=VALUE words, "
                         f"'standard' or 'auto', e.g. {MODEL_OPS_FLAG} conv1x1=matmul padding=fused")
    return parse_model_ops(values), rest


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------
def synthetic_inputs(case: Case, seed: int = 0) -> Dict[str, tf.Tensor]:
    """:func:`common.synthetic_arrays` as TensorFlow constants."""
    return {key: tf.constant(value) for key, value in common.synthetic_arrays(case, seed).items()}


def make_forward_step(model: keras.Model, jit_compile: bool = False) -> Callable:
    """tf.function: inputs → depth (inference mode)."""

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def forward(image, focal):
        return model({"image": image, "focal": focal}, training=False)

    return lambda batch: forward(batch["image"], batch["focal"])


def make_train_step(model: keras.Model, precision: str, min_depth: float,
                    jit_compile: bool = False) -> Callable:
    """tf.function: one silog/AdamW step with batch-statistics BN; returns the loss."""
    optimizer = common.make_optimizer(precision)
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
    """:func:`common.time_calls` with TensorFlow's fetch."""
    return common.time_calls(step, batch, warmup, repeats, _fetch)


def profile_step(step: Callable, batch, logdir: str, steps: int = 2) -> None:
    """Write a TensorBoard profile trace of ``steps`` calls (view: tensorboard --logdir DIR)."""
    tf.profiler.experimental.start(logdir)
    try:
        for index in range(steps):
            with tf.profiler.experimental.Trace("step", step_num=index, _r=1):
                _fetch(step(batch))
    finally:
        tf.profiler.experimental.stop()


def op_time_summary(logdir: str, top: int = 10) -> List[Dict[str, object]]:
    """Time per TensorFlow op type in the newest trace under ``logdir``, largest first.

    Sums the host-CPU trace events of the ops (named ``op_name:OpType``) over the profiled steps;
    each row has the op type, milliseconds, share of all op time and number of calls. The same
    numbers as the Profile tab's op statistics, without TensorBoard's profile plugin.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    traces = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not traces:
        return []
    space = xplane_pb2.XSpace()
    with open(traces[-1], "rb") as handle:
        space.ParseFromString(handle.read())
    totals: Dict[str, float] = collections.defaultdict(float)
    calls: Dict[str, int] = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Op events are "op_name:OpType"; skip executor/function spans ("A::B", "X: f").
                if ":" not in name or "::" in name or " " in name:
                    continue
                op_type = name.rsplit(":", 1)[1]
                totals[op_type] += event.duration_ps / 1e9
                calls[op_type] += 1
    everything = sum(totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [{"op": op, "ms": ms, "share": ms / everything, "calls": calls[op]} for op, ms in rows]


def format_op_summary(name: str, rows: Sequence[Dict[str, object]]) -> str:
    lines = [f"{name}: time per op type (profiled steps)", "| op | ms | share | calls |",
             "|---|---|---|---|"]
    lines += [f"| {r['op']} | {r['ms']:.1f} | {100 * r['share']:.1f} % | {r['calls']} |" for r in rows]
    return "\n".join(lines)


def run_case(case: Case, *, quick: bool = False, warmup: int = 2, repeats: int = 5,
             profile_dir: str = "", jit_compile: bool = False,
             model_ops: ModelOps = DEFAULT_MODEL_OPS) -> Dict[str, object]:
    """Build, time (and optionally profile) one case; returns its result record."""
    keras.backend.clear_session()
    gc.collect()
    reset_peak_rss()
    load_before = os.getloadavg()[0]
    model = build_model(case, quick, model_ops)
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
    record["encoder"] = common.model_config(case.dataset, quick, case.encoder).encoder
    record.update(images_per_s=case.batch / timing["median_s"], peak_rss_mib=peak_rss_mib(),
                  load_avg_1min_before=load_before, load_avg_1min_after=os.getloadavg()[0],
                  jit_compile=jit_compile, model_ops=dataclasses.asdict(model_ops))
    if profile_dir:
        logdir = os.path.join(profile_dir, case.name)
        profile_step(step, batch, logdir)
        record["profile_dir"] = logdir
        record["op_time"] = op_time_summary(logdir)
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


def run_model_benchmarks(args, on_case: Optional[Callable[[List[Dict[str, object]]], None]] = None
                         ) -> List[Dict[str, object]]:
    """All selected cases of ``args`` (parsed with the ``bench`` group), in order.

    ``on_case(records_so_far)`` runs after each case (e.g. to save partial results).
    ``args.model_ops`` (a ModelOps, set by :func:`main`) defaults to ``auto``'s choice here.
    """
    common.check_repeats(args)
    model_ops = getattr(args, "model_ops", None) or parse_model_ops([])
    records = []
    for case in select_cases(args.cases, args.quick):
        records.append(run_case(case, quick=args.quick, warmup=args.warmup, repeats=args.repeats,
                                profile_dir=args.profile_dir, jit_compile=args.jit_compile,
                                model_ops=model_ops))
        LOG.info("%s: median %.3f s", case.name, records[-1]["median_s"])
        if on_case is not None:
            on_case(records)
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model_ops, argv = split_model_ops(sys.argv[1:] if argv is None else argv)
    args = parse_args(groups=("bench",), argv=argv, prog="bench_model.py",
                      description="Forward and training-step speed of BTS on this machine. "
                                  f"{MODEL_OPS_FLAG} KEY=VALUE ...: conv1x1=conv|matmul, "
                                  "padding=separate|fused, upconv=upsample|subpixel, or standard "
                                  "(bts_model.ModelOps; default auto: what bts_main.py builds here).")
    args.model_ops = model_ops
    output = args.bench_output or default_output("bench_model")
    save = lambda records: write_json(  # noqa: E731  (after every case: long runs keep results)
        output, {"environment": environment(), "quick": args.quick,
                 "model_ops": dataclasses.asdict(model_ops), "model": records})
    records = run_model_benchmarks(args, on_case=save)
    print(format_table(records))
    for record in records:
        if record.get("op_time"):
            print(format_op_summary(record["name"], record["op_time"]))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

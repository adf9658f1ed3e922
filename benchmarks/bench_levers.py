# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""A/B of the speed levers on this machine: each lever against the same-run baseline.

    python -m benchmarks.bench_levers                        # all levers (~25 min on 2 idle cores)
    python -m benchmarks.bench_levers --levers baseline xla  # a subset
    python -m benchmarks.bench_levers --quick                # tiny model (CI smoke run)

Every lever runs ``bench_model.py``'s cases in a fresh child process (environment-variable levers
only take effect at TensorFlow's start, and one process per variant keeps traces and allocator
state apart), so the variants differ only by the lever. Results: a table of median seconds and
the ratio to the baseline, and JSON (``--bench_output``, default
``benchmarks/results/bench_levers.json``). Run it on an idle machine: the ratios are only as good
as the box is quiet (the load average is recorded with every case).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from utils.io import atomic_write_text

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)

FORWARD = "forward_480x640_fp32"
FORWARD_BF16 = "forward_480x640_bf16"
TRAIN = "train_416x544_b2_fp32"


@dataclasses.dataclass(frozen=True)
class Lever:
    """One variant: environment overrides and/or ``bench_model.py`` flags, and its cases."""

    name: str
    description: str
    cases: Tuple[str, ...] = (FORWARD, TRAIN)
    env: Tuple[Tuple[str, str], ...] = ()
    flags: Tuple[str, ...] = ()
    keras_bn: bool = False  # swap bts_model.BatchNorm's fused kernel for Keras 3's own BN
    repeats: int = 3
    # Compare each case with the baseline's same case (the baseline then also times this lever's
    # bf16 cases), not with its fp32 counterpart: for levers that are not the precision itself.
    same_precision_baseline: bool = False


LEVERS = (
    Lever("baseline", "TF's defaults (fused BN, thread pools, fp32, no XLA; oneDNN per CPU, below)"),
    Lever("xla", "XLA: tf.function(jit_compile=True)", flags=("--jit_compile",)),
    Lever("keras_bn", "Keras 3's BatchNormalization instead of the fused-kernel subclass",
          keras_bn=True),
    Lever("threads_2_1", "TF_NUM_INTRAOP_THREADS=2, TF_NUM_INTEROP_THREADS=1",
          env=(("TF_NUM_INTRAOP_THREADS", "2"), ("TF_NUM_INTEROP_THREADS", "1"))),
    # TF turns oneDNN on by default only on CPUs with AVX512-VNNI/-BF16 or AMX; others run Eigen.
    Lever("onednn_off", "TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels)", cases=(FORWARD,),
          env=(("TF_ENABLE_ONEDNN_OPTS", "0"),), repeats=1),
    Lever("onednn_on", "TF_ENABLE_ONEDNN_OPTS=1 (oneDNN kernels and graph rewrites)",
          env=(("TF_ENABLE_ONEDNN_OPTS", "1"),)),
    Lever("bf16", "mixed_bfloat16 policy (LPG, depth and loss stay fp32)",
          cases=("forward_480x640_bf16",), repeats=1),
    Lever("bf16_onednn", "mixed_bfloat16 policy with TF_ENABLE_ONEDNN_OPTS=1",
          cases=("forward_480x640_bf16",), env=(("TF_ENABLE_ONEDNN_OPTS", "1"),), repeats=1),
    # bts_model.ModelOps (same weights and outputs; bf16 training is too slow here to time).
    Lever("conv1x1_matmul", "1x1 stride-1 convs as one MatMul each (--model_ops conv1x1=matmul)",
          cases=(FORWARD, TRAIN, FORWARD_BF16), flags=("--model_ops", "conv1x1=matmul"),
          same_precision_baseline=True),
    Lever("fused_padding", "symmetric ZeroPadding2D fused into its conv op (--model_ops padding=fused)",
          cases=(FORWARD, TRAIN, FORWARD_BF16), flags=("--model_ops", "padding=fused"),
          same_precision_baseline=True),
    Lever("subpixel_upconv", "upconvs as four 2x2 convs on the small map (--model_ops upconv=subpixel)",
          cases=(FORWARD, TRAIN, FORWARD_BF16), flags=("--model_ops", "upconv=subpixel"),
          same_precision_baseline=True),
    Lever("cpu_model_ops", "conv1x1=matmul and upconv=subpixel together",
          cases=(FORWARD, TRAIN, FORWARD_BF16), flags=("--model_ops", "conv1x1=matmul", "upconv=subpixel"),
          same_precision_baseline=True),
    # Training only: forward calls never recompute. Compare the peak RSS column too.
    Lever("recompute_bn_relu", "DenseNet BN->ReLU recomputed in the backward pass "
          "(--model_ops recompute=bn_relu)", cases=(TRAIN,),
          flags=("--model_ops", "recompute=bn_relu"), same_precision_baseline=True),
    Lever("cpu_model_ops_recompute", "conv1x1=matmul, upconv=subpixel and recompute=bn_relu",
          cases=(TRAIN,), flags=("--model_ops", "conv1x1=matmul", "upconv=subpixel",
                                 "recompute=bn_relu"), same_precision_baseline=True),
)
QUICK_FORWARD, QUICK_TRAIN = "quick_forward_64x96_fp32", "quick_train_64x96_b2_fp32"


def quick_variant(lever: Lever) -> Lever:
    """The lever on the tiny model's cases (CI smoke run)."""
    cases = tuple(case.replace("forward_480x640", "quick_forward_64x96")
                  .replace("train_416x544", "quick_train_64x96") for case in lever.cases)
    return dataclasses.replace(lever, cases=cases, repeats=1)


def child_command(lever: Lever, output: str, warmup: int) -> List[str]:
    """Command line of the child process that times ``lever``'s cases into ``output``."""
    command = [sys.executable, "-m", "benchmarks.bench_levers", "--child"]  # run with cwd=ROOT
    if lever.keras_bn:
        command.append("--keras_bn")
    # Every lever against the standard graph unless it chooses ops itself.
    flags = lever.flags if "--model_ops" in lever.flags else (*lever.flags, "--model_ops", "standard")
    command += ["--", "--cases", *lever.cases, "--repeats", str(lever.repeats),
                "--warmup", str(warmup), "--bench_output", output, *flags]
    if any(case.startswith("quick_") for case in lever.cases):
        command.append("--quick")
    return command


def run_lever(lever: Lever, warmup: int) -> List[Dict[str, object]]:
    """Time one lever in a child process; its bench_model records."""
    env = dict(os.environ, **dict(lever.env))
    with tempfile.TemporaryDirectory(prefix="bts_lever_") as tmp:
        output = os.path.join(tmp, "result.json")
        subprocess.run(child_command(lever, output, warmup), env=env, check=True, cwd=ROOT)
        with open(output, encoding="utf-8") as handle:
            return json.load(handle)["model"]


def baseline_with_cases_for(levers: Sequence[Lever]) -> Lever:
    """The baseline lever, also timing the cases that ``same_precision_baseline`` levers need."""
    baseline = next(lever for lever in LEVERS if lever.name == "baseline")
    extra = [case for lever in levers if lever.same_precision_baseline for case in lever.cases
             if case not in baseline.cases]
    return dataclasses.replace(baseline, cases=baseline.cases + tuple(dict.fromkeys(extra)))


def compare(results: Dict[str, List[Dict[str, object]]]) -> List[Dict[str, object]]:
    """Rows of (lever, case, median, ratio to the baseline's reference case where it was timed).

    The reference is the baseline's fp32 case of the same kind and size (what bf16 is measured
    against), or the very same case for ``same_precision_baseline`` levers (and the baseline).
    """
    baseline = {r["name"]: r["median_s"] for r in results.get("baseline", [])}
    same_precision = {lever.name for lever in LEVERS if lever.same_precision_baseline} | {"baseline"}
    fp32_of = lambda name: name.replace("_bf16", "_fp32")  # noqa: E731  (bf16 vs fp32 case)
    rows = []
    for lever, records in results.items():
        for r in records:
            reference = baseline.get(r["name"] if lever in same_precision else fp32_of(r["name"]))
            rows.append({"lever": lever, "case": r["name"], "median_s": r["median_s"],
                         "min_s": r["min_s"], "max_s": r["max_s"],
                         "first_call_s": r["first_call_s"], "peak_rss_mib": r["peak_rss_mib"],
                         "load": r["load_avg_1min_before"],
                         "vs_baseline": r["median_s"] / reference if reference else None})
    return rows


def format_rows(rows: Sequence[Dict[str, object]]) -> str:
    lines = ["| lever | case | median s | min-max s | first call s | peak RSS MiB | × baseline | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['vs_baseline']:.2f}" if r["vs_baseline"] is not None else "—"
        lines.append(f"| {r['lever']} | {r['case']} | {r['median_s']:.3f} | {r['min_s']:.3f}-"
                     f"{r['max_s']:.3f} | {r['first_call_s']:.1f} | {r['peak_rss_mib']:.0f} | "
                     f"{ratio} | {r['load']:.1f} |")
    return "\n".join(lines)


def child_main(argv: Sequence[str]) -> int:
    """In the child: apply the in-process lever, then run bench_model with the rest."""
    keras_bn = "--keras_bn" in argv
    rest = list(argv[argv.index("--") + 1:])
    from benchmarks import bench_model  # here, not at the top: the parent never loads TensorFlow

    if keras_bn:
        import keras

        import bts_model

        bts_model.BatchNorm.call = keras.layers.BatchNormalization.call
    return bench_model.main(rest)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(prog="bench_levers.py", description=__doc__.split("\n")[0])
    names = [lever.name for lever in LEVERS]
    parser.add_argument("--levers", nargs="+", default=names, choices=names, metavar="LEVER",
                        help=f"levers to time (default all: {' '.join(names)})")
    parser.add_argument("--quick", action="store_true", help="tiny model, 64x96 (smoke run)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first")
    parser.add_argument("--bench_output", default=os.path.join(BENCH_DIR, "results", "bench_levers.json"))
    args = parser.parse_args(argv)
    if "baseline" not in args.levers:
        args.levers.insert(0, "baseline")  # the ratios need it
    results: Dict[str, List[Dict[str, object]]] = {}
    selected = [lever for lever in LEVERS if lever.name in args.levers]
    selected = [baseline_with_cases_for(selected) if lever.name == "baseline" else lever
                for lever in selected]
    for lever in selected:
        lever = quick_variant(lever) if args.quick else lever
        print(f"== {lever.name}: {lever.description}", flush=True)
        results[lever.name] = run_lever(lever, args.warmup)
        rows = compare(results)
        atomic_write_text(args.bench_output, json.dumps(
            {"levers": {lever.name: dataclasses.asdict(lever) for lever in LEVERS},
             "results": results, "comparison": rows}, indent=2) + "\n")
    print(format_rows(compare(results)))
    print(f"results written to {args.bench_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Depth of bf16 inference against fp32 on the same weights (``--mixed_precision auto``'s tolerance).

    # the converted official model (./init_bts_pretrained.sh nyu) on the demo's synthetic test rooms
    python -m benchmarks.bench_bf16_depth --checkpoint_path models/bts_nyu_v2_pytorch_densenet161/model.keras \
        --dataset nyu --filenames_file demo_data/nyu/nyudepthv2_test_files_with_gt.txt \
        --data_path demo_data/nyu/official_splits/test/ --gt_path demo_data/nyu/official_splits/test/
    python -m benchmarks.bench_bf16_depth --quick    # tiny random model, 2 synthetic frames (CI)

Every listed frame is predicted twice by ``bts_predict.DepthPredictor`` through ``bts_test.py``'s
evaluation loop (``bts_predict.predict_samples``: the same pipeline, crops and scoring): once by
the model built under the float32 policy, once under ``mixed_bfloat16`` (``--mixed_precision
bf16``: convolutions and BN in bf16; LPG, final depth and the output stay float32), the two in
lock step so no frame is held longer than needed. Printed, and written as JSON (``--bench_output``,
default ``benchmarks/results/bench_bf16_depth.json``): max and mean |Δdepth| in metres over every
predicted pixel (and the worst frame), the mean relative |Δ|, both metric tables (official
protocol; ``--eigen_crop`` etc. as for ``bts_test.py``) and their difference, and what
``--mixed_precision auto`` picks on this machine. Any other flag is one of ``bts_test.py``'s model,
data and evaluation flags. On a CPU without AMX/AVX512-BF16 bf16 is emulated: the numbers are the
same as on an AMX machine up to summation order, only slower.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

LOG = logging.getLogger("bench_bf16_depth")
PROG = "bench_bf16_depth.py"
QUICK_FRAMES, QUICK_SIZE = 2, (96, 128)  # --quick: synthetic NYU test frames (height, width)


def parse(argv: Optional[Sequence[str]]):
    """(this script's own flags, the bts_test.py-style model/data/evaluation flags)."""
    own = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0], add_help=False,
        epilog="Other flags: bts_test.py's model, data and evaluation flags (--checkpoint_path, "
               "--dataset, --filenames_file, --data_path, --gt_path, --eigen_crop, ...; "
               "python bts_test.py --help).")
    own.add_argument("-h", "--help", action="help", help="show this help and exit")
    own.add_argument("--quick", action="store_true",
                     help=f"tiny random model on {QUICK_FRAMES} synthetic {QUICK_SIZE[0]}x{QUICK_SIZE[1]} "
                          "NYU frames (CI smoke run); no other flag needed")
    own.add_argument("--max_frames", type=int, default=0, help="compare the first N frames (0: all)")
    own.add_argument("--bench_output", type=str, default="",
                     help="JSON results file (default: benchmarks/results/bench_bf16_depth.json)")
    mine, rest = own.parse_known_args(argv)
    if mine.max_frames < 0:
        own.error(f"--max_frames must be >= 0, got {mine.max_frames}")
    from utils.arguments import parse_args

    def validate(parser, args):
        if not mine.quick and not (args.checkpoint_path and args.filenames_file):
            parser.error("give --checkpoint_path and --filenames_file (with --data_path/--gt_path), "
                         "or --quick")

    args = parse_args(groups=("model", "data", "eval"), argv=rest, prog=PROG, validate=validate,
                      defaults={"mode": "test"})
    return mine, args


def quick_inputs(folder: str, args) -> None:
    """--quick: a tiny float32 ``.keras`` model (random weights) and synthetic NYU test frames
    under ``folder``, set into ``args``."""
    import keras

    import bts_model
    from benchmarks.common import QUICK_BTS_SIZE, QUICK_ENCODER
    from tools.synthetic_data import generate_dataset
    from utils.configs import BtsConfig

    paths = generate_dataset("nyu", os.path.join(folder, "nyu"), 1, QUICK_FRAMES, *QUICK_SIZE, seed=0)
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = bts_model.build_bts_model(BtsConfig.for_dataset("nyu", encoder=QUICK_ENCODER,
                                                            bts_size=QUICK_BTS_SIZE))
    args.checkpoint_path = os.path.join(folder, "tiny.keras")
    model.save(args.checkpoint_path)
    args.dataset, args.filenames_file = "nyu", paths["test_filenames"]
    args.data_path, args.gt_path = paths["data_path_eval"], paths["gt_path_eval"]
    args.eigen_crop = args.garg_crop = False  # the Eigen crop box is for 480x640 frames


def predictor_under(precision: str, args):
    """A DepthPredictor whose model was built (or rebuilt) under ``precision``'s policy."""
    from bts_predict import DepthPredictor, load_model
    from bts_trainer import model_in_global_policy, set_precision_policy
    from utils.arguments import explicit_model_fields, model_config

    set_precision_policy(precision)
    model, config = load_model(args.checkpoint_path, model_config(args),
                               explicit=explicit_model_fields(args))
    model = model_in_global_policy(model, config)
    return DepthPredictor(model, args.dataset, encoder=config.encoder, do_kb_crop=args.do_kb_crop)


def compare(args, max_frames: int = 0) -> Dict[str, object]:
    """Predict every frame in fp32 and bf16 and compare (see the module docstring)."""
    import numpy as np

    import bts_test
    from bts_predict import predict_samples
    from bts_trainer import set_precision_policy
    from utils import metrics
    from utils.arguments import eval_config, pipeline_config

    args.test_dataset = ""  # bts_test.py's list reader: every image exists, absent GT is no GT
    samples = bts_test.read_samples(args)
    if max_frames:
        samples = samples[:max_frames]
    fp32, bf16 = predictor_under("none", args), predictor_under("bf16", args)
    set_precision_policy("none")  # built: each layer keeps its own policy
    pipeline = pipeline_config(args, "test", normalization=fp32.preprocessing)
    evaluation = eval_config(args)
    frames: List[Dict[str, object]] = []
    scored_fp32, scored_bf16 = [], []
    total_abs, total_rel, pixels, worst = 0.0, 0.0, 0, 0.0
    for a, b in zip(predict_samples(fp32, samples, pipeline, evaluation),
                    predict_samples(bf16, samples, pipeline, evaluation)):
        delta = np.abs(b.depth.astype(np.float64) - a.depth.astype(np.float64))
        relative = delta / np.maximum(a.depth.astype(np.float64), 1e-3)
        total_abs, total_rel, pixels = total_abs + delta.sum(), total_rel + relative.sum(), pixels + delta.size
        worst = max(worst, float(delta.max()))
        frames.append({"name": samples[a.index].line.split()[0], "max_abs_m": float(delta.max()),
                       "mean_abs_m": float(delta.mean())})
        if a.has_gt:
            scored_fp32.append(a.metrics)
            scored_bf16.append(b.metrics)
    if not frames:
        raise ValueError(f"{args.filenames_file} lists no frame")
    result: Dict[str, object] = {
        "checkpoint": args.checkpoint_path, "frames": len(frames),
        "max_abs_m": worst, "mean_abs_m": total_abs / pixels, "mean_rel": total_rel / pixels,
        "worst_frame": max(frames, key=lambda f: f["max_abs_m"])["name"], "per_frame": frames,
        "quantized_eval": evaluation.quantize}
    if any(row is not None for row in scored_fp32):
        result["metrics_fp32"] = metrics.average_metrics(scored_fp32)
        result["metrics_bf16"] = metrics.average_metrics(scored_bf16)
        result["metrics_change"] = {name: result["metrics_bf16"][name] - result["metrics_fp32"][name]
                                    for name in metrics.METRIC_NAMES}
    return result


def auto_choice() -> Dict[str, str]:
    """What ``--mixed_precision auto`` resolves to here, and why (not logged)."""
    from bts_trainer import auto_precision

    resolved, reason = auto_precision()
    return {"resolved": resolved, "reason": reason}


def report(result: Dict[str, object]) -> str:
    """The printed summary: the |Δ| line, both metric tables and their difference."""
    from utils import metrics

    lines = [f"bf16 vs fp32 depth, {result['frames']} frames of {result['checkpoint']}: "
             f"max |Δ| {result['max_abs_m']:.4f} m ({result['worst_frame']}), "
             f"mean |Δ| {result['mean_abs_m']:.5f} m, mean |Δ|/depth {100 * result['mean_rel']:.3f} %"]
    if "metrics_fp32" in result:
        lines += ["fp32:", metrics.format_result_table(result["metrics_fp32"]),
                  "bf16:", metrics.format_result_table(result["metrics_bf16"]),
                  "bf16 - fp32: " + ", ".join(f"{name} {value:+.4f}" for name, value
                                              in result["metrics_change"].items())]
    else:
        lines.append("no ground truth: no metrics")
    auto = result.get("auto")
    if auto:
        lines.append(f"--mixed_precision auto on this machine: {auto['resolved']} ({auto['reason']})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    mine, args = parse(argv)
    from utils.quiet import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from benchmarks import bench_model
    from benchmarks.common import default_output, write_json
    from bts_dataloader import DataError
    from utils.checkpoints import CheckpointError
    from utils.configs import ConfigError

    with tempfile.TemporaryDirectory(prefix="bench_bf16_") as folder:
        try:
            if mine.quick:
                quick_inputs(folder, args)
            result = compare(args, mine.max_frames)
        except (ConfigError, DataError) as err:
            print(f"{PROG}: error: {err.as_flag_error()}", file=sys.stderr)
            return 1
        except (CheckpointError, OSError, ValueError) as err:
            print(f"{PROG}: error: {err}", file=sys.stderr)
            return 1
    result.update(quick=mine.quick, environment=bench_model.environment(), auto=auto_choice())
    output = mine.bench_output or default_output("bench_bf16_depth")
    write_json(output, result)
    print(report(result))
    print(f"results: {output}")
    return 0 if math.isfinite(float(result["max_abs_m"])) else 1


if __name__ == "__main__":
    sys.exit(main())

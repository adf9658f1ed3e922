# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluate a folder of raw uint16 PNG depth predictions against ground truth (design §6.2, §6.3).

    python -m tools.eval_with_pngs --pred_path result_bts_nyu_v2/raw/ \
        --gt_path dataset/nyu_depth_v2/official_splits/test/ --dataset nyu \
        --min_depth_eval 1e-3 --max_depth_eval 10 --eigen_crop
    python -m tools.eval_with_pngs --pred_path result_bts_eigen_v2/raw/ \
        --gt_path dataset/kitti/data_depth_annotated/ --dataset kitti \
        --min_depth_eval 1e-3 --max_depth_eval 80 --garg_crop --do_kb_crop

The same protocol, file discovery and arithmetic as the official offline evaluator (which produced
the published numbers): PNGs found by walking ``--pred_path`` in directory order, names containing
``cmap`` or ``gt`` skipped, GT paths recovered from the names (NYU ``{scene}_rgb_{id}.png`` →
``{gt_path}/{scene}/sync_depth_{id}.png``; KITTI ``{date_drive}_{frame}.png`` →
``{gt_path}/{date_drive}/proj_depth/groundtruth/image_02/{frame}.png``), missing GT counted and
skipped, metrics per image in float32 and averaged in file order (``utils.metrics``). The name
conventions live in ``utils.paths``, shared with ``bts_test.py``. On the same
predictions it gives exactly the numbers of ``bts_test.py``'s in-process evaluation.
"""
from __future__ import annotations

import logging
import sys
from typing import List, Optional, Tuple

from utils import metrics
from utils.arguments import check_input_paths, parse_args
from utils.datasets import get_dataset_facts
from utils.image_io import read_depth_png
from utils.paths import find_prediction_pngs, gt_path_for
from utils.quiet import quiet_tensorflow

LOGGER = logging.getLogger("eval_with_pngs")


def evaluate_folder(pred_path: str, gt_root: str, dataset: str, min_depth: float,
                    max_depth: float, *, eigen_crop: bool = False, garg_crop: bool = False,
                    do_kb_crop: bool = False, protocol: str = "offline"
                    ) -> Tuple[List[str], List[Optional[dict]], List[str]]:
    """(evaluated names, per-image metrics (None: no valid pixel), names whose GT is missing);
    ``protocol``: ``utils.metrics.evaluate_image``'s (``--online_eval_protocol``)."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(pred_path):
        raise FileNotFoundError(f"--pred_path {pred_path!r} is not a folder")
    found = find_prediction_pngs(pred_path)
    if not found:
        raise FileNotFoundError(f"--pred_path {pred_path!r} holds no prediction PNGs")
    scale = get_dataset_facts(dataset).depth_scale
    evaluated, per_image, missing = [], [], []
    for name, pred_file in found:
        gt_file = gt_path_for(name, gt_root, dataset)
        if not tf.io.gfile.exists(gt_file):
            LOGGER.info("Missing: %s", gt_file)
            missing.append(name)
            continue
        pred = read_depth_png(pred_file, scale)
        gt = read_depth_png(gt_file, scale)
        per_image.append(metrics.evaluate_image(gt, pred, min_depth, max_depth, dataset,
                                                eigen_crop=eigen_crop, garg_crop=garg_crop,
                                                do_kb_crop=do_kb_crop, protocol=protocol))
        evaluated.append(name)
    return evaluated, per_image, missing


def _validate(parser, args) -> None:
    if not args.pred_path:
        parser.error("--pred_path (folder of raw PNG predictions) is required")
    if not args.gt_path:
        parser.error("--gt_path (ground-truth root) is required")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(groups=("model", "data", "eval", "test"), argv=argv, validate=_validate,
                      prog="eval_with_pngs.py",
                      description="Evaluate raw PNG depth predictions with the official protocol.")
    quiet_tensorflow(args.verbose)  # before TensorFlow's first (lazy) import
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = check_input_paths(args, folders=("pred_path", "gt_path"))
    if problem:
        print(f"eval_with_pngs.py: error: {problem}", file=sys.stderr)
        return 1
    try:
        import tensorflow as tf

        if args.metrics_csv and not args.overwrite and tf.io.gfile.exists(args.metrics_csv):
            raise FileExistsError(f"--metrics_csv {args.metrics_csv!r} already exists; pass "
                                  "--overwrite to replace it or choose another file")
        names, per_image, missing = evaluate_folder(
            args.pred_path, args.gt_path, args.dataset, args.min_depth_eval, args.max_depth_eval,
            eigen_crop=args.eigen_crop, garg_crop=args.garg_crop,
            do_kb_crop=args.do_kb_crop and args.dataset == "kitti", protocol=args.online_eval_protocol)
        print(f"Evaluating {len(names) + len(missing)} files")
        print(f"{len(missing)} GT files missing")
        mean = metrics.average_metrics(per_image)
        if args.metrics_csv:
            metrics.write_metrics_csv(args.metrics_csv, names, per_image, mean)
    except (OSError, ValueError) as err:  # DataError is a ValueError: one line, no trace
        print(f"eval_with_pngs.py: error: {err}", file=sys.stderr)
        return 1
    print(metrics.format_result_table(mean, style="eval_with_pngs"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

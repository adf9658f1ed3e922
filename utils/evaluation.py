# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluation of a model on a list of samples with the official protocol (spec §6.3).

Used for online evaluation / validation during training and by hyper-parameter tuning. Per image:
predict on the (KB-cropped for KITTI) input, then :func:`utils.metrics.evaluate_image` (clipping,
KB-crop paste-back into the full ground-truth frame, valid range, Eigen/Garg crop); metrics are
averaged over images that have ground truth. ``bts_test.py`` applies the same per-image function.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras

import bts_dataloader
from utils.metrics import average_metrics, evaluate_image
from utils.predict import DepthPredictor


def evaluate_samples(model: keras.Model, args: argparse.Namespace, samples: Sequence,
                     predictor: Optional[DepthPredictor] = None) -> Tuple[Dict[str, float], List]:
    """(mean metrics, per-image metrics or None for images without valid ground truth).

    Frames of any size: ``predictor`` (default: one around ``model``) edge-pads each frame to a
    multiple of 32 and cuts the padding from the depth, exactly as ``bts_test.py`` predicts.
    """
    eval_args = argparse.Namespace(**{**vars(args), "batch_size": 1})
    dataset = bts_dataloader.make_dataset(eval_args, "eval", samples=samples)
    predictor = predictor or DepthPredictor(model, args.dataset, encoder=args.encoder)
    per_image = []
    batches = iter(dataset)
    while True:
        with bts_dataloader.data_errors(samples):  # a bad file: one line naming its list line
            batch = next(batches, None)
        if batch is None:
            break
        if not bool(batch["has_depth"][0]):
            per_image.append(None)
            continue
        pred = predictor.predict_batch(batch["image"].numpy(), batch["focal"].numpy())[0]
        gt = batch["depth"].numpy()[0, ..., 0]
        per_image.append(evaluate_image(
            gt, pred, args.min_depth_eval, args.max_depth_eval, args.dataset,
            eigen_crop=args.eigen_crop, garg_crop=args.garg_crop,
            do_kb_crop=args.do_kb_crop and args.dataset == "kitti"))
    return average_metrics(per_image), per_image


def online_evaluator() -> Callable:
    """An ``evaluate_fn(model, args, samples) -> metrics`` for the trainer (one compiled predict)."""
    cache: Dict[int, DepthPredictor] = {}

    def evaluate(model: keras.Model, args: argparse.Namespace, samples: Sequence) -> Dict[str, float]:
        key = id(model)
        if key not in cache:
            cache[key] = DepthPredictor(model, args.dataset, encoder=args.encoder)
        metrics, _ = evaluate_samples(model, args, samples, cache[key])
        return metrics

    return evaluate

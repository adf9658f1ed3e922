# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The one command-line / argument-file parser shared by every script.

Usage rules (as the upstream TF2 port, design §8.1):

* ``python bts_main.py arguments_train_nyu.txt --batch_size 2``: if the first argument does not
  start with ``-`` it is an argument file; flags after it override the file.
* ``@file`` works anywhere on the command line (and inside argument files); a file that includes
  itself, directly or through others, is a one-line error naming the loop.
* Every numeric flag is range-checked once, after parsing, from the ``NUMERIC_FLAGS`` table.
* Inside argument files any whitespace separates tokens; blank lines and ``#`` comments are allowed.
* An unknown flag is a one-line error naming the closest valid flag.

Every flag is declared once, here, in a named group. A script asks for the groups it uses, so
``--help`` stays readable and no script declares its own copy of a flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import shlex
import sys
from typing import (Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from utils.configs import (ADAMW_VARIANTS, BEST_DIR, DISTRIBUTION_STRATEGIES, KERAS_SUFFIXES, MIN_BTS_SIZE,
                           PRECISION_CHOICES, BtsConfig, EvalConfig, PipelineConfig, TrainConfig)
from utils.datasets import DATASETS, TEST_ONLY_DATASETS, get_dataset_facts
from utils.encoders import DEFAULT_ENCODER, ENCODER_NAMES, OFFICIAL_ENCODERS, encoder_facts
from utils.metrics import EVAL_PROTOCOLS
from utils.video import LAYOUTS as VIDEO_LAYOUTS

# --encoder's help, grouped from the encoder table: the official PyTorch BTS encoders, the
# keras.applications backbones (the names with Keras ImageNet weights) and the smoke-test rest.
KERAS_BACKBONES = tuple(n for n in ENCODER_NAMES if n not in OFFICIAL_ENCODERS and encoder_facts(n).imagenet)
SMOKE_TEST_ENCODERS = tuple(n for n in ENCODER_NAMES if n not in OFFICIAL_ENCODERS + KERAS_BACKBONES)
ENCODERS_HELP = (f"official BTS encoders (torchvision-exact; PyTorch BTS checkpoints and torchvision "
                 f"ImageNet weights convert): {', '.join(OFFICIAL_ENCODERS)}; keras.applications "
                 f"backbones (Keras ImageNet weights, not the official models): "
                 f"{', '.join(KERAS_BACKBONES)}; smoke-test encoder (tests, CI; random weights): "
                 f"{', '.join(SMOKE_TEST_ENCODERS)} (docs/encoders.md)")


def _add_model(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--mode", type=str, default="train", help="train or test (kept for upstream argument files)")
    group.add_argument("--model_name", type=str, default="bts_nyu",
                       help="run name: the run folder under --log_directory and the result_* folder")
    group.add_argument("--encoder", type=str, default=DEFAULT_ENCODER, help=ENCODERS_HELP)
    group.add_argument("--dataset", type=str, default="nyu",
                       choices=sorted(DATASETS) + sorted(TEST_ONLY_DATASETS),
                       help="dataset: depth range, crops, focal and input sizes follow it; "
                            "kitti_benchmark (bts_test.py only): the KITTI online benchmark's test "
                            "images, list lines 'image_path focal', KB crop, raw/<image name>.png, "
                            "no ground truth and no metrics")
    group.add_argument("--max_depth", type=float, default=None,
                       help="maximum output depth in metres (default: 10 NYU, 80 KITTI)")
    group.add_argument("--bts_size", type=int, default=None,
                       help="decoder width nf (PT --bts_size; default: the encoder's, 512 for densenet161_bts)")
    group.add_argument("--input_height", type=int, default=None,
                       help="network input height, a multiple of 32 (default: the dataset's, "
                            "416 NYU / 352 KITTI to train, 480 / 352 to test)")
    group.add_argument("--input_width", type=int, default=None,
                       help="network input width, a multiple of 32 (default: the dataset's, "
                            "544 NYU / 704 KITTI to train, 640 / 1216 to test)")
    group.add_argument("--checkpoint_path", type=str, default="",
                       help="weights to load: a .keras/.weights.h5 file, a training checkpoint or a run "
                            "folder (default: none)")
    group.add_argument("--mixed_precision", type=str, default="none", choices=list(PRECISION_CHOICES),
                       help="compute dtype policy: none (float32), bf16, fp16, or auto: bf16 on a TPU, "
                            "on GPUs of compute capability 8.0+, on CPUs with AMX-BF16 and on non-Intel "
                            "CPUs with AVX512-BF16, "
                            "else none, logged once at start-up (loss, LPG and final depth stay "
                            "float32; docs/performance.md)")


def _add_compute(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--model_ops", type=str, default="auto",
                       help="how the model computes, never its weights or files (bts_model.ModelOps): "
                            "auto (CPU only: conv1x1=matmul,upconv=subpixel, faster on every CPU "
                            "measured, plus recompute=bn_relu when training on batches of 2^18+ "
                            "pixels, 1.8 GB less memory at 2x416x544; with a GPU/TPU: standard), "
                            "standard, or KEY=VALUE[,KEY=VALUE] with "
                            "conv1x1=conv|matmul, padding=separate|fused, upconv=upsample|subpixel, "
                            "recompute=none|bn_relu (docs/performance.md)")


def _add_data(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--data_path", type=str, default="",
                       help="root of the RGB paths in the list (default: none, paths as listed)")
    group.add_argument("--gt_path", type=str, default="",
                       help="root of the depth paths in the list (default: none, paths as listed; "
                            "bts_test.py: no metrics)")
    group.add_argument("--filenames_file", type=str, default="",
                       help="list file: 'rgb depth focal' per line (default: none)")
    group.add_argument("--tfrecord_path", type=str, default="",
                       help="TFRecord shard prefix or glob (local or gs://), used instead of the list's "
                            "files (default: none)")
    group.add_argument("--do_kb_crop", action="store_true", help="KITTI benchmark crop to 352x1216")
    group.add_argument("--do_random_rotate", action="store_true", help="random rotation augmentation")
    group.add_argument("--degree", type=float, default=None,
                       help="max rotation in degrees (default: 2.5 NYU, 1.0 KITTI)")
    group.add_argument("--num_threads", type=int, default=-1, help="tf.data parallelism (-1 or 0: AUTOTUNE)")
    group.add_argument("--deterministic", action="store_true", help="deterministic data order (tests)")
    group.add_argument("--seed", type=int, default=None,
                       help="random seed for data order, augmentation and initialisation; a rerun on "
                            "CPU gives the same weights and metrics (GPU: also set "
                            "TF_DETERMINISTIC_OPS=1) (default: unseeded)")


def _add_train(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--log_directory", type=str, default="./models/", help="run root (local or gs://)")
    group.add_argument("--pretrained_model", type=str, default="",
                       help="ImageNet encoder weights: for the official *_bts encoders a file from "
                            "./init_densenet_161.sh ARCH (default ./models/ARCH_imagenet/weights.h5, "
                            "ARCH = the encoder name without _bts); 'imagenet' for keras.applications "
                            "backbones (Keras's weights)")
    group.add_argument("--fix_first_conv_blocks", action="store_true",
                       help="also freeze the first two units of stage 1 (DenseNet: dense layers; "
                            "mobilenetv2_bts: nothing, as upstream)")
    group.add_argument("--fix_first_conv_block", action="store_true",
                       help="also freeze the first unit of stage 1 (DenseNet: dense layer; "
                            "mobilenetv2_bts: nothing, as upstream)")
    group.add_argument("--bn_no_track_stats", action="store_true",
                       help="PT bn_init_as_tf: every BN layer (encoder and decoder) normalises with "
                            "its moving statistics and keeps them unchanged while training; "
                            "gamma/beta train as without the flag")
    group.add_argument("--use_right", action="store_true",
                       help="KITTI: each sample reads the right camera (list columns 4-5, image_03) "
                            "with p 0.5, per epoch; refused for other datasets")
    group.add_argument("--retrain", action="store_true", help="restart the step count from 0")
    group.add_argument("--batch_size", type=int, default=4, help="global batch size")
    group.add_argument("--num_epochs", type=int, default=50, help="epochs to train (unless --num_steps)")
    group.add_argument("--num_steps", type=int, default=0,
                       help="stop after this many steps (0: train for --num_epochs)")
    group.add_argument("--learning_rate", type=float, default=1e-4, help="initial learning rate")
    group.add_argument("--end_learning_rate", type=float, default=-1.0,
                       help="final learning rate of the polynomial decay (< 0: 0.1 x --learning_rate)")
    group.add_argument("--adam_eps", type=float, default=1e-6, help="AdamW epsilon")
    group.add_argument("--adamw", choices=ADAMW_VARIANTS, default="pytorch",
                       help="AdamW update: pytorch (epsilon added to the bias-corrected sqrt(v), as "
                            "the official torch.optim.AdamW) or keras (keras.optimizers.AdamW: epsilon "
                            "added to the uncorrected sqrt(v), smaller first steps when epsilon is large)")
    group.add_argument("--weight_decay", type=float, default=1e-2, help="AdamW decay on the encoder only")
    group.add_argument("--variance_focus", type=float, default=0.85, help="lambda of the silog loss")
    group.add_argument("--gradient_accumulation_steps", type=int, default=1,
                       help="batches whose gradients are summed per optimizer step")
    group.add_argument("--log_freq", type=int, default=100, help="log and write summaries every this many steps")
    group.add_argument("--save_freq", type=int, default=500, help="save a checkpoint every this many steps")
    group.add_argument("--keep_checkpoints", type=int, default=3, help="how many step checkpoints to keep")


def _add_distribute(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--distribution_strategy", type=str, default="auto",
                       choices=list(DISTRIBUTION_STRATEGIES),
                       help="tf.distribute strategy; auto: TPU with --tpu_name, multi-worker with a TF_CONFIG "
                            "cluster, mirrored over --num_gpus GPUs or --num_cpu_devices, else default")
    group.add_argument("--num_gpus", type=int, default=1,
                       help="GPUs for MirroredStrategy (auto/mirrored; more than are visible is an error)")
    group.add_argument("--num_cpu_devices", type=int, default=1,
                       help="split the CPU into this many logical devices, so that mirrored (and auto "
                            "on a machine without GPUs) runs that many replicas on CPU (trying out / "
                            "testing multi-replica training)")
    group.add_argument("--tpu_name", type=str, default="", help="TPU name or grpc:// address (default: none)")
    group.add_argument("--tpu_zone", type=str, default="", help="GCP zone of --tpu_name (default: the resolver's)")
    group.add_argument("--gcp_project", type=str, default="",
                       help="GCP project of --tpu_name (default: the resolver's)")


def _add_eval(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--do_online_eval", action="store_true", help="evaluate during training")
    group.add_argument("--data_path_eval", type=str, default="",
                       help="root of the RGB paths in the eval list (default: --data_path)")
    group.add_argument("--gt_path_eval", type=str, default="",
                       help="root of the depth paths in the eval list (default: --gt_path)")
    group.add_argument("--filenames_file_eval", type=str, default="",
                       help="list file of the online evaluation (default: none)")
    group.add_argument("--validation_split", type=float, default=0.0,
                       help="fraction of training scenes/drives held out for validation")
    group.add_argument("--min_depth_eval", type=float, default=None,
                       help="smallest evaluated depth in metres (default: 0.001)")
    group.add_argument("--max_depth_eval", type=float, default=None,
                       help="largest evaluated depth in metres (default: 10 NYU, 80 KITTI)")
    group.add_argument("--eigen_crop", action="store_true", help="Eigen crop (NYU / KITTI)")
    group.add_argument("--garg_crop", action="store_true", help="Garg crop (KITTI)")
    group.add_argument("--eval_freq", type=int, default=500, help="evaluate every this many steps")
    group.add_argument("--eval_summary_directory", type=str, default="",
                       help="write the online-eval TensorBoard scalars to {this}/{model_name} "
                            "(default: the run's summaries/)")
    group.add_argument("--best_metric", type=str, default="silog",
                       help="metric that picks the best checkpoint (best/), as online validation "
                            "scores it under --online_eval_protocol")
    group.add_argument("--online_eval_protocol", choices=EVAL_PROTOCOLS, default="offline",
                       help="how KITTI with --do_kb_crop is scored by online validation, and so "
                            "which weights --best_metric keeps in best/ (bts_test.py follows it "
                            "too): offline, the published numbers' protocol (the 352x1216 "
                            "prediction pasted into the full frame, Garg/Eigen fractions of the "
                            "full frame, as eval_with_pngs.py), or official_online, upstream "
                            "bts_main.py's online_eval (ground truth cut to the 352x1216 KB crop, "
                            "the fractions of that crop; add --no_quantize_eval for its float "
                            "depth). NYU, and KITTI without --do_kb_crop: both identical")
    group.add_argument("--no_quantize_eval", action="store_true",
                       help="score the float32 depth as predicted; by default predictions are "
                            "quantised to the 16-bit PNG grid first, as bts_test.py's saved PNGs "
                            "hold them (online validation and bts_test.py both)")


def _add_test(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--output_directory", type=str, default="",
                       help="where predictions are written (default: ./result_<name>, the name of "
                            "the loaded model's run folder or file, or a typed --model_name)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the results of an earlier run: the output kinds written "
                            "(raw/, cmap/, ...) and --metrics_csv; without it a non-empty output "
                            "folder or an existing --metrics_csv is refused")
    group.add_argument("--image_path", type=str, nargs="*", default=None,
                       help="predict on these images / folders / list files instead of a filenames file "
                            "(default: none)")
    group.add_argument("--video", type=str, default="",
                       help="predict every frame of this video file (--image_path takes video files "
                            "too): a depth video (--save_video) and/or per-frame --save_* files "
                            "<video name>_<frame>.png, .npy, ... (default: none)")
    group.add_argument("--save_video", type=str, default="",
                       help="the depth video to write: .mp4/.m4v/.mov (mp4v), .avi (MJPG) or .mkv "
                            "(FFV1, lossless); frame rate and panel size of the source (default: "
                            "<output_directory>/<video name>_depth.mp4 when no --save_* flag is given)")
    group.add_argument("--video_layout", type=str, default="side_by_side", choices=list(VIDEO_LAYOUTS),
                       help="depth video frames: the input and its depth side by side, or the depth "
                            "alone; both on the fixed scale [0, max_depth] with a legend below")
    group.add_argument("--focal", type=float, default=None,
                       help="focal length in px for --image_path and --video (default: the list's or "
                            "the dataset's)")
    group.add_argument("--save_png", action="store_true", help="write raw uint16 depth PNGs")
    group.add_argument("--save_cmap", action="store_true", help="write colormapped depth PNGs")
    group.add_argument("--save_npy", action="store_true", help="write float32 depth in metres (.npy)")
    group.add_argument("--save_lpg", action="store_true", help="also write the LPG maps")
    group.add_argument("--save_point_cloud", action="store_true", help="write coloured .ply point clouds")
    group.add_argument("--fx", type=float, default=None,
                       help="point-cloud focal x in px (default: --focal, else the dataset's scaled to the image)")
    group.add_argument("--fy", type=float, default=None,
                       help="point-cloud focal y in px (default: --focal, else the dataset's scaled to the image)")
    group.add_argument("--cx", type=float, default=None,
                       help="point-cloud principal point x in px (default: the dataset's scaled to the image)")
    group.add_argument("--cy", type=float, default=None,
                       help="point-cloud principal point y in px (default: the dataset's scaled to the image)")
    group.add_argument("--post_process", action="store_true", help="average with the flipped prediction")
    group.add_argument("--metrics_csv", type=str, default="",
                       help="write per-image metrics to this CSV (default: none)")
    group.add_argument("--pred_path", type=str, default="",
                       help="folder of raw PNG predictions (tools/eval_with_pngs.py; default: none)")


def _add_predict_batch(group: argparse._ArgumentGroup) -> None:
    # bts_test.py's own --batch_size (inference only): a script with the training group has that
    # group's --batch_size (the global training batch) instead; build_parser skips this group there.
    group.add_argument("--batch_size", type=int, default=1,
                       help="frames predicted together; frames of one batch must share a size: "
                            "consecutive frames of another size start a new batch")


def _add_convert(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--num_shards", type=int, default=64, help="number of TFRecord shards")
    group.add_argument("--num_workers", type=int, default=0, help="converter processes (0: CPU count)")
    group.add_argument("--strict", action="store_true", help="fail on a missing file instead of skipping")


def _add_weights(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--pytorch_checkpoint", type=str, default="",
                       help="PyTorch file to convert: official BTS checkpoint or torchvision state dict "
                            "(default: none)")
    group.add_argument("--output_path", type=str, default="",
                       help="converted weights: .keras model / .weights.h5 (BTS) or encoder weights.h5 "
                            "(default: next to the input / the training default)")


def _add_serve(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--host", type=str, default="127.0.0.1", help="address the demo listens on")
    group.add_argument("--port", type=int, default=5000, help="port the demo listens on (0: any free one)")
    group.add_argument("--checkpoint_path_kitti", type=str, default="",
                       help="outdoor (KITTI) model for the demo (default: none)")
    group.add_argument("--allow_untrained", action="store_true",
                       help="demo without a checkpoint: serve a random model behind a warning banner")
    group.add_argument("--export_dir", type=str, default="",
                       help="folder the exports are written to (bts_export.py; required there)")
    group.add_argument("--formats", type=str, nargs="*", default=None,
                       help="export formats (bts_export.py): saved_model tflite tflite_fp16 "
                            "tflite_dynamic onnx; default all but tflite_dynamic")
    group.add_argument("--parity_images", type=int, default=3,
                       help="synthetic images for each export's parity check against the Keras model")


def _add_bench(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--quick", action="store_true", help="tiny model and small sizes (CI smoke run)")
    group.add_argument("--cases", type=str, nargs="*", default=None,
                       help="benchmark case names to run (default: all; see benchmarks/bench_model.py)")
    group.add_argument("--repeats", type=int, default=5, help="timed repeats after warm-up")
    group.add_argument("--warmup", type=int, default=2, help="untimed calls first (the first one traces)")
    group.add_argument("--profile_dir", type=str, default="",
                       help="write a TensorBoard profile trace of each case here (default: none)")
    group.add_argument("--bench_output", type=str, default="",
                       help="JSON results file (default benchmarks/results/<script>.json)")
    group.add_argument("--jit_compile", action="store_true", help="compile steps with XLA")


def _add_tune(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--n_trials", type=int, default=10, help="trials to run (a resumed study runs this many more)")
    group.add_argument("--study_name", type=str, default="bts_tuning", help="Optuna study name")
    group.add_argument("--storage", type=str, default="sqlite:///tuning.db",
                       help="Optuna storage URL (a resumed study continues there)")
    group.add_argument("--search_space", type=str, default="",
                       help="JSON file overriding the search space (default: the built-in one)")
    group.add_argument("--objective_metric", type=str, default="silog", help="validation metric the study minimises")
    group.add_argument("--pruner", type=str, default="median", choices=["median", "hyperband", "none"],
                       help="Optuna pruner fed every validation evaluation of trained steps")


def _add_synthetic(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--output", type=str, default="", help="output folder of the synthetic dataset (default: none)")
    group.add_argument("--num_train", type=int, default=64, help="training frames")
    group.add_argument("--num_test", type=int, default=16, help="test frames")
    group.add_argument("--height", type=int, default=None, help="frame height (default: 480 NYU, 375 KITTI)")
    group.add_argument("--width", type=int, default=None, help="frame width (default: 640 NYU, 1242 KITTI)")


GROUPS: Dict[str, tuple] = {
    "model": ("model", _add_model),
    "compute": ("computation", _add_compute),
    "data": ("data", _add_data),
    "train": ("training", _add_train),
    "distribute": ("distribution", _add_distribute),
    "eval": ("evaluation", _add_eval),
    "test": ("testing and prediction", _add_test),
    "predict_batch": ("batched prediction", _add_predict_batch),
    "convert": ("TFRecord conversion", _add_convert),
    "weights": ("pretrained weight conversion", _add_weights),
    "serve": ("serving and export", _add_serve),
    "bench": ("benchmarks", _add_bench),
    "tune": ("hyper-parameter tuning", _add_tune),
    "synthetic": ("synthetic datasets", _add_synthetic),
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser with comment-aware argument files and one-line unknown-flag errors."""

    def convert_arg_line_to_args(self, arg_line: str) -> List[str]:
        return shlex.split(arg_line, comments=True)

    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _read_args_from_files(self, arg_strings: List[str]) -> List[str]:
        # argparse's own @file expansion recurses without end on a file that includes itself.
        try:
            return expand_argument_files(arg_strings)
        except ArgumentFileError as err:
            self.error(str(err))


class ArgumentFileError(ValueError):
    """An argument file that cannot be read, cannot be tokenised or includes itself."""


def read_argument_file(path: str) -> List[str]:
    """Tokens of an argument file: whitespace separated, ``#`` comments and blank lines ignored."""
    try:
        with open(path, encoding="utf-8") as handle:
            return shlex.split(handle.read(), comments=True)
    except OSError as err:
        raise ArgumentFileError(f"cannot read argument file {path!r}: {err.strerror}") from None
    except ValueError as err:  # not UTF-8 text, or an unclosed quote
        raise ArgumentFileError(f"argument file {path!r} is not a valid argument file: {err}") from None


def expand_argument_files(tokens: Sequence[str], chain: Sequence[str] = ()) -> List[str]:
    """``tokens`` with every ``@file`` replaced by that file's tokens, recursively.

    ``chain`` holds the files being expanded (outermost first); a file that appears in it again
    is a cycle and raises ArgumentFileError naming the whole loop.
    """
    expanded: List[str] = []
    for token in tokens:
        if not token.startswith("@"):
            expanded.append(token)
            continue
        path = token[1:]
        keys = [os.path.realpath(name) for name in chain]
        if os.path.realpath(path) in keys:
            loop = " -> ".join([*chain[keys.index(os.path.realpath(path)):], path])
            raise ArgumentFileError(f"argument file {path} includes itself ({loop})")
        expanded.extend(expand_argument_files(read_argument_file(path), [*chain, path]))
    return expanded


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` ends each flag's line with its default, unless the help already says it (flags
    whose default depends on other flags) or the flag is a switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        if action.default is None or action.default == "" or action.default == []:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


def _add_general(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and C++ log lines, hidden by default "
                             "(a TF_CPP_MIN_LOG_LEVEL you set is respected too)")


def build_parser(groups: Iterable[str], description: str = "", prog: Optional[str] = None,
                 defaults: Optional[Mapping[str, Any]] = None) -> _Parser:
    """A parser holding the flags of ``groups`` (keys of ``GROUPS``), each in its own help section,
    and ``--verbose``; ``defaults`` (flag destination -> value) replace the groups' defaults for
    this script (``--help`` shows them), e.g. ``--mixed_precision auto`` where it predicts."""
    parser = _Parser(description=description, prog=prog, fromfile_prefix_chars="@", allow_abbrev=False,
                     formatter_class=DefaultsHelpFormatter)
    _add_general(parser)
    for key in groups:
        if key == "predict_batch" and "train" in groups:  # the training group's --batch_size serves
            continue
        title, add = GROUPS[key]
        add(parser.add_argument_group(title))
    if defaults:
        parser.set_defaults(**defaults)
    return parser


def expand_argv(argv: Sequence[str]) -> List[str]:
    """Upstream rule: a first argument not starting with '-' or '@' is an argument file.

    Every ``@file`` (in that file too) is expanded here; ArgumentFileError on a cycle.
    """
    argv = list(argv)
    if argv and not argv[0].startswith(("-", "@")):
        argv[0] = "@" + argv[0]
    return expand_argument_files(argv)


def _closest_flag(parser: argparse.ArgumentParser, flag: str) -> str:
    options = [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]
    match = difflib.get_close_matches(flag.split("=")[0], options, n=1, cutoff=0.5)
    return f" (did you mean {match[0]}?)" if match else ""


def resolve_dataset_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill dataset-dependent defaults (max depth, rotation, eval range, input size) from the table."""
    if not hasattr(args, "dataset"):
        return args
    facts = get_dataset_facts(args.dataset)
    defaults = {
        "max_depth": facts.max_depth,
        "degree": facts.rotation_degree,
        "min_depth_eval": facts.min_depth_eval,
        "max_depth_eval": facts.max_depth_eval,
    }
    for name, value in defaults.items():
        if hasattr(args, name) and getattr(args, name) is None:
            setattr(args, name, value)
    size = facts.train_input_size if getattr(args, "mode", "train") == "train" else facts.test_input_size
    if getattr(args, "input_height", 0) is None:
        args.input_height = size[0]
    if getattr(args, "input_width", 0) is None:
        args.input_width = size[1]
    return args


# flag -> (valid(value, args), what a valid value is). Every int/float flag of GROUPS has an entry
# (a test walks them); a value of None is a default resolved elsewhere and is never checked.
_Check = Tuple[Callable[[Any, argparse.Namespace], bool], str]


def _at_least(low: int, note: str = "") -> _Check:
    return (lambda value, _: value >= low), f"an integer >= {low}{note}"


def _between(low: float, high: float, closed_high: bool = True) -> _Check:
    def valid(value: float, _: argparse.Namespace) -> bool:
        return math.isfinite(value) and low <= value and (value <= high if closed_high else value < high)

    return valid, f"a number in [{low:g}, {high:g}{']' if closed_high else ')'}"


_POSITIVE: _Check = (lambda value, _: math.isfinite(value) and value > 0, "a finite number > 0")
_NON_NEGATIVE: _Check = (lambda value, _: math.isfinite(value) and value >= 0, "a finite number >= 0")
_MULTIPLE_OF_32: _Check = (lambda value, _: value > 0 and value % 32 == 0, "a positive multiple of 32")
_AT_LEAST_1 = _at_least(1)

NUMERIC_FLAGS: Dict[str, _Check] = {
    # model
    "max_depth": _POSITIVE,
    "bts_size": _at_least(MIN_BTS_SIZE, " (the decoder halves it down to bts_size/32 channels)"),
    "input_height": _MULTIPLE_OF_32,
    "input_width": _MULTIPLE_OF_32,
    # data
    "degree": _between(0, 180),
    "num_threads": _at_least(-1, " (-1 or 0: AUTOTUNE)"),
    "seed": ((lambda value, _: 0 <= value < 2 ** 31), "an integer in [0, 2147483647]"),  # NumPy/TF seeds
    # training
    "batch_size": _AT_LEAST_1,
    "num_epochs": _AT_LEAST_1,
    "num_steps": _at_least(0, " (0: train for --num_epochs)"),
    "learning_rate": _POSITIVE,
    "end_learning_rate": ((lambda value, _: math.isfinite(value)),
                          "a finite number (< 0: 0.1 x --learning_rate)"),
    "adam_eps": _POSITIVE,
    "weight_decay": _NON_NEGATIVE,
    "variance_focus": _between(0, 1),
    "gradient_accumulation_steps": _AT_LEAST_1,
    "log_freq": _AT_LEAST_1,
    "save_freq": _AT_LEAST_1,
    "keep_checkpoints": _AT_LEAST_1,
    # distribution
    "num_gpus": _AT_LEAST_1,
    "num_cpu_devices": _AT_LEAST_1,
    # evaluation (min before max: the max is checked against a valid min)
    "validation_split": _between(0, 1, closed_high=False),
    "min_depth_eval": _POSITIVE,
    "max_depth_eval": ((lambda value, args: math.isfinite(value) and value > (args.min_depth_eval or 0)),
                       "a finite number > --min_depth_eval ({args.min_depth_eval})"),  # same group
    "eval_freq": _AT_LEAST_1,
    # testing and prediction
    "focal": _POSITIVE,
    "fx": _POSITIVE,
    "fy": _POSITIVE,
    "cx": ((lambda value, _: math.isfinite(value)), "a finite number (pixels)"),
    "cy": ((lambda value, _: math.isfinite(value)), "a finite number (pixels)"),
    # conversion, serving, benchmarks, tuning, synthetic data
    "num_shards": _AT_LEAST_1,
    "num_workers": _at_least(0, " (0: one per CPU)"),
    "port": ((lambda value, _: 0 <= value <= 65535), "an integer in [0, 65535]"),
    "parity_images": _AT_LEAST_1,
    "repeats": _AT_LEAST_1,
    "warmup": _at_least(1, " (the first, tracing call is always made)"),
    "n_trials": _AT_LEAST_1,
    "num_train": _AT_LEAST_1,
    "num_test": _at_least(0),
    "height": _AT_LEAST_1,
    "width": _AT_LEAST_1,
}


def check_numeric_flags(args: argparse.Namespace) -> Optional[str]:
    """The first numeric flag of ``args`` outside its range, as one error line; None if all fit."""
    for name, (valid, description) in NUMERIC_FLAGS.items():
        value = getattr(args, name, None)  # flags of groups this script lacks are absent
        if value is not None and not valid(value, args):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            return f"--{name} {shown}: must be {description.format(args=args)}"
    return None


def check_input_paths(args: argparse.Namespace, files: Iterable[str] = (),
                      folders: Iterable[str] = ()) -> Optional[str]:
    """The first of these flags naming a local path that is not there, as one error line; None
    if all are. Plain ``os`` calls, so scripts check before they import TensorFlow.

    ``files``: flags naming a file (a ``checkpoint_path*`` flag may also name a run folder or a
    TF checkpoint prefix); ``folders``: flags naming a folder. Unset flags, flags the script lacks
    and non-local paths (``gs://``: checked when they are read) are skipped.
    """
    from utils.io import is_local

    def given(flag: str) -> str:
        path = getattr(args, flag, None) or ""
        return path if path and is_local(path) else ""

    for flag in files:
        path = given(flag)
        if not path:
            continue
        if flag.startswith("checkpoint_path"):
            if not (os.path.exists(path) or os.path.exists(path + ".index")):
                return f"--{flag} {path!r} does not exist"
        elif os.path.isdir(path):
            return f"--{flag} {path!r} is a folder; expected a file"
        elif not os.path.exists(path):
            return f"--{flag} {path!r} does not exist"
    for flag in folders:
        path = given(flag)
        if path and not os.path.exists(path):
            return f"--{flag} {path!r} does not exist"
        if path and not os.path.isdir(path):
            return f"--{flag} {path!r} is a file; expected a folder"
    return None


class ParsedArgs(argparse.Namespace):
    """The Namespace ``parse_args`` returns: the flags, plus (in a slot, so ``vars()``, equality
    and argument files see only the flags) which of them the user set; see :func:`explicit_flags`."""

    __slots__ = ("_explicit",)


def _explicit_destinations(groups: Iterable[str], argv: Sequence[str]) -> FrozenSet[str]:
    """Destinations that ``argv`` (argument files already expanded) sets: a second parse with
    every default suppressed, so only the flags that were given land in the namespace."""
    probe = build_parser(groups)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given, _ = probe.parse_known_args(argv)
    return frozenset(vars(given))


def _command_line_tokens(argv: Sequence[str]) -> List[str]:
    """``argv`` without its argument files (the leading file and every ``@file``)."""
    argv = list(argv)
    if argv and not argv[0].startswith(("-", "@")):
        argv = argv[1:]
    return [token for token in argv if not token.startswith("@")]


def explicit_flags(args: argparse.Namespace) -> FrozenSet[str]:
    """Flag destinations the user typed on the command line (not defaults, not argument-file
    values: the shipped files name a model, which a checkpoint's own record replaces); empty for
    a Namespace that ``parse_args`` did not make."""
    return getattr(args, "_explicit", frozenset())


def parse_args(
    groups: Iterable[str],
    argv: Optional[Sequence[str]] = None,
    description: str = "",
    prog: Optional[str] = None,
    validate: Optional[Callable[[argparse.ArgumentParser, argparse.Namespace], None]] = None,
    test_datasets: bool = False,
    defaults: Optional[Mapping[str, Any]] = None,
) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) for a script using ``groups``.

    ``validate(parser, args)`` may reject impossible combinations with ``parser.error``.
    :func:`explicit_flags` of the result tells which flags were given. ``test_datasets``: the
    script accepts ``utils.datasets.TEST_ONLY_DATASETS`` (``bts_test.py``); see
    :func:`resolve_test_dataset`. Every other script refuses them in one line. ``defaults``: this
    script's own defaults (see :func:`build_parser`).
    """
    groups = tuple(groups)
    parser = build_parser(groups, description=description, prog=prog, defaults=defaults)
    typed = _command_line_tokens(sys.argv[1:] if argv is None else argv)
    try:
        argv = expand_argv(sys.argv[1:] if argv is None else argv)
    except ArgumentFileError as err:
        parser.error(str(err))
    args, unknown = parser.parse_known_args(argv, namespace=ParsedArgs())
    if unknown:
        flag = next((tok for tok in unknown if tok.startswith("-")), unknown[0])
        if flag.startswith("-"):
            parser.error(f"unknown flag {flag}{_closest_flag(parser, flag)}")
        parser.error(f"unexpected argument {flag!r}")
    args._explicit = _explicit_destinations(groups, typed)
    resolve_test_dataset(parser, args, test_datasets)
    encoder = getattr(args, "encoder", DEFAULT_ENCODER)
    if encoder not in ENCODER_NAMES:  # before any model code runs: the table is plain Python
        parser.error(f"--encoder {encoder!r} is unknown; valid encoders: {', '.join(ENCODER_NAMES)}")
    args = resolve_dataset_defaults(args)
    problem = check_numeric_flags(args)
    if problem:
        parser.error(problem)
    if validate is not None:
        validate(parser, args)
    return args


def resolve_test_dataset(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         allowed: bool) -> None:
    """``--dataset kitti_benchmark`` (a ``TEST_ONLY_DATASETS`` name): where ``allowed``,
    ``args.test_dataset`` keeps the name and ``args.dataset`` becomes the dataset whose facts it
    uses ('kitti'), so every table look-up below works unchanged; ``args.test_dataset`` is ''
    for the others. Where not allowed (training, conversion, ...), a one-line parser error."""
    name = getattr(args, "dataset", None)
    if allowed:
        args.test_dataset = name if name in TEST_ONLY_DATASETS else ""
    if name not in TEST_ONLY_DATASETS:
        return
    variant = TEST_ONLY_DATASETS[name]
    if not allowed:
        parser.error(f"--dataset {name} is for bts_test.py only ({variant.description}); "
                     f"training and evaluation need ground truth: use --dataset {variant.base}")
    args.dataset = variant.base


def write_argument_file(args: Union[argparse.Namespace, Mapping[str, Any]], path: str) -> None:
    """Write :func:`argument_file_text` of ``args`` to ``path``.

    Written atomically (temp file + rename) through ``tf.io.gfile`` so ``gs://`` works too.
    """
    from utils.io import atomic_write_text  # local import: keeps this module TF-free

    atomic_write_text(path, argument_file_text(args))


def argument_file_text(args: Union[argparse.Namespace, Mapping[str, Any]]) -> str:
    """``args`` (a Namespace or a flag -> value mapping) as an argument file that ``parse_args``
    reads back to the same values: one sorted ``--flag value`` per line, unset flags left out."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    lines = ["# resolved arguments, replay with: python SCRIPT.py THIS_FILE"]
    for name, value in sorted(values.items()):
        if value is None or value is False:
            continue
        if value is True:
            lines.append(f"--{name}")
        elif isinstance(value, (list, tuple)):
            if value:
                lines.append(f"--{name} " + " ".join(shlex.quote(str(v)) for v in value))
        else:
            lines.append(f"--{name} {shlex.quote(str(value))}")
    return "\n".join(lines) + "\n"


def checkpoint_model_name(checkpoint: str) -> str:
    """The name of the model ``checkpoint`` designates, from its path alone (no file is read, no
    TensorFlow): the run folder's name for the folder itself, its ``ckpt-N``, ``best/`` and the
    files training writes there (``model.keras``, ``model*.weights.h5``; upstream's ``model``
    prefix); another weights file's stem (``nyu_finetuned.keras``); '' when nothing names it."""
    path = checkpoint.rstrip("/")
    base = os.path.basename(path)
    suffix = next((s for s in KERAS_SUFFIXES if base.endswith(s)), None)
    if suffix is not None:
        stem = base[:-len(suffix)]
        if stem != "model" and not stem.startswith("model-"):  # model-best_silog: best/'s file
            return stem
        path = os.path.dirname(path)
    elif base == "model" or (base.startswith("ckpt-") and base[len("ckpt-"):].isdigit()):
        path = os.path.dirname(path)  # a checkpoint prefix inside its run folder
    if os.path.basename(path) == BEST_DIR:
        path = os.path.dirname(path)
    name = os.path.basename(path)
    return "" if name in (".", "..") else name


def default_output_directory(args: argparse.Namespace) -> str:
    """--output_directory, else ``result_{name}`` as upstream, named after the model that is
    loaded: ``name`` is --model_name when typed on the command line, else the model's own name
    (:func:`checkpoint_model_name` of --checkpoint_path), else --model_name (argument file or
    default). The shipped argument files name their checkpoint's folder, so they keep upstream's
    folders; a --checkpoint_path typed over them gets its own."""
    if args.output_directory:
        return args.output_directory
    name = args.model_name
    if "model_name" not in explicit_flags(args):
        name = checkpoint_model_name(getattr(args, "checkpoint_path", "") or "") or name
    return os.path.join(".", f"result_{name}")


# ---------------------------------------------------------------------------------------------
# The edge: parsed arguments -> typed configs (utils/configs.py). Only the CLI scripts call these;
# nothing below them reads a Namespace.
# ---------------------------------------------------------------------------------------------
def model_config(args: argparse.Namespace, **overrides) -> BtsConfig:
    """The BtsConfig the flags describe (any input size; ``overrides`` replace fields)."""
    values = dict(encoder=getattr(args, "encoder", DEFAULT_ENCODER),
                  bts_size=getattr(args, "bts_size", None), max_depth=getattr(args, "max_depth", None),
                  imagenet_weights=getattr(args, "pretrained_model", "") == "imagenet")
    values.update(overrides)
    return BtsConfig.for_dataset(getattr(args, "dataset", "nyu"), **values)


# BtsConfig fields that a flag of the same name sets (the rest follow --dataset or the encoder).
MODEL_FLAGS = ("encoder", "bts_size", "max_depth")


def explicit_model_fields(args: argparse.Namespace) -> FrozenSet[str]:
    """The BtsConfig fields the user set with a flag: a checkpoint's saved config must agree with
    these, and replaces the defaults of the others (bts_predict.load_model)."""
    return frozenset(MODEL_FLAGS) & explicit_flags(args)


def frozen_first_blocks(args: argparse.Namespace) -> int:
    """How many first conv blocks --fix_first_conv_block(s) freeze: 0, 1 or 2."""
    if getattr(args, "fix_first_conv_blocks", False):
        return 2
    return 1 if getattr(args, "fix_first_conv_block", False) else 0


def pipeline_config(args: argparse.Namespace, split: str = "train", *,
                    normalization: Optional[str] = None, **overrides) -> PipelineConfig:
    """The PipelineConfig of ``split``: 'train' (the training list/shards, --batch_size), 'eval'
    (online validation: the *_eval lists, batch 1) or 'test' (bts_test.py: the main list,
    --batch_size frames predicted together, ``bts_predict.predict_samples``; 1 where the script
    has no such flag). ``normalization`` defaults to --encoder's."""
    if split not in ("train", "eval", "test"):
        raise ValueError(f"split {split!r} is unknown; expected train, eval or test")
    facts = get_dataset_facts(args.dataset)
    suffix = "_eval" if split == "eval" else ""
    degree = getattr(args, "degree", None)
    values = dict(
        facts=facts,
        normalization=normalization or encoder_facts(getattr(args, "encoder", DEFAULT_ENCODER)).normalization,
        input_height=int(getattr(args, "input_height", None) or facts.train_input_size[0]),
        input_width=int(getattr(args, "input_width", None) or facts.train_input_size[1]),
        batch_size=int(getattr(args, "batch_size", 1) or 1) if split != "eval" else 1,
        filenames_file=getattr(args, "filenames_file" + suffix, "") or "",
        data_path=getattr(args, "data_path" + suffix, "") or "",
        gt_path=getattr(args, "gt_path" + suffix, "") or "",
        tfrecord_path=(getattr(args, "tfrecord_path", "") or "") if split == "train" else "",
        do_kb_crop=bool(getattr(args, "do_kb_crop", False)),
        do_random_rotate=bool(getattr(args, "do_random_rotate", False)),
        degree=float(facts.rotation_degree if degree is None else degree),
        seed=getattr(args, "seed", None),
        deterministic=bool(getattr(args, "deterministic", False)),
        num_threads=int(getattr(args, "num_threads", -1) if getattr(args, "num_threads", -1) is not None
                        else -1),
        use_right=bool(getattr(args, "use_right", False)) and split == "train",
    )
    values.update(overrides)
    return PipelineConfig(**values)


def eval_config(args: argparse.Namespace, **overrides) -> EvalConfig:
    """The evaluation protocol the flags describe (dataset, depth range, crops)."""
    facts = get_dataset_facts(args.dataset)
    min_depth = getattr(args, "min_depth_eval", None)
    max_depth = getattr(args, "max_depth_eval", None)
    values = dict(dataset=args.dataset,
                  min_depth_eval=float(facts.min_depth_eval if min_depth is None else min_depth),
                  max_depth_eval=float(facts.max_depth_eval if max_depth is None else max_depth),
                  eigen_crop=bool(getattr(args, "eigen_crop", False)),
                  garg_crop=bool(getattr(args, "garg_crop", False)),
                  do_kb_crop=bool(getattr(args, "do_kb_crop", False)),
                  quantize=not getattr(args, "no_quantize_eval", False),
                  protocol=getattr(args, "online_eval_protocol", None) or "offline")
    values.update(overrides)
    return EvalConfig(**values)


# TrainConfig fields that are not plain flags of the same name (built from several flags).
_TRAIN_BUILT = ("model", "data", "evaluation", "eval_data", "first_blocks", "argument_text")


def training_pixels(args: argparse.Namespace) -> int:
    """Pixels of one training batch (``--batch_size`` × ``--input_height`` × ``--input_width``),
    what ``--model_ops auto`` decides recompute by (``bts_trainer.resolve_model_ops``)."""
    return args.batch_size * args.input_height * args.input_width


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``bts_main.py``'s flags (any script with its groups): the model, the
    training split, online validation, the recipe, and ``arguments.txt`` rendered from ``args``.

    The evaluation pipeline exists with ``--do_online_eval`` or ``--validation_split``; its
    lists' roots default to the training ones.
    """
    model = model_config(args)
    normalization = encoder_facts(model.encoder).normalization
    eval_data = None
    if args.do_online_eval or args.validation_split > 0:
        eval_data = pipeline_config(args, "eval", normalization=normalization,
                                    data_path=args.data_path_eval or args.data_path,
                                    gt_path=args.gt_path_eval or args.gt_path)
    plain = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in _TRAIN_BUILT}
    return TrainConfig(model=model, data=pipeline_config(args, "train", normalization=normalization),
                       evaluation=eval_config(args), eval_data=eval_data,
                       first_blocks=frozen_first_blocks(args), argument_text=argument_file_text(args),
                       **plain)

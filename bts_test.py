# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluate BTS with the official protocol, save predictions, or predict on anyone's images.

    # evaluate the NYU test list (raw PNGs in result_bts_nyu_v2/raw/, metrics table at the end)
    python bts_test.py arguments_test_nyu.txt --checkpoint_path models/bts_nyu_v2/model.keras
    # KITTI Eigen split: KB crop in, pasted back, Garg crop (see arguments_test_eigen.txt)
    python bts_test.py arguments_test_eigen.txt --checkpoint_path models/bts_eigen_v2
    # KITTI online benchmark test images ('image_path focal' lines, no ground truth, no metrics)
    python bts_test.py --dataset kitti_benchmark --checkpoint_path models/bts_eigen_v2 \
        --data_path depth_selection/test_depth_prediction_anonymous --filenames_file test.txt
    # a training run folder alone: its bts_config.json says how to build the model
    # (outputs in result_my_run/: the folder is named after the model loaded)
    python bts_test.py arguments_test_nyu.txt --checkpoint_path models/my_run/best
    # any images, any size: files, folders or list files
    python bts_test.py --dataset nyu --checkpoint_path M.keras --image_path photos/ \
        --save_png --save_cmap --save_point_cloud --output_directory out/
    # a video: depth video beside the input (out/clip_depth.mp4), raw PNG / .npy per frame on request
    python bts_test.py --checkpoint_path M.keras --video clip.mp4 --output_directory out/ [--save_png]

Evaluation protocol (design §6): full-size ground truth; the prediction is evaluated as the official
offline pipeline that produced the published numbers sees it (``bts_test.py`` raw uint16 PNG, then
``eval_with_pngs.py``): quantised to the PNG grid (×1000 NYU / ×256 KITTI, truncated), clipped to
[min_depth_eval, max_depth_eval], for KITTI pasted *after* clipping into a zero canvas of GT size,
valid where min < gt < max inside the Eigen (NYU) / Garg (KITTI) crop; metrics per image in
float32, averaged over images. ``python -m tools.eval_with_pngs`` on the saved PNGs gives the same
numbers (both read the file-name conventions of ``utils.paths``). The loop is online validation's
(``bts_predict.predict_samples``), so training logs the numbers this prints for the same weights;
``--no_quantize_eval`` scores the float32 depth instead, and the line above the table says which.

Outputs go to ``--output_directory``, by default ``result_{name}`` named after the model that is
loaded: ``name`` is ``--model_name`` when typed on the command line, else the model's own name
read from ``--checkpoint_path`` (a run folder's name for the folder, its ``ckpt-N``, ``best/``,
``model.keras`` or ``model*.weights.h5``; another ``.keras``/``.weights.h5`` file's stem), else
``--model_name`` (the argument file's, or the default). The shipped argument files name their
checkpoint's folder (``--model_name bts_nyu_v2``, ``--checkpoint_path ./models/bts_nyu_v2``) and
keep upstream's ``result_bts_nyu_v2``; ``--checkpoint_path models/my_run/best`` typed over one
writes to ``result_my_run``, not to the other model's folder. One file per image under a folder
per kind: ``raw/`` uint16 PNG, ``cmap/`` colormapped PNG over [0, max_depth], ``npy/`` float32
metres, ``lpg/`` LPG maps, ``ply/`` coloured point clouds. With a filenames file the names are
the upstream ones (NYU ``{scene}_rgb_{id}.png``, KITTI ``{date_drive}_{frame}.png``), so
``eval_with_pngs.py`` maps them back to the ground truth; KITTI raw PNGs hold the 352×1216 KB crop
as upstream. With ``--image_path`` names mirror the inputs' relative paths and every output has
the input's size.

``--video`` (or a video file among ``--image_path``'s entries; ``bts_video.py``): every frame
predicted as an image of that size, written as a depth video (``--save_video``, default
``<output_directory>/<video name>_depth.mp4`` when no ``--save_*`` flag is given: the input and
its depth side by side or the depth alone, ``--video_layout``, on the fixed scale [0, max_depth]
with a legend below; the source frame rate, each panel the source size) and/or per-frame files
``raw/<video name>_<frame 06d>.png`` (``npy/``, ...) with the ``--save_*`` flags. Ctrl-C stops
the run, keeps the frames written so far (a playable video, the per-frame files) and exits 130.

``--dataset kitti_benchmark`` (upstream's test-time dataset for the KITTI online depth-prediction
benchmark, KITTI's facts): a list of ``image_path focal`` lines (upstream's ``image_path None
focal`` too; any depth column is ignored), the KB crop always applied, the listed focal used, no
ground truth and so no metrics (one line says so; ``--gt_path`` is ignored, ``--metrics_csv`` an
error). It writes ``raw/<image file name>.png`` (no drive prefix), uint16 = depth × 256, KITTI's
depth-PNG format (``--save_png`` by default). As upstream ``bts_test.py``, the PNG holds the
prediction on the 352×1216 crop, not pasted back; the benchmark's test images are 352×1216
already, so there it is the full frame.

Outputs are all-or-nothing: every listed file is checked to exist before the first prediction,
predictions are written to a hidden staging folder moved into place only when every image
succeeded (a failed run leaves no output folder), and a non-empty output folder or an existing
``--metrics_csv`` is refused unless ``--overwrite``, which replaces the kinds written (``raw/``,
...) as a whole and leaves other files alone.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import os
import re
import sys
import threading
import time
import uuid
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from utils import image_io, metrics
from utils.arguments import (check_input_paths, default_output_directory, eval_config, explicit_model_fields,
                             model_config, parse_args, pipeline_config)
from utils.io import file_errors, files_for
from utils.paths import SKIPPED_NAME_PARTS, find_prediction_pngs, upstream_output_name
from utils.quiet import quiet_tensorflow
from utils.video import is_video_path

LOGGER = logging.getLogger("bts_test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LPG_SUFFIXES = {"depth_8x8_scaled": "8x8", "depth_4x4_scaled": "4x4", "depth_2x2_scaled": "2x2",
                "reduc1x1": "1x1"}


class OutputError(OSError):
    """The output folder or a results file cannot be written."""


class Throughput:
    """Model time per image; the first call (graph tracing) is reported apart from the rest."""

    def __init__(self) -> None:
        self.first_s: Optional[float] = None
        self.first_count = 0
        self._first_left = 0  # images of the first call still to come
        self.rest_s = 0.0
        self.rest_count = 0

    def add(self, seconds: float, frames: int = 1) -> None:
        """One image's share of a call that predicted ``frames`` images (``--batch_size``)."""
        if self.first_s is None:
            self.first_s, self._first_left = 0.0, frames
        if self._first_left > 0:
            self.first_s += seconds
            self.first_count += 1
            self._first_left -= 1
        else:
            self.rest_s += seconds
            self.rest_count += 1

    def log(self) -> None:
        if self.first_s is None:
            return
        first = "first image" if self.first_count == 1 else f"first batch of {self.first_count} images"
        message = f"inference: {first} {self.first_s:.1f} s (includes tracing)"
        if self.rest_count:
            message += (f"; next {self.rest_count} images {self.rest_s:.1f} s = "
                        f"{self.rest_count / max(self.rest_s, 1e-9):.2f} images/s")
        LOGGER.info(message)


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One input of ``--image_path``: its path, output name (no extension) and focal (or None)."""

    path: str
    name: str
    focal: Optional[float] = None


# -------------------------------------------------------------------------------------------
# Arguments and output folder
# -------------------------------------------------------------------------------------------
def _validate(parser, args) -> None:
    if args.image_path is None and not args.filenames_file and not args.video:
        parser.error("give --filenames_file (with --data_path/--gt_path), --image_path or --video")
    if args.image_path is not None and not args.image_path:
        parser.error("--image_path needs at least one file, folder or list file")
    if args.video and args.image_path is not None:
        parser.error("--video and --image_path: give one of them (--image_path takes video files too)")
    if args.save_video:
        sources = video_sources(args)
        if not sources:
            parser.error("--save_video writes the depth video of --video (or of a video file in "
                         "--image_path); none is given")
        if len(sources) != 1:
            parser.error(f"--save_video names one file, for one video; {len(sources)} given (leave it "
                         "out: each video is written to <output_directory>/<video name>_depth.mp4)")
    if args.eigen_crop and args.garg_crop:
        LOGGER.warning("--eigen_crop and --garg_crop both given: the Garg crop is used")
    if args.test_dataset:  # kitti_benchmark: a list of test images, no ground truth
        if args.image_path is not None or args.video:
            parser.error(f"--dataset {args.test_dataset} reads a --filenames_file of 'image_path "
                         f"focal' lines; for --image_path or --video use --dataset {args.dataset}")
        if args.metrics_csv:
            parser.error(f"--metrics_csv: --dataset {args.test_dataset} has no ground truth, so "
                         "no metrics")


def check_inputs(args) -> Optional[str]:
    """The cheap checks, made before TensorFlow starts: one error line, or None."""
    if not args.checkpoint_path:
        return ("--checkpoint_path is required: a .keras/.weights.h5 file, a training checkpoint "
                "or a run folder (see docs/pretrained.md)")
    if args.image_path is not None or args.video:  # the list-mode roots do not apply
        return check_input_paths(args, files=("checkpoint_path",))
    return check_input_paths(args, files=("checkpoint_path", "filenames_file"),
                             folders=("data_path", "gt_path"))


def wants_outputs(args) -> bool:
    return any((args.save_png, args.save_cmap, args.save_npy, args.save_lpg, args.save_point_cloud))


def prepare_output_directory(args) -> str:
    """The output folder, checked before any work: writable, and holding no earlier results
    unless ``--overwrite`` (the same for ``--metrics_csv``); OutputError otherwise. Local
    folders are checked without TensorFlow, so this runs before it starts."""
    from utils.io import WriteError, check_writable_folder

    folder = default_output_directory(args)
    files = files_for(folder)
    targets = []
    if wants_outputs(args):
        if files.exists(folder) and not files.isdir(folder):
            raise OutputError(f"--output_directory {folder!r} is a file, not a folder")
        remove_stale_staging(folder)
        earlier = sorted(files.listdir(folder)) if files.isdir(folder) else []
        if earlier and not args.overwrite:
            shown = ", ".join(name.rstrip("/") for name in earlier[:3])
            raise OutputError(f"output folder {folder!r} already holds results ({shown}"
                              f"{', ...' if len(earlier) > 3 else ''}); pass --overwrite to "
                              "replace them or choose another --output_directory")
        # A new folder is staged beside it (its parent must be writable), an existing one inside.
        targets.append(("--output_directory", folder, folder if files.isdir(folder) else _parent(folder)))
    if args.metrics_csv:
        if files_for(args.metrics_csv).exists(args.metrics_csv) and not args.overwrite:
            raise OutputError(f"--metrics_csv {args.metrics_csv!r} already exists; pass "
                              "--overwrite to replace it or choose another file")
        targets.append(("--metrics_csv", args.metrics_csv, os.path.dirname(args.metrics_csv) or "."))
    for flag, shown, target in targets:
        try:
            check_writable_folder(target)
        except WriteError as err:
            raise OutputError(f"{flag} {shown!r} is not writable: {err.reason}") from None
    return folder


def _parent(folder: str) -> str:
    return os.path.dirname(folder.rstrip("/")) or "."


STAGING_PREFIX = ".partial-"  # hidden staging folders: '.partial-XXXXXXXX' or '.{name}.partial-...'


def _staging_names(folder: str) -> Tuple[str, str]:
    """(glob of staging folders beside ``folder``, glob of those inside it)."""
    base = os.path.basename(folder.rstrip("/"))
    return (os.path.join(_parent(folder), f".{base}{STAGING_PREFIX}*"),
            os.path.join(folder, f"{STAGING_PREFIX}*"))


def remove_stale_staging(folder: str) -> None:
    """Delete staging folders that killed runs into ``folder`` left behind."""
    files = files_for(folder)
    for pattern in _staging_names(folder):
        for stale in files.glob(pattern):
            if re.fullmatch(r"\.(.+\.)?partial-[0-9a-f]{8}", os.path.basename(stale.rstrip("/"))):
                LOGGER.info("removing %s, left by an interrupted run", stale)
                files.rmtree(stale)


class StagedOutput:
    """All-or-nothing outputs: predictions are written to a hidden staging folder that is moved
    into place when every image succeeded, and deleted when the run fails.

    A new output folder is staged beside it (``.{name}.partial-XXXXXXXX``) and renamed to it, one
    rename. An existing one (``--overwrite``) is staged inside it; each kind folder written
    (``raw/``, ``cmap/``, ...) then replaces the earlier one as a whole, so no stale file of the
    earlier run mixes in; other files in the folder are left alone. Renames keep each folder's
    listing order, so ``eval_with_pngs.py`` walks the PNGs in the order this run averaged them.
    """

    def __init__(self, folder: str, enabled: bool = True) -> None:
        import tensorflow as tf

        self.folder, self.enabled = folder, enabled
        self.existed = tf.io.gfile.isdir(folder)
        token = f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
        base = os.path.basename(folder.rstrip("/"))
        self.path = (folder if not enabled else os.path.join(folder, token) if self.existed
                     else os.path.join(_parent(folder), f".{base}{token}"))
        self._created = None  # the top folder created for staging (removed if the run fails)

    def __enter__(self) -> "StagedOutput":
        import tensorflow as tf

        if not self.enabled:  # nothing is written (metrics only)
            return self
        here = os.path.abspath(_parent(self.path)) if "://" not in self.path else None
        while here and not os.path.exists(here) and os.path.dirname(here) != here:
            self._created, here = here, os.path.dirname(here)
        tf.io.gfile.makedirs(self.path)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        import tensorflow as tf

        if not self.enabled:
            return
        if exc_type is None:
            try:
                self.commit()
            except (tf.errors.OpError, OSError) as err:
                from utils.io import write_failure_reason

                raise OutputError(f"cannot move the predictions from {self.path} into "
                                  f"{self.folder}: {write_failure_reason(err)}") from None
            return
        try:  # the run failed: leave nothing of it
            tf.io.gfile.rmtree(self.path)
            if self._created and tf.io.gfile.exists(self._created):
                tf.io.gfile.rmtree(self._created)
        except (tf.errors.OpError, OSError) as err:
            LOGGER.warning("could not remove the staging folder %s: %s", self.path, err)

    def commit(self) -> None:
        """Move the staged outputs into the output folder."""
        import tensorflow as tf

        if not tf.io.gfile.isdir(self.folder):  # (a --metrics_csv inside it may have created it)
            tf.io.gfile.rename(self.path, self.folder)
            return
        for kind in tf.io.gfile.listdir(self.path):
            kind = kind.rstrip("/")
            target = os.path.join(self.folder, kind)
            if tf.io.gfile.exists(target):  # the earlier run's folder goes with the staging
                tf.io.gfile.rename(target, os.path.join(self.path, f"{kind}.earlier"))
            tf.io.gfile.rename(os.path.join(self.path, kind), target)
        tf.io.gfile.rmtree(self.path)


# -------------------------------------------------------------------------------------------
# Saving predictions
# -------------------------------------------------------------------------------------------
def save_prediction(args, predictor, folder: str, name: str, depth: np.ndarray, *,
                    rgb: Optional[np.ndarray] = None, maps: Optional[Dict[str, np.ndarray]] = None,
                    intrinsics: Optional[image_io.Intrinsics] = None,
                    shown_folder: Optional[str] = None) -> None:
    """Write the requested outputs of one image (each file atomically) under ``folder``.

    A failed write (full disk, ...) is an OutputError naming the file under ``shown_folder``
    (the output folder, when ``folder`` is its staging folder).
    """
    from utils.io import write_errors, write_failure_reason

    def write(kind: str, suffix: str, writer, *values) -> None:
        try:
            writer(os.path.join(folder, kind, name + suffix), *values)
        except write_errors() as err:
            path = os.path.join(shown_folder or folder, kind, name + suffix)
            raise OutputError(f"cannot write {path}: {write_failure_reason(err)}") from None

    if args.save_png:
        write("raw", ".png", image_io.save_depth_png, depth, image_io.depth_scale(args.dataset))
    if args.save_cmap:
        write("cmap", ".png", image_io.save_colormap_png, depth, predictor.max_depth)
    if args.save_npy:
        write("npy", ".npy", image_io.save_depth_npy, depth)
    if args.save_lpg and maps is not None:
        for key, suffix in LPG_SUFFIXES.items():  # maps are in units of max_depth
            write("lpg", f"_{suffix}.png", image_io.save_colormap_png,
                  maps[key] * predictor.max_depth, predictor.max_depth)
    if args.save_point_cloud and rgb is not None and intrinsics is not None:
        write("ply", ".ply", image_io.save_point_cloud, depth, rgb, intrinsics)


class BackgroundWriter:
    """Writes the outputs of one image after another on a worker thread while the model predicts
    the next ones; a context manager.

    One worker: files are created in submission (list) order, so a folder lists them as a serial
    run would, and ``averaging_order`` sums the metrics in the same order on every run. At most
    ``max_pending`` writes wait (``submit`` blocks until the oldest is done), bounding the memory
    held by queued predictions. The first failed write (an OutputError) is raised in the caller's
    thread, at the next ``submit`` or on leaving the block. Leaving the block waits for every
    write: on success all files are written before the staging folder is moved into place; on an
    error queued writes are dropped and the one running finishes, so nothing is written into a
    staging folder after it is removed.
    """

    def __init__(self, max_pending: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bts_test-write")
        self._pending: collections.deque = collections.deque()
        self._failed = threading.Event()  # set by the first failed write: the queued ones skip
        self.max_pending = max(1, int(max_pending))

    def submit(self, write: Callable, *args, **kwargs) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.max_pending):
            self._pending.popleft().result()  # re-raises the write's error here
        self._pending.append(self._pool.submit(self._guarded, write, *args, **kwargs))

    def _guarded(self, write: Callable, *args, **kwargs) -> None:
        if self._failed.is_set():
            return
        try:
            write(*args, **kwargs)
        except BaseException:
            self._failed.set()
            raise

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:  # failing already: stop, keep the first error
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def check_unique(names: Sequence[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two inputs map to the same output name {name!r}; rename one")
        seen.add(name)


# -------------------------------------------------------------------------------------------
# Filenames-file mode: evaluation (and saving) with the official protocol
# -------------------------------------------------------------------------------------------
def read_samples(args):
    """Samples of the list. Without --gt_path no sample has GT; GT files that do not exist are
    treated like 'None' (as the official evaluator counts them missing), with a warning."""
    import tensorflow as tf

    import bts_dataloader

    samples = bts_dataloader.read_filenames_file(args.filenames_file, args.data_path, args.gt_path,
                                                 without_gt=bool(args.test_dataset))
    missing_rgb = next((s for s in samples if not tf.io.gfile.exists(s.rgb_path)), None)
    if missing_rgb is not None:
        raise bts_dataloader.DataError(f"{missing_rgb.where}: image not found: {missing_rgb.rgb_path}")
    if args.test_dataset:  # no ground truth: evaluate_list says so
        return samples
    if not args.gt_path:
        LOGGER.info("no --gt_path: predictions only, no metrics")
        return [dataclasses.replace(s, depth_path=None) for s in samples]
    checked, absent = [], []
    for sample in samples:
        if sample.depth_path is not None and not tf.io.gfile.exists(sample.depth_path):
            absent.append(f"{sample.depth_path} ({sample.where})")
            sample = dataclasses.replace(sample, depth_path=None)
        checked.append(sample)
    if absent:
        LOGGER.warning("%d listed GT files do not exist, e.g. %s", len(absent), "; ".join(absent[:3]))
    return checked


def flag_intrinsics(args, height: int, width: int, focal: Optional[float] = None):
    """Intrinsics of an ``--image_path`` image or a video frame: ``--fx --fy --cx --cy``, else
    ``--focal``, else ``focal`` (an image list's column), else the dataset's (a focal length is fx
    and fy in px)."""
    given = args.focal or focal
    return image_io.default_intrinsics(args.dataset, height, width, args.fx or given, args.fy or given,
                                       args.cx, args.cy)


def sample_intrinsics(args, sample, depth_shape: Tuple[int, int]):
    """(rgb, intrinsics) matching a (possibly KB-cropped) prediction, for point clouds."""
    from utils.datasets import kb_crop_offsets

    rgb = image_io.load_image(sample.rgb_path)
    height, width = rgb.shape[:2]
    fx, fy, cx, cy = image_io.default_intrinsics(args.dataset, height, width, args.fx or sample.focal,
                                                 args.fy or sample.focal, args.cx, args.cy)
    if depth_shape != (height, width):  # KB crop: same focal, principal point shifted
        top, left = kb_crop_offsets(height, width)
        rgb = rgb[top:top + depth_shape[0], left:left + depth_shape[1]]
        cx, cy = cx - left, cy - top
    return rgb, (fx, fy, cx, cy)


def evaluate_list(args, predictor, output: StagedOutput, samples) -> Optional[Dict[str, float]]:
    """Predict every sample (:func:`read_samples` of ``--filenames_file``); metrics where GT
    exists. Returns the mean.

    The loop is online validation's (``bts_predict.predict_samples``): same weights, same numbers.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bts_predict import predict_samples, protocol_note, quantization_note

    names = [output_name(s.line.split()[0], args) for s in samples]
    check_unique(names)
    with_gt = sum(s.depth_path is not None for s in samples)
    print(f"Now testing {len(samples)} images")
    if args.test_dataset:  # predict_samples reads no depth and scores nothing
        print(f"--dataset {args.test_dataset}: test images without ground truth, predictions only: "
              "no metrics are computed")
    else:
        print(f"{len(samples) - with_gt} GT files missing")
    pipeline = pipeline_config(args, "test", normalization=predictor.preprocessing)
    evaluation = eval_config(args)
    evaluated, per_image, timer = [], [], Throughput()
    predictions = predict_samples(predictor, samples, pipeline, evaluation, with_maps=args.save_lpg)

    def write(done) -> None:  # on the writer's thread, while the model predicts the next frames
        rgb = intrinsics = None
        if args.save_point_cloud:
            rgb, intrinsics = sample_intrinsics(args, samples[done.index], done.depth.shape)
        save_prediction(args, predictor, output.path, names[done.index], done.depth, rgb=rgb,
                        maps=done.maps, intrinsics=intrinsics, shown_folder=output.folder)

    # log lines above the bar, never glued onto it; every file written before the staging moves
    with logging_redirect_tqdm(), BackgroundWriter(max_pending=2 * pipeline.batch_size + 2) as writer:
        for done in tqdm(predictions, total=len(samples), desc="testing", unit="img"):
            timer.add(done.seconds, done.frames)
            writer.submit(write, done)
            if done.has_gt:
                per_image.append(done.metrics)
                evaluated.append(done.index)
    timer.log()
    if args.test_dataset:
        return None
    order = averaging_order([names[i] + ".png" for i in evaluated],
                            os.path.join(output.path, "raw") if args.save_png else None)
    note = "; ".join(filter(None, (quantization_note(evaluation), protocol_note(evaluation))))
    return summarise_metrics(args, [samples[i].line.split()[0] for i in evaluated], per_image,
                             order, note)


def output_name(list_column: str, args) -> str:
    """The raw-PNG name (no extension) of a list line's RGB path: upstream's, and for
    ``--dataset kitti_benchmark`` the image's file name alone (upstream: no drive prefix)."""
    if args.test_dataset:
        return os.path.splitext(list_column.replace("\\", "/").rstrip("/").split("/")[-1])[0]
    return upstream_output_name(list_column, args.dataset)


def averaging_order(png_names: Sequence[str], raw_folder: Optional[str]) -> List[int]:
    """Order in which per-image metrics are averaged: the order in which the official
    ``eval_with_pngs.py`` walks the saved raw PNGs (float32 means depend on the summation order,
    ~1 ulp), so both report identical numbers; list order when no raw PNGs are written."""
    skipped = [n for n in png_names if any(part in n for part in SKIPPED_NAME_PARTS)]
    if skipped:
        LOGGER.warning("the official eval_with_pngs.py skips PNGs whose names contain 'gt' or "
                       "'cmap', e.g. %s: its numbers will differ", skipped[0])
    if raw_folder is None:
        return list(range(len(png_names)))
    position = {name: i for i, name in enumerate(png_names)}
    walked = [position[name] for name, _ in find_prediction_pngs(raw_folder) if name in position]
    return walked + sorted(set(range(len(png_names))) - set(walked))


def summarise_metrics(args, names: List[str], per_image: List[Optional[dict]],
                      order: Sequence[int], note: str = "") -> Optional[Dict[str, float]]:
    """Print the upstream table (and write the CSV, in list order); None without ground truth.

    ``order``: the order in which per-image metrics are averaged (see :func:`averaging_order`);
    ``note``: the line saying what was scored (``bts_predict.quantization_note``).
    """
    if not per_image:
        print("No ground truth: predictions only, no metrics")
        return None
    without_pixels = sum(row is None for row in per_image)
    if without_pixels:
        LOGGER.warning("%d images had no valid GT pixel inside the crop and were skipped",
                       without_pixels)
    mean = metrics.average_metrics([per_image[i] for i in order])
    if args.metrics_csv:
        metrics.write_metrics_csv(args.metrics_csv, names, per_image, mean)
    if note:  # before upstream's two lines, which scripts may parse by position
        print(note)
    print(f"Evaluated {len(per_image) - without_pixels} images")
    print(metrics.format_result_table(mean))
    return mean


# -------------------------------------------------------------------------------------------
# --image_path mode: anyone's images, any size
# -------------------------------------------------------------------------------------------
def collect_images(entries: Sequence[str], data_path: str = "") -> List[ImageItem]:
    """Expand files, folders (recursively, sorted) and list files (``path [... focal]`` per line,
    relative paths against --data_path or the list's folder) into ImageItems. Local inputs are
    listed without TensorFlow, so this runs before it starts."""
    items: List[ImageItem] = []
    for entry in entries:
        files = files_for(entry)
        if files.isdir(entry):
            found = sorted(os.path.join(root, f) for root, _, names in files.walk(entry)
                           for f in names if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"--image_path folder {entry!r} holds no images")
            items += [ImageItem(p, os.path.splitext(os.path.relpath(p, entry))[0]) for p in found]
        elif entry.lower().endswith(".txt"):
            items += _read_image_list(entry, data_path)
        elif files.exists(entry):
            items.append(ImageItem(entry, os.path.splitext(os.path.basename(entry))[0]))
        else:
            raise FileNotFoundError(f"--image_path {entry!r} does not exist")
    check_unique([item.name for item in items])
    return items


def _read_image_list(path: str, data_path: str) -> List[ImageItem]:
    try:
        with files_for(path).GFile(path, "r") as handle:
            lines = handle.read().splitlines()
    except file_errors(path):
        raise FileNotFoundError(f"--image_path list {path!r} cannot be read") from None
    root = data_path or os.path.dirname(path)
    items = []
    for number, line in enumerate(lines, start=1):
        columns = line.split()
        if not columns or columns[0].startswith("#"):
            continue
        focal = None
        if len(columns) > 1:
            try:
                focal = float(columns[-1])
            except ValueError:
                focal = None
        relative = columns[0].lstrip("/")
        absolute = os.path.isabs(columns[0]) and not data_path
        full = columns[0] if absolute else os.path.join(root, relative)
        if not files_for(full).exists(full):
            raise FileNotFoundError(f"{path} line {number}: image not found: {full}")
        items.append(ImageItem(full, os.path.splitext(relative)[0], focal))
    if not items:
        raise FileNotFoundError(f"--image_path list {path!r} names no images")
    return items


def image_stream(items: Sequence[ImageItem], prefetch: int = 2):
    """tf.data stream of decoded images (decoding overlaps inference: ``prefetch`` images ahead).

    Elements: index, uint8 RGB (H, W, 3) and an error message ('' when the image decoded), so a
    bad file stops the run with a line naming it instead of a TF trace.
    """
    import tensorflow as tf

    def generate() -> Iterator[Tuple[int, np.ndarray, str]]:
        for index, item in enumerate(items):
            try:
                yield index, image_io.load_image(item.path), ""
            except (OSError, ValueError) as err:  # DataError is a ValueError
                yield index, np.zeros((1, 1, 3), np.uint8), f"{item.path}: {err}"

    signature = (tf.TensorSpec((), tf.int64), tf.TensorSpec((None, None, 3), tf.uint8),
                 tf.TensorSpec((), tf.string))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(prefetch)


def predict_images(args, predictor, output: StagedOutput, items: Sequence[ImageItem]) -> None:
    """Predict depth for the ``--image_path`` inputs (:func:`collect_images`) and write the
    requested outputs at input size.

    As ``DepthPredictor.predict_image`` (crop, normalise, pad, predict, map back), with up to
    ``--batch_size`` consecutive images of one network-input size predicted in one call
    (``bts_predict.equal_shape_runs``) and the outputs written on a worker thread
    (:class:`BackgroundWriter`).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    import bts_dataloader
    from bts_predict import as_rgb_uint8, equal_shape_runs

    batch_size = int(getattr(args, "batch_size", 1) or 1)
    print(f"Now predicting {len(items)} images")
    timer = Throughput()

    def network_inputs() -> Iterator[tuple]:  # (index, rgb, placement, normalised crop), in order
        for index, rgb, error in image_stream(items, prefetch=max(2, 2 * batch_size)):
            item = items[int(index)]
            if error.numpy():
                raise bts_dataloader.DataError(error.numpy().decode("utf-8", "replace"))
            rgb = as_rgb_uint8(rgb.numpy(), item.path)
            placement = predictor.placement_for(*rgb.shape[:2])
            yield int(index), rgb, placement, predictor.normalize(predictor.crop(rgb, placement))

    def write(item: ImageItem, rgb, placement, depth, maps) -> None:  # on the writer's thread
        depth = predictor.restore(depth, placement)
        if maps is not None:
            maps = {name: predictor.restore(value, placement) for name, value in maps.items()}
        save_prediction(args, predictor, output.path, item.name, depth, rgb=rgb, maps=maps,
                        intrinsics=flag_intrinsics(args, *rgb.shape[:2], item.focal),
                        shown_folder=output.folder)

    # log lines above the bar, never glued onto it; every file written before the staging moves
    with logging_redirect_tqdm(), BackgroundWriter(max_pending=2 * batch_size + 2) as writer, \
            tqdm(total=len(items), desc="predicting", unit="img") as bar:
        for run in equal_shape_runs(network_inputs(), batch_size, shape_of=lambda frame: frame[3].shape):
            focal = np.array([args.focal or items[index].focal or args.fx or predictor.default_focal
                              for index, *_ in run], np.float32)
            start = time.perf_counter()
            predicted = predictor.predict_batch(np.stack([frame[3] for frame in run]), focal,
                                                with_maps=args.save_lpg)
            seconds = (time.perf_counter() - start) / len(run)
            depth, maps = predicted if args.save_lpg else (predicted, None)
            for k, (index, rgb, placement, _) in enumerate(run):
                timer.add(seconds, len(run))
                frame_maps = None if maps is None else {name: value[k] for name, value in maps.items()}
                writer.submit(write, items[index], rgb, placement, depth[k], frame_maps)
                bar.update()
    timer.log()


# -------------------------------------------------------------------------------------------
# --video (and video files among --image_path): bts_video.py
# -------------------------------------------------------------------------------------------
def video_sources(args) -> List[Tuple[str, str]]:
    """(flag, path) of every video to predict: --video, or the video files among --image_path
    (by extension; folders and list files are expanded to images only)."""
    if args.video:
        return [("--video", args.video)]
    return [("--image_path", entry) for entry in args.image_path or ()
            if is_video_path(entry) and not os.path.isdir(entry)]


def plan_videos(args, folder: str, write_video: bool):
    """A ``bts_video.VideoJob`` per video, every check made before TensorFlow starts: each video
    opens and decodes its first frame, and the depth video (``--save_video``, else with
    ``write_video`` ``<folder>/<video name>_depth.mp4``) is new (or ``--overwrite``) and OpenCV
    can write it there. VideoError / OutputError otherwise."""
    from bts_video import VideoJob  # imports TensorFlow only when called: TF-free jobs below
    from utils.video import FrameComposer, check_video_output, probe_video

    jobs = []
    for flag, source in video_sources(args):
        info = probe_video(source, flag)
        name = os.path.splitext(os.path.basename(source))[0]
        path = args.save_video or (os.path.join(folder, f"{name}_depth.mp4") if write_video else None)
        if path:
            if os.path.exists(path) and not args.overwrite:
                raise OutputError(f"--save_video {path!r} already exists; pass --overwrite to replace "
                                  "it or choose another file")
            size = FrameComposer(info.height, info.width, args.max_depth, args.video_layout).size
            check_video_output(path, *size, info.output_fps, create_folder=not args.save_video)
        jobs.append(VideoJob(source, name, path, args.video_layout, int(args.batch_size or 1),
                             args.focal or args.fx, with_maps=args.save_lpg, flag=flag))
    check_unique([job.name for job in jobs])
    return jobs


def predict_videos(args, predictor, output: StagedOutput, jobs: Sequence) -> list:
    """Predict each video (``bts_video.predict_video``): the depth video and the per-frame outputs
    of ``args``' ``--save_*`` flags (``save_prediction``, names ``<video name>_<frame 06d>``).
    Returns the ``bts_video.VideoRun`` of each video predicted; stops after an interrupted one."""
    from bts_video import predict_video

    def save_frame(name: str, rgb: np.ndarray, depth: np.ndarray, maps) -> None:  # writer thread
        intrinsics = flag_intrinsics(args, *rgb.shape[:2]) if args.save_point_cloud else None
        save_prediction(args, predictor, output.path, name, depth, rgb=rgb, maps=maps,
                        intrinsics=intrinsics, shown_folder=output.folder)

    runs = []
    for job in jobs:
        timer = Throughput()
        run = predict_video(predictor, job, save_frame=save_frame if wants_outputs(args) else None,
                            background_writer=BackgroundWriter, timer=timer)
        timer.log()
        runs.append(run)
        if run.interrupted:
            break
        if run.video_path:
            print(f"Depth video written to {run.video_path} ({run.frames} frames, {run.fps:g} fps)")
    return runs


def interrupted_line(run, per_frame_folder: Optional[str]) -> str:
    """The one line an interrupted video run ends with (stderr, exit code 130)."""
    total = run.total or "?"
    written = [path for path in (run.video_path, per_frame_folder) if path and run.frames]
    if not written:
        return f"bts_test.py: interrupted after 0 of {total} frames of {run.source}; nothing written"
    return (f"bts_test.py: interrupted after {run.frames} of {total} frames; wrote "
            f"{' and '.join(written)} ({run.frames} frames)")


# -------------------------------------------------------------------------------------------
# Main
# -------------------------------------------------------------------------------------------
def _benchmark_settings(args) -> None:
    """``--dataset kitti_benchmark``: the KB crop on (its ``TEST_ONLY_DATASETS`` entry), no ground
    truth, raw PNGs by default."""
    from utils.datasets import TEST_ONLY_DATASETS

    if TEST_ONLY_DATASETS[args.test_dataset].kb_crop and not args.do_kb_crop:
        LOGGER.info("--dataset %s: the KB crop is applied (as --do_kb_crop)", args.test_dataset)
        args.do_kb_crop = True
    if args.gt_path:
        LOGGER.warning("--dataset %s has no ground truth: --gt_path %s is ignored",
                       args.test_dataset, args.gt_path)
        args.gt_path = ""
    if not wants_outputs(args):
        LOGGER.info("--dataset %s: writing raw uint16 PNGs (--save_png)", args.test_dataset)
        args.save_png = True


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(groups=("model", "compute", "data", "eval", "test", "predict_batch"), argv=argv,
                      validate=_validate, prog="bts_test.py",
                      description="Evaluate BTS or predict depth maps.",
                      test_datasets=True, defaults={"mixed_precision": "auto"})
    quiet_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.test_dataset:
        _benchmark_settings(args)
    sources = video_sources(args)
    image_entries = None if args.image_path is None else [
        entry for entry in args.image_path if entry not in {path for _, path in sources}]
    # Videos write the per-frame kinds typed; a depth video without --save_* or with --save_video.
    video_args = copy.copy(args)
    write_video = bool(args.save_video) or not wants_outputs(args)
    if image_entries and not wants_outputs(args):
        LOGGER.info("no --save_* flag: writing raw and colormapped PNGs (--save_png --save_cmap)")
        args.save_png = args.save_cmap = True
    if args.image_path is None and not args.video and not wants_outputs(args) and not args.gt_path:
        LOGGER.warning("no --gt_path and no --save_* flag: predictions are computed and dropped")
    # Cheap checks first: a wrong path fails in a second, not after TF start-up and a model load.
    try:
        items = collect_images(image_entries, args.data_path) if image_entries else None
        problem = check_inputs(args)
        if problem:
            raise ValueError(problem)
        folder = prepare_output_directory(args)
        jobs = plan_videos(video_args, folder, write_video) if sources else []
    except (OSError, ValueError) as err:  # OutputError is an OSError, VideoError a ValueError
        print(f"bts_test.py: error: {err}", file=sys.stderr)
        return 1
    import tensorflow as tf

    import bts_dataloader
    from bts_predict import DepthPredictor, load_model
    from bts_trainer import (model_in_global_policy, resolve_mixed_precision, resolve_model_ops,
                             set_precision_policy)
    from utils.checkpoints import CheckpointError
    from utils.configs import ConfigError

    runs = []
    try:
        samples = read_samples(args) if items is None and not jobs else None  # every listed image exists
        set_precision_policy(resolve_mixed_precision(args.mixed_precision))  # before the model
        model_ops = resolve_model_ops(args.model_ops)
        model, config = load_model(args.checkpoint_path, model_config(args),
                                   explicit=explicit_model_fields(args), model_ops=model_ops)
        model = model_in_global_policy(model, config, model_ops)
        predictor = DepthPredictor(model, args.dataset, encoder=config.encoder,
                                   post_process=args.post_process, do_kb_crop=args.do_kb_crop)
        with StagedOutput(folder, enabled=wants_outputs(args)) as output:
            if items is not None:
                predict_images(args, predictor, output, items)
            if jobs:
                runs = predict_videos(video_args, predictor, output, jobs)
            if samples is not None:
                evaluate_list(args, predictor, output, samples)
        if runs and runs[-1].interrupted:  # what was written is in place; say what, exit as SIGINT
            print(interrupted_line(runs[-1], folder if wants_outputs(video_args) else None), file=sys.stderr)
            return 130
        if wants_outputs(args):
            print(f"Predictions written to {folder}")
    except KeyboardInterrupt:  # outside a video's frame loop: the staged outputs were dropped
        print("bts_test.py: interrupted; nothing written", file=sys.stderr)
        return 130
    except ConfigError as err:  # a flag that contradicts the checkpoint, named as the flag
        print(f"bts_test.py: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except bts_dataloader.DataError as err:
        print(f"bts_test.py: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except (CheckpointError, OutputError, OSError, ValueError) as err:
        print(f"bts_test.py: error: {err}", file=sys.stderr)
        return 1
    except tf.errors.OpError as err:
        print(f"bts_test.py: error: {bts_dataloader.describe_data_error(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

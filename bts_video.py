# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Depth for video files: every frame through the one predict path, written as a depth video
and/or per-frame files (``bts_test.py --video``; README "Evaluation and prediction").

The loop of ``bts_test.predict_images``, for the frames of one video: frames are decoded ahead on
a thread (``utils.video.FrameReader``), cropped, normalised and predicted up to ``batch_size`` at a
time (``bts_predict.equal_shape_runs``: the frames of a video share a size), mapped back to the
source size (``DepthPredictor.restore``; padding as for images), then composed and written on the
caller's background writer in frame order: the per-frame outputs (``save_frame``) and the frame of
the depth video (``utils.video.FrameComposer``: fixed colour scale, legend below).

Ctrl-C: the frame being read or predicted is dropped, the frames already predicted are written,
the video is closed under its final name (a playable file of the frames so far) and the run
reports ``interrupted`` instead of raising, so the caller keeps the per-frame files too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, Optional

import numpy as np

from utils.video import AtomicVideoWriter, FrameComposer, FrameReader, VideoError, probe_video

if TYPE_CHECKING:  # bts_predict imports TensorFlow; VideoJob is built before it starts
    from bts_predict import DepthPredictor

LOGGER = logging.getLogger("bts_video")
# save_frame(name, rgb (H, W, 3) uint8, depth (H, W) metres, LPG maps or None): per-frame files
SaveFrame = Callable[[str, np.ndarray, np.ndarray, Optional[Dict[str, np.ndarray]]], None]


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One video to predict and what to write of it.

    ``name``: the stem of the per-frame outputs, ``{name}_{frame index:06d}`` (from 0);
    ``video_path``: the depth video (None: none is written); ``layout``: 'side_by_side' or
    'depth' (``utils.video.FrameComposer``); ``focal``: px, for every frame (None: the dataset's);
    ``with_maps``: predict the LPG maps too (handed to ``save_frame``).
    """

    source: str
    name: str
    video_path: Optional[str] = None
    layout: str = "side_by_side"
    batch_size: int = 1
    focal: Optional[float] = None
    with_maps: bool = False
    flag: str = "--video"  # the flag that named ``source``, for error lines


@dataclasses.dataclass(frozen=True)
class VideoRun:
    """What a run of :func:`predict_video` did."""

    source: str
    frames: int  # frames predicted and written
    total: int  # frames the container announced (0: unknown)
    fps: float  # frame rate of the depth video
    video_path: Optional[str]  # the depth video written (None: none, or no frame to write)
    interrupted: bool  # stopped by Ctrl-C after ``frames`` frames


def predict_video(predictor: DepthPredictor, job: VideoJob, *,
                  background_writer: Callable[..., contextlib.AbstractContextManager],
                  save_frame: Optional[SaveFrame] = None, timer=None) -> VideoRun:
    """Predict every frame of ``job.source`` and write the depth video and per-frame outputs.

    ``background_writer(max_pending=n)``: the writer whose ``submit`` runs the writes in order
    (``bts_test.BackgroundWriter``); ``timer.add(seconds, frames)`` (``bts_test.Throughput``)
    is told each frame's share of its call's model time. VideoError (or the writer's error) on
    a failure, with the video file discarded; Ctrl-C is reported in the result (see the module).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from bts_predict import as_rgb_uint8, equal_shape_runs

    info = probe_video(job.source, job.flag)
    if not info.fps_known:
        LOGGER.warning("%s reports no frame rate: writing %g fps", job.source, info.output_fps)
    height, width = info.height, info.width
    placement = predictor.placement_for(height, width)  # one size for the whole video
    composer = FrameComposer(height, width, predictor.max_depth, job.layout) if job.video_path else None
    batch_size = max(1, int(job.batch_size))
    target = f" -> {job.video_path}" if job.video_path else ""
    print(f"Now predicting {info.frame_count or 'all'} frames of {job.source} ({width}x{height}, "
          f"{info.output_fps:g} fps){target}")
    written = [0]  # frames written, counted on the writer's thread

    def network_inputs(reader: FrameReader) -> Iterator[tuple]:  # (index, rgb, normalised crop)
        for index, rgb in reader:
            rgb = as_rgb_uint8(rgb, f"{job.source} frame {index}")
            if rgb.shape[:2] != (height, width):
                raise VideoError(f"{job.source}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, "
                                 f"the first was {width}x{height}")
            yield index, rgb, predictor.normalize(predictor.crop(rgb, placement))

    def write(video: Optional[AtomicVideoWriter], index: int, rgb: np.ndarray, depth: np.ndarray,
              maps: Optional[Dict[str, np.ndarray]]) -> None:  # on the writer's thread, in order
        depth = predictor.restore(depth, placement)
        if maps is not None:
            maps = {key: predictor.restore(value, placement) for key, value in maps.items()}
        if save_frame is not None:
            save_frame(f"{job.name}_{index:06d}", rgb, depth, maps)
        if video is not None:
            video.write(composer.compose(rgb, depth))
        written[0] += 1

    interrupted = False
    focal = job.focal or predictor.default_focal
    with contextlib.ExitStack() as stack:
        video = None
        if job.video_path:  # discarded if anything below fails, closed (kept) otherwise
            video = stack.enter_context(AtomicVideoWriter(job.video_path, info.output_fps, *composer.size))
        reader = stack.enter_context(FrameReader(job.source, ahead=2 * batch_size + 2))
        # log lines above the bar, never glued onto it; the writer drains before the video closes
        with logging_redirect_tqdm(), background_writer(max_pending=2 * batch_size + 2) as writer, \
                tqdm(total=info.frame_count or None, desc=os.path.basename(job.source), unit="frame") as bar:
            try:
                for run in equal_shape_runs(network_inputs(reader), batch_size,
                                            shape_of=lambda frame: frame[2].shape):
                    start = time.perf_counter()
                    predicted = predictor.predict_batch(np.stack([frame[2] for frame in run]),
                                                        np.full((len(run),), focal, np.float32),
                                                        with_maps=job.with_maps)
                    seconds = (time.perf_counter() - start) / len(run)
                    depth, maps = predicted if job.with_maps else (predicted, None)
                    for k, (index, rgb, _) in enumerate(run):
                        if timer is not None:
                            timer.add(seconds, len(run))
                        frame_maps = None if maps is None else {key: value[k] for key, value in maps.items()}
                        writer.submit(write, video, index, rgb, depth[k], frame_maps)
                        bar.update()
            except KeyboardInterrupt:  # keep what was predicted: the writer finishes it below
                interrupted = True
                reader.stop()
    if not interrupted and info.frame_count and written[0] != info.frame_count:
        LOGGER.warning("%s: the container announced %d frames, %d decoded", job.source,
                       info.frame_count, written[0])
    return VideoRun(job.source, written[0], info.frame_count, info.output_fps,
                    job.video_path if video is not None and video.kept else None, interrupted)

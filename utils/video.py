# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Video files through OpenCV: probing, reading RGB frames ahead on a thread, writing atomically,
and the depth-video frame (the input and its colormapped depth on a fixed scale, legend below).

Only OpenCV's FFmpeg backend is used (``cv2.CAP_FFMPEG``), for reading and writing alike: its
other backends guess (an image-sequence backend reads ``frame_%03d.png`` patterns). OpenCV hands
out BGR; everything here takes and gives RGB uint8 (H, W, 3).

Writing: the codec follows the extension (:data:`WRITER_CODECS`), each one checked by writing and
reading back a clip with the pip wheel (opencv-python-headless 5.0): ``.mp4``/``.m4v``/``.mov``
MPEG-4 Part 2 ('mp4v': VLC, ffmpeg and most players, but not browsers), ``.avi`` Motion-JPEG,
``.mkv`` FFV1 (lossless, large; every frame reads back bit for bit). The wheel has no H.264 or
VP8/VP9 encoder, so ``.webm``, ``.mpg``, ``.wmv`` and ``.flv`` are read but not written. FFmpeg
cuts odd frame sizes down to even ones, so :class:`FrameComposer` makes its frames even.
"""
from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import uuid
from typing import Iterator, Tuple

import numpy as np

from utils.image_io import DEFAULT_COLORMAP, colorize_depth

# FFmpeg's and OpenCV's own stderr lines ('moov atom not found', '[ WARN:0@0.04] ...') would
# stand beside the one-line VideoError that says the same; a value the user set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
WRITER_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}
DEFAULT_FPS = 30.0  # when the container reports no frame rate
LAYOUTS = ("side_by_side", "depth")


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


def is_video_path(path: str) -> bool:
    """Whether ``path`` names a video file, by its extension."""
    return path.lower().endswith(VIDEO_EXTENSIONS)


def _cv2():
    import cv2  # lazily: parsing flags and --help need no OpenCV

    return cv2


# -------------------------------------------------------------------------------------------
# Reading
# -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says of a video, and the size of its first decoded frame."""

    path: str
    fps: float  # as reported; 0 when unknown (see ``output_fps``)
    frame_count: int  # as reported; 0 when unknown (some containers only estimate it)
    height: int
    width: int

    @property
    def fps_known(self) -> bool:
        return math.isfinite(self.fps) and self.fps > 0

    @property
    def output_fps(self) -> float:
        """The frame rate to write: the source's, else :data:`DEFAULT_FPS`."""
        return self.fps if self.fps_known else DEFAULT_FPS


def probe_video(path: str, flag: str = "--video") -> VideoInfo:
    """Open ``path``, decode its first frame and return its VideoInfo; VideoError naming the file
    (and ``flag``) when it is missing, not a video OpenCV can open, empty, or undecodable."""
    shown = f"{flag} {path!r}"
    if "://" in path:
        raise VideoError(f"{shown}: videos are read with OpenCV, from local files only")
    if not os.path.exists(path):
        raise VideoError(f"{shown} does not exist")
    if os.path.isdir(path):
        raise VideoError(f"{shown} is a folder; expected a video file")
    cv2 = _cv2()
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoError(f"{shown} is not a video OpenCV can open (not a video file, or a "
                             "container or codec this OpenCV build cannot read)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        count = int(count) if math.isfinite(count) and count > 0 else 0
        ok, frame = capture.read()
        if not ok or frame is None:
            if count == 0:
                raise VideoError(f"{shown} holds no frames")
            raise VideoError(f"{shown}: its first frame cannot be decoded (a codec this OpenCV "
                             "build lacks, or a damaged file)")
    finally:
        capture.release()
    return VideoInfo(path, fps if math.isfinite(fps) else 0.0, count, frame.shape[0], frame.shape[1])


def read_frames(path: str) -> Iterator[np.ndarray]:
    """The frames of a video as RGB uint8 (H, W, 3), in order, until the first that does not
    decode (the end, for a whole file)."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class FrameReader:
    """:func:`read_frames` on a worker thread, up to ``ahead`` frames in advance; iterate for
    ``(index, rgb)``. A context manager: leaving it (the run ended, failed or was interrupted)
    stops the thread. Decoding overlaps inference; the main thread only waits on a queue, so a
    Ctrl-C reaches it at once (the worker is a daemon and never sees the signal)."""

    _END = object()

    def __init__(self, path: str, ahead: int = 4) -> None:
        self.path = path
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(ahead)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="bts-video-read", daemon=True)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for index, frame in enumerate(read_frames(self.path)):
                if not self._put((index, frame)):
                    return
        except Exception as err:  # noqa: BLE001 - handed to the main thread, which raises it
            self._put(err)
            return
        self._put(self._END)

    def __enter__(self) -> "FrameReader":
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[Tuple[int, np.ndarray]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, Exception):
                raise VideoError(f"{self.path}: cannot read frames: {item}") from None
            yield item

    def stop(self) -> None:
        self._stop.set()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._thread.join(timeout=5)


# -------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------
def writer_codec(path: str, flag: str = "--save_video") -> str:
    """The FourCC OpenCV writes ``path`` with (from its extension); VideoError for another."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in WRITER_CODECS:
        raise VideoError(f"{flag} {path!r}: OpenCV cannot write {extension or 'files without an extension'}"
                         f"; use {', '.join(WRITER_CODECS)}")
    return WRITER_CODECS[extension]


def _open_writer(path: str, codec: str, fps: float, width: int, height: int):
    cv2 = _cv2()
    return cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), float(fps),
                           (int(width), int(height)))


def _part_path(path: str) -> str:
    """A hidden name beside ``path`` with its extension (FFmpeg picks the container by it)."""
    folder, base = os.path.split(path)
    stem, extension = os.path.splitext(base)
    return os.path.join(folder, f".{stem}.part-{uuid.uuid4().hex[:8]}{extension}")


def check_video_output(path: str, width: int, height: int, fps: float, flag: str = "--save_video",
                       create_folder: bool = False) -> None:
    """Prove before any work that OpenCV can write a ``width`` x ``height`` video to ``path``:
    a known extension, an existing folder (``create_folder``: one the run will create, made for
    the check and removed again) and a writer that opens there; VideoError naming ``path``."""
    codec = writer_codec(path, flag)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise VideoError(f"{flag} {path!r} is a folder; expected a video file name")
    created = None  # the top folder made for the check
    if not os.path.isdir(folder):
        here = folder
        while not os.path.exists(here) and os.path.dirname(here) != here:
            created, here = here, os.path.dirname(here)
        if not create_folder or not os.path.isdir(here):
            reason = (f"the folder {folder} does not exist" if os.path.isdir(here)
                      else f"{here} is a file, not a folder")
            raise VideoError(f"{flag} {path!r} cannot be written: {reason}")
    probe = _part_path(path)
    try:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise VideoError(f"{flag} {path!r} cannot be written: {err.strerror or err}") from None
        writer = _open_writer(probe, codec, fps, width, height)
        opened = writer.isOpened()
        writer.release()
        if not opened:
            access = "" if os.access(folder, os.W_OK) else f"; {folder} is not writable"
            raise VideoError(f"{flag} {path!r} cannot be written: OpenCV cannot open a {codec} "
                             f"writer there{access}")
    finally:
        if os.path.exists(probe):
            os.remove(probe)
        if created is not None:
            import shutil

            shutil.rmtree(created, ignore_errors=True)


class AtomicVideoWriter:
    """A video written to a hidden ``.part`` name beside ``path`` and moved to ``path``
    (``os.replace``) by :meth:`close`, so no half-written video ever stands under the final name.

    A context manager: leaving it normally closes (and so keeps) the video, leaving it on an
    exception discards it. Frames are RGB uint8 of exactly ``(height, width)``. :meth:`close`
    reads the frame count back and refuses a file that holds fewer frames than were written (a
    full disk, which OpenCV does not report).
    """

    def __init__(self, path: str, fps: float, width: int, height: int, flag: str = "--save_video") -> None:
        self.path, self.flag = path, flag
        self.width, self.height = int(width), int(height)
        self.codec = writer_codec(path, flag)
        self.frames = 0
        self.kept = False  # moved to ``path`` by close()
        folder = os.path.dirname(os.path.abspath(path))
        self._created = None  # the top folder made for the video (removed if it is discarded)
        here = folder
        while not os.path.exists(here) and os.path.dirname(here) != here:
            self._created, here = here, os.path.dirname(here)
        self.part = _part_path(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            self._remove_created()
            raise VideoError(f"{flag} {path!r} cannot be written: {err.strerror or err}") from None
        self._writer = _open_writer(self.part, self.codec, fps, width, height)
        if not self._writer.isOpened():
            self.discard()
            raise VideoError(f"{flag} {path!r} cannot be written: OpenCV cannot open a "
                             f"{self.codec} writer there")

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"video frame {rgb.shape} {rgb.dtype}: expected uint8 "
                             f"({self.height}, {self.width}, 3)")
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it to its final name (``kept``); a video without a frame
        (interrupted before the first) is discarded instead."""
        if self.frames == 0:
            self.discard()
            return
        self._writer.release()
        cv2 = _cv2()
        capture = cv2.VideoCapture(self.part, cv2.CAP_FFMPEG)
        stored = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if stored < self.frames:
            self.discard()
            raise VideoError(f"cannot write {self.path}: {self.frames} frames written, the file "
                             f"holds {stored} (disk full?)")
        os.replace(self.part, self.path)
        self._created, self.kept = None, True

    def discard(self) -> None:
        """Drop the video: the ``.part`` file and any folder made for it."""
        self._writer.release()
        if os.path.exists(self.part):
            os.remove(self.part)
        self._remove_created()

    def _remove_created(self) -> None:
        if self._created is not None and os.path.isdir(self._created):
            import shutil

            shutil.rmtree(self._created, ignore_errors=True)
        self._created = None

    def __enter__(self) -> "AtomicVideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


# -------------------------------------------------------------------------------------------
# The depth-video frame
# -------------------------------------------------------------------------------------------
def _legend_font(width: int) -> Tuple[float, int]:
    """(font scale, thickness) of the legend labels for a panel ``width`` px wide."""
    scale = min(max(width / 900.0, 0.3), 1.0)
    return scale, 1 if scale < 0.6 else 2


def _tick_label(value: float) -> str:
    return f"{value:.3g} m"


class FrameComposer:
    """The output frame of each video frame: the input and its colormapped depth, side by side
    (``layout`` 'side_by_side') or the depth alone ('depth'), over a legend strip.

    The colours are ``utils.image_io.colorize_depth`` over the FIXED range [0, max_depth] (the
    colours of ``--save_cmap``), so a depth has the same colour in every frame; the legend (a
    colour ramp with ticks at 0, max/2 and max metres) is drawn once, BELOW the panels, and
    never covers a depth pixel. Each panel is exactly the source size (H, W): the depth panel is
    ``frame[:H, depth_left:depth_left + W]``. The frame is ``size`` = (width, height) = (2W or W,
    H + legend); the legend's height and, for 'depth' of an odd W, one black column on the right
    make both even (FFmpeg would cut an odd size down, losing a row or column of the panels).
    """

    def __init__(self, height: int, width: int, max_depth: float, layout: str = "side_by_side",
                 cmap: str = DEFAULT_COLORMAP) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r} is unknown; expected one of {', '.join(LAYOUTS)}")
        if not (math.isfinite(max_depth) and max_depth > 0):
            raise ValueError(f"max_depth must be a finite number > 0, got {max_depth}")
        self.height, self.width = int(height), int(width)
        self.max_depth, self.layout, self.cmap = float(max_depth), layout, cmap
        self.depth_left = self.width if layout == "side_by_side" else 0
        frame_width = 2 * self.width if layout == "side_by_side" else self.width + self.width % 2
        self.legend = self._legend(frame_width)
        self.legend.setflags(write=False)
        self.size = (frame_width, self.height + self.legend.shape[0])

    def _legend(self, frame_width: int) -> np.ndarray:
        """(L, frame_width, 3) uint8: black, with the colour ramp and its labels under the depth
        panel; L keeps H + L even."""
        cv2 = _cv2()
        scale, thickness = _legend_font(self.width)
        font = cv2.FONT_HERSHEY_SIMPLEX
        (_, text_h), baseline = cv2.getTextSize(_tick_label(self.max_depth), font, scale, thickness)
        margin = max(2, self.width // 40)
        bar_h = max(4, text_h)
        tick_h = max(2, bar_h // 3)
        legend_h = margin + bar_h + tick_h + 2 + text_h + baseline + margin
        legend_h += (self.height + legend_h) % 2
        strip = np.zeros((legend_h, frame_width, 3), np.uint8)
        left, right = self.depth_left + margin, self.depth_left + self.width - margin
        if right - left < 2:
            return strip  # a panel too narrow for a ramp
        columns = np.arange(right - left, dtype=np.float32)
        ramp_depth = (columns + 0.5) / np.float32(right - left) * np.float32(self.max_depth)
        strip[margin:margin + bar_h, left:right] = colorize_depth(ramp_depth, self.max_depth, self.cmap)[None]
        placed = []  # (x0, x1) of the labels drawn, so that none overlaps another
        for fraction in (0.0, 1.0, 0.5):  # the ends first: on a narrow panel the middle goes
            x = left + int(round(fraction * (right - left - 1)))
            label = _tick_label(fraction * self.max_depth)
            (text_w, _), _ = cv2.getTextSize(label, font, scale, thickness)
            x0 = min(max(x - text_w // 2, self.depth_left), self.depth_left + self.width - text_w)
            if any(x0 < b + 3 and a < x0 + text_w + 3 for a, b in placed):
                continue
            placed.append((x0, x0 + text_w))
            strip[margin + bar_h:margin + bar_h + tick_h, x:x + 1] = 255  # the tick
            cv2.putText(strip, label, (x0, margin + bar_h + tick_h + 2 + text_h), font, scale,
                        (255, 255, 255), thickness, cv2.LINE_AA)
        return strip

    def compose(self, rgb: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """(size[1], size[0], 3) uint8 RGB frame of one input frame and its (H, W) depth."""
        if rgb.shape[:2] != (self.height, self.width) or np.shape(depth_m) != (self.height, self.width):
            raise ValueError(f"frame {rgb.shape[:2]} / depth {np.shape(depth_m)}: expected "
                             f"({self.height}, {self.width})")
        frame = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        if self.layout == "side_by_side":
            frame[:self.height, :self.width] = rgb[:, :, :3]
        frame[:self.height, self.depth_left:self.depth_left + self.width] = colorize_depth(
            depth_m, self.max_depth, self.cmap)
        frame[self.height:] = self.legend
        return frame

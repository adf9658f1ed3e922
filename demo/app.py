# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The demo web app: one page plus a small JSON/HTTP API, around shared ``DepthPredictor`` objects.

Routes (all errors are JSON ``{"error": message, "status": code}``):

* ``GET /``                          the page (templates/index.html, static/demo.js, demo.css)
* ``GET /healthz``                   liveness and the loaded models
* ``POST /api/predict``              multipart field ``image`` or form field ``sample`` (a bundled
  photo; the motorcycle is also scored against its ground truth), optional ``model``, ``focal``;
  ``?format=json`` (default: statistics and download links), ``png`` (raw uint16 depth at the
  dataset scale), ``npy`` (float32 metres), ``float32`` (raw little-endian float32 metres, row
  major, size in ``X-Depth-Width``/``X-Depth-Height``: what the page reads), ``ply`` (coloured
  point cloud), ``colormap`` (RGB PNG)
* ``GET /api/result/<id>/<file>``    ``depth.png``, ``depth.npy``, ``depth.f32``, ``cloud.ply``,
  ``colormap.png``, ``input.png`` of a recent prediction (kept in memory, least recently used
  dropped first)
* ``GET /api/samples``, ``GET /samples/<name>.png``   bundled sample photos (scikit-image)
* ``GET /legend/<model>.png``        the colormap ramp over [0, max_depth]
* ``POST /api/live/start``           a camera session (optional ``model``, ``focal``): its id, the
  frame limits, the colormap table and its URLs; 503 when ``max_live_sessions`` are running
* ``POST /api/live/<session>/frame`` one camera frame (the body itself, or multipart ``image``):
  its depth as raw float32 metres like ``format=float32``, size, scale and intrinsics in headers;
  404 unknown or expired session, 429 (``Retry-After``) faster than ``live_max_fps``
* ``POST /api/live/<session>/stop``  ends the session (the page sends it when it hides, too)

The routes are module-level views on the blueprint ``BP``; what they share (models, limits,
result cache, work slots) is one ``DemoState`` in ``app.extensions["bts_demo"]``.

Pre/post-processing is the shared one: ``bts_predict.DepthPredictor.predict_image`` (normalise,
pad, KB crop) and ``utils.image_io`` (uint16 PNG convention, colormap, .npy, .ply). This module
only adds the web-facing parts: upload checks (``uploads.py``), limits and caching.

Concurrency and memory: at most ``max_concurrent`` requests read, decode, predict or encode a
download at once (others wait up to ``queue_timeout_s``, then get 503); uploads are parsed in
memory, never spooled to disk; the model calls themselves are serialised by
the predictor's lock; each image is shrunk to ``max_work_pixels`` before the model sees it; the
result cache holds ``cache_entries`` results. So memory stays bounded whatever arrives.

Live camera frames take the same path (``decode_upload``, a work slot, ``predict_image``) with
tighter limits: at most ``max_live_sessions`` sessions, one frame in flight each, at most
``live_max_fps`` frames a second, ``live_max_frame_bytes`` and ``live_max_frame_pixels`` per frame
(refused, not shrunk: the page sends frames within them). A frame's depth is the answer itself;
nothing of it is kept (not in the result cache, not on disk), so a session costs a few hundred
bytes between frames. Sessions idle for ``live_idle_timeout_s`` expire.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import math
import os
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np
from flask import Blueprint, Flask, Request, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from utils import image_io
from demo import samples
from demo.uploads import DecodedImage, UploadError, decode_upload

if TYPE_CHECKING:  # importing the predictor starts TensorFlow; the app itself does not need it
    from bts_predict import DepthPredictor

LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = ("json", "png", "npy", "float32", "ply", "colormap")
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
MIME = {"png": "image/png", "colormap": "image/png", "npy": "application/octet-stream",
        "float32": "application/octet-stream", "ply": "application/octet-stream",
        "json": "application/json"}
RESULT_FILES = {"depth.png": "png", "depth.npy": "npy", "depth.f32": "float32", "cloud.ply": "ply",
                "colormap.png": "colormap", "input.png": "input"}
DOWNLOAD_SUFFIX = {"png": "_depth.png", "npy": "_depth.npy", "float32": "_depth.f32",
                   "ply": "_cloud.ply", "colormap": "_colormap.png", "input": "_input.png"}
EXTENSION = "bts_demo"  # the app.extensions key of the app's DemoState
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Everything comes from this server: no CDN, no inline script.
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "script-src 'self'; style-src 'self'; object-src 'none'; "
                                "frame-ancestors 'none'"),
    # The page itself may ask for the camera (live mode); no embedder, no other device.
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}
LIVE_BURST = 2.0  # frames a live session may bank: absorbs network jitter, mean rate stays capped


@dataclasses.dataclass(frozen=True)
class DemoLimits:
    """Resource limits of the demo; the defaults suit one CPU box serving a few people."""

    max_upload_bytes: int = 20 * 1024 * 1024  # request body (413 beyond)
    max_pixels: int = 40_000_000  # pixels an upload may declare (413 beyond; bombs)
    max_work_pixels: int = 1280 * 720  # larger images are shrunk to this before the model
    max_concurrent: int = 4  # requests decoding/predicting at once (each holds ≲ 100 MB)
    queue_timeout_s: float = 120.0  # waiting longer for a slot gives 503
    cache_entries: int = 16  # recent results kept for the download links
    max_live_sessions: int = 4  # camera sessions at once (503 beyond)
    live_max_fps: float = 5.0  # frames per second per session (429 with Retry-After beyond)
    live_idle_timeout_s: float = 30.0  # a session without a request this long is dropped
    live_max_frame_pixels: int = 640 * 480  # larger frames are refused (413), not shrunk
    live_max_frame_bytes: int = 2 * 1024 * 1024  # one frame's body (413 beyond)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value > 0:  # also refuses NaN
                raise ValueError(f"DemoLimits.{field.name} must be positive, got {value!r}")


@dataclasses.dataclass
class Result:
    """One prediction, everything the download links need."""

    rgb: np.ndarray  # (H, W, 3) uint8, what the model saw
    depth_m: np.ndarray  # (H, W) float32 metres
    model: str
    max_depth: float
    depth_scale: float
    focal_px: float
    intrinsics: image_io.Intrinsics
    stem: str  # safe download name stem
    source: Dict[str, object]  # what was uploaded: format, original size, resized, time


class InMemoryRequest(Request):
    """Uploads are parsed into memory: werkzeug would spool files over 500 kB to a temporary file.

    Memory stays bounded because bodies are capped (``MAX_CONTENT_LENGTH``) and only
    ``max_concurrent`` requests parse their body at a time.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


class ResultCache:
    """Thread-safe LRU of recent results under random ids (memory only, nothing on disk)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self._items: "collections.OrderedDict[str, Result]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: Result) -> str:
        result_id = secrets.token_hex(16)
        with self._lock:
            self._items[result_id] = result
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return result_id

    def get(self, result_id: str) -> Optional[Result]:
        with self._lock:
            result = self._items.get(result_id)
            if result is not None:
                self._items.move_to_end(result_id)
            return result


class RateLimited(UploadError):
    """429: a live frame came sooner than the session's rate allows; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(429, message)
        self.retry_after_s = retry_after_s


@dataclasses.dataclass
class LiveSession:
    """One camera stream: its model and its rate state. No frame is kept."""

    model: str
    focal: Optional[float]  # px at the frame's size, None: the dataset default
    last_seen: float  # time.monotonic() of its last request
    tokens: float = 1.0  # frames it may send now (token bucket, refilled at live_max_fps)
    in_flight: bool = False  # one frame at a time
    frames: int = 0  # frames answered


class LiveSessions:
    """The bounded registry of live camera sessions under random ids (memory only).

    Expired sessions are dropped whenever the registry is used, so no thread is needed.
    """

    def __init__(self, limits: DemoLimits):
        self.limits = limits
        self._sessions: Dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self._sessions)

    def _expire(self, now: float) -> None:  # under the lock
        timeout = self.limits.live_idle_timeout_s
        for key in [key for key, session in self._sessions.items()
                    if not session.in_flight and now - session.last_seen > timeout]:
            del self._sessions[key]

    def start(self, model: str, focal: Optional[float]) -> str:
        """A new session's id; UploadError 503 when ``max_live_sessions`` are running."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if len(self._sessions) >= self.limits.max_live_sessions:
                raise UploadError(503, f"{len(self._sessions)} live sessions already (the limit); "
                                       "try again later or upload a photo")
            key = secrets.token_hex(16)
            self._sessions[key] = LiveSession(model, focal, now)
            return key

    def stop(self, key: str) -> bool:
        with self._lock:
            return self._sessions.pop(key, None) is not None

    @contextlib.contextmanager
    def frame(self, key: str) -> Iterator[LiveSession]:
        """Admit one frame of session ``key`` for the ``with`` block.

        UploadError 404 for an unknown, stopped or expired session; RateLimited 429 while a
        frame of it is in flight or when it has used up its ``live_max_fps`` rate (a token
        bucket of ``LIVE_BURST`` frames, so a client pacing itself at the rate is never refused
        for network jitter, and none gets more than the rate on average).
        """
        rate = self.limits.live_max_fps
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            session = self._sessions.get(key) if RESULT_ID.match(key) else None
            if session is None:
                raise UploadError(404, "no such live session (stopped, or idle for more than "
                                       f"{self.limits.live_idle_timeout_s:g} s); start a new one")
            session.tokens = min(LIVE_BURST, session.tokens + (now - session.last_seen) * rate)
            session.last_seen = now
            if session.in_flight:
                raise RateLimited("one frame at a time: wait for the previous answer", 1.0 / rate)
            if session.tokens < 1.0:
                raise RateLimited(f"at most {rate:g} frames per second per live session",
                                  (1.0 - session.tokens) / rate)
            session.tokens -= 1.0
            session.in_flight = True
        try:
            yield session
            session.frames += 1
        finally:
            with self._lock:
                session.in_flight = False


def json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def depth_statistics(depth_m: np.ndarray) -> Dict[str, Optional[float]]:
    """min / max / mean / median over the valid (finite, > 0) pixels, metres."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return {"min_m": None, "max_m": None, "mean_m": None, "median_m": None,
                "valid_fraction": 0.0}
    return {"min_m": float(valid.min()), "max_m": float(valid.max()), "mean_m": float(valid.mean()),
            "median_m": float(np.median(valid)), "valid_fraction": valid.size / depth_m.size}


def encode_result(result: Result, kind: str) -> bytes:
    """Bytes of one output of a result (``kind``: png, npy, float32, ply, colormap, input)."""
    if kind == "png":
        return image_io.encode_png(image_io.depth_to_uint16(result.depth_m, result.depth_scale))
    if kind == "npy":
        return image_io.encode_npy(result.depth_m)
    if kind == "float32":  # (H, W) row major, little-endian: a JS Float32Array without a decoder
        return np.ascontiguousarray(result.depth_m, dtype="<f4").tobytes()
    if kind == "ply":
        return image_io.encode_point_cloud(result.depth_m, result.rgb, result.intrinsics)[0]
    if kind == "colormap":
        return image_io.encode_png(image_io.colorize_depth(result.depth_m, result.max_depth))
    if kind == "input":
        return image_io.encode_png(result.rgb)
    raise ValueError(f"unknown output kind {kind!r}")


def download_name(result: Result, kind: str) -> str:
    return result.stem + DOWNLOAD_SUFFIX[kind]


def safe_stem(filename: Optional[str]) -> str:
    """A download name stem from an upload's name: ASCII, no path parts, ≤ 60 characters."""
    stem = os.path.splitext(secure_filename(filename or ""))[0][:60]
    return stem or "image"


def parse_focal(text: Optional[str]) -> Optional[float]:
    """Optional focal length in px from a form/query field; UploadError 400 when malformed."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UploadError(400, f"focal must be a number of pixels, got {text[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UploadError(400, f"focal must be a positive number of pixels, got {text[:40]!r}")
    return value


def ground_truth_scores(depth_m: np.ndarray, gt_m: np.ndarray, dataset: str
                        ) -> Optional[Dict[str, object]]:
    """Official metrics against a ground truth of the same size, raw and median-scaled.

    A photo from another camera than the training set's has an unknown scale, so the
    median-scaled scores (prediction × median(gt) / median(pred)) are the fairer ones.
    """
    from utils import metrics
    from utils.datasets import get_dataset_facts

    if gt_m.shape != depth_m.shape:
        return None
    facts = get_dataset_facts(dataset)
    valid = metrics.valid_mask(gt_m, facts.min_depth_eval, facts.max_depth_eval, dataset)
    pred = metrics.clip_prediction(depth_m, facts.min_depth_eval, facts.max_depth_eval)[valid]
    gt = gt_m[valid]
    if gt.size == 0:
        return None
    scaled = np.clip(pred * (np.median(gt) / np.median(pred)), facts.min_depth_eval,
                     facts.max_depth_eval)
    return {"valid_pixels": int(gt.size), "metrics": metrics.compute_errors(gt, pred),
            "median_scaled": metrics.compute_errors(gt, scaled)}


@dataclasses.dataclass
class DemoState:
    """Everything the views share, one per app (``app.extensions["bts_demo"]``, see ``state()``)."""

    predictors: Dict[str, "DepthPredictor"]  # dataset name → predictor, first = default
    untrained: bool  # random weights: banner on the page, "untrained" in every answer
    limits: DemoLimits
    cache: ResultCache
    slots: threading.BoundedSemaphore  # the max_concurrent work slots
    live: LiveSessions  # camera sessions (their frames take work slots like uploads)

    @classmethod
    def build(cls, predictors: Mapping[str, "DepthPredictor"], untrained: bool,
              limits: DemoLimits) -> "DemoState":
        if not predictors:
            raise ValueError("create_app needs at least one predictor")
        return cls(dict(predictors), bool(untrained), limits, ResultCache(limits.cache_entries),
                   threading.BoundedSemaphore(limits.max_concurrent), LiveSessions(limits))

    @property
    def default_model(self) -> str:
        return next(iter(self.predictors))

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``max_concurrent`` work slots; UploadError 503 after the timeout."""
        if not self.slots.acquire(timeout=self.limits.queue_timeout_s):
            raise UploadError(503, "the server is busy; try again in a minute")
        try:
            yield
        finally:
            self.slots.release()

    def model_info(self, name: str) -> Dict[str, object]:
        """The served model as it was loaded (its checkpoint's record, not the command line's
        flags); ``bts_size`` is None for an older ``.keras`` file that records no config."""
        predictor = self.predictors[name]
        recorded = predictor.model_config
        return {"name": name, "max_depth": predictor.max_depth,
                "depth_scale": image_io.depth_scale(predictor.dataset),
                "default_focal": predictor.default_focal, "encoder": predictor.encoder,
                "bts_size": recorded.bts_size if recorded is not None else None}

    def models(self) -> list[Dict[str, object]]:
        return [self.model_info(name) for name in self.predictors]


BP = Blueprint("demo", __name__)


def state() -> DemoState:
    """The DemoState of the app serving the current request."""
    return current_app.extensions[EXTENSION]


def create_app(predictors: Mapping[str, "DepthPredictor"], *, untrained: bool = False,
               limits: DemoLimits = DemoLimits()) -> Flask:
    """The demo Flask app serving ``predictors`` (dataset name → predictor, first = default).

    ``untrained``: the models carry random weights; every page shows a warning banner and every
    API answer says so (``"untrained": true`` / ``X-BTS-Untrained: 1``).
    """
    demo = DemoState.build(predictors, untrained, limits)
    app = Flask(__name__, template_folder=os.path.join(HERE, "templates"),
                static_folder=os.path.join(HERE, "static"), static_url_path="/static")
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = limits.max_upload_bytes
    app.json.sort_keys = False
    app.extensions[EXTENSION] = demo
    app.register_blueprint(BP)
    return app


# ----------------------------------------------------------------------------------------------
# Headers and errors (app-wide: they also answer routing errors such as 404 and 405)
# ----------------------------------------------------------------------------------------------
@BP.after_app_request
def add_headers(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    if state().untrained:
        response.headers["X-BTS-Untrained"] = "1"
    return response


@BP.app_errorhandler(UploadError)
def upload_error(err: UploadError) -> Response:
    return json_error(err.status, err.message)


@BP.app_errorhandler(RateLimited)
def rate_limited(err: RateLimited) -> Response:
    response = jsonify({"error": err.message, "status": 429,
                        "retry_after_ms": math.ceil(err.retry_after_s * 1e3)})
    response.status_code = 429
    response.headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))  # whole seconds
    return response


def size_text(count: int) -> str:
    """A byte count for a message: ``20 MB``, ``512 kB``, ``100 bytes``."""
    if count >= 2**20:
        return f"{count / 2**20:.0f} MB"
    return f"{count / 2**10:.0f} kB" if count >= 2**10 else f"{count} bytes"


@BP.app_errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    limit = request.max_content_length or state().limits.max_upload_bytes  # live frames: less
    messages = {
        413: f"the upload is larger than {size_text(limit)}",
        405: f"method {request.method} is not allowed on {request.path}",
        404: f"nothing at {request.path}",
    }
    return json_error(err.code or 500, messages.get(err.code, err.description or err.name))


@BP.app_errorhandler(Exception)
def internal_error(err: Exception) -> Response:
    LOGGER.exception("request %s %s failed", request.method, request.path)
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return json_error(500, f"internal error ({detail})")


# ----------------------------------------------------------------------------------------------
# Page, health, samples, legend
# ----------------------------------------------------------------------------------------------
@BP.get("/")
def index() -> str:
    demo = state()
    return render_template("index.html", models=demo.models(), default_model=demo.default_model,
                           untrained=demo.untrained, samples=samples.sample_titles(),
                           limits=demo.limits)


@BP.get("/healthz")
def healthz() -> Response:
    demo = state()
    return jsonify({"status": "ok", "untrained": demo.untrained,
                    "default_model": demo.default_model, "models": demo.models(),
                    "limits": dataclasses.asdict(demo.limits), "live_sessions": len(demo.live)})


@BP.get("/api/samples")
def list_samples() -> Response:
    return jsonify([{"name": name, "title": title, "url": f"/samples/{name}.png"}
                    for name, title in samples.sample_titles().items()])


@BP.get("/samples/<name>.png")
def sample_image(name: str) -> Response:
    data = samples.sample_png(name)
    if data is None:
        return json_error(404, f"no sample named {name[:40]!r}")
    return Response(data, mimetype="image/png", headers={"Cache-Control": "public, max-age=86400"})


@BP.get("/legend/<name>.png")
def legend(name: str) -> Response:
    predictor = state().predictors.get(name)
    if predictor is None:
        return json_error(404, f"no model named {name[:40]!r}")
    max_depth = predictor.max_depth
    ramp = np.tile(np.linspace(0.0, max_depth, 256, dtype=np.float32), (16, 1))
    ramp[:, 0] = max_depth / 512.0  # the first column is 0 m = invalid (black); show near
    return Response(image_io.encode_png(image_io.colorize_depth(ramp, max_depth)),
                    mimetype="image/png")


# ----------------------------------------------------------------------------------------------
# Predictions and their files
# ----------------------------------------------------------------------------------------------
@BP.post("/api/predict")
def predict() -> Response:
    demo = state()
    kind = request.args.get("format", "json")
    if kind not in FORMATS:
        raise UploadError(400, f"format must be one of {', '.join(FORMATS)}, got {kind[:20]!r}")
    with demo.slot():
        result = predict_upload(demo)
        result_id = demo.cache.put(result)
        if kind != "json":
            return send_bytes(encode_result(result, kind), kind, result, result_id,
                              attachment=kind != "colormap")
    return jsonify(result_json(result, result_id, demo.untrained))


@BP.get("/api/result/<result_id>/<filename>")
def result_file(result_id: str, filename: str) -> Response:
    demo = state()
    kind = RESULT_FILES.get(filename)
    result = demo.cache.get(result_id) if RESULT_ID.match(result_id) else None
    if kind is None or result is None:
        return json_error(404, "no such result (results are kept for the "
                               f"{demo.limits.cache_entries} most recent predictions)")
    with demo.slot():  # encoding a .ply of 0.9 Mpx takes ~15 MB: bounded like predictions
        return send_bytes(encode_result(result, kind), kind, result, result_id,
                          attachment=kind in ("png", "npy", "ply"))


def result_json(result: Result, result_id: str, untrained: bool) -> Dict[str, object]:
    """The JSON answer of /api/predict: size, scales, intrinsics, statistics and file links."""
    height, width = result.depth_m.shape
    urls = {kind: f"/api/result/{result_id}/{filename}" for filename, kind in RESULT_FILES.items()}
    return {"id": result_id, "model": result.model, "untrained": untrained,
            "width": width, "height": height, "max_depth": result.max_depth,
            "depth_scale": result.depth_scale, "focal_px": result.focal_px,
            "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), result.intrinsics)),
            **result.source, **depth_statistics(result.depth_m), "urls": urls}


def send_bytes(data: bytes, kind: str, result: Result, result_id: str,
               attachment: bool) -> Response:
    """A binary answer with the depth's scale, range and size in headers."""
    response = Response(data, mimetype=MIME.get(kind, "image/png"))
    if attachment:
        response.headers["Content-Disposition"] = \
            f'attachment; filename="{download_name(result, kind)}"'
    height, width = result.depth_m.shape
    response.headers["X-Result-Id"] = result_id
    response.headers["X-Depth-Scale"] = f"{result.depth_scale:g}"
    response.headers["X-Max-Depth"] = f"{result.max_depth:g}"
    response.headers["X-Depth-Width"] = str(width)
    response.headers["X-Depth-Height"] = str(height)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def request_image() -> Tuple[bytes, str, Optional[str]]:
    """(bytes, download stem, sample name or None) of this request's image."""
    upload = request.files.get("image")  # parsing the body may raise 413
    sample = request.values.get("sample")
    if upload is not None and sample is not None:
        raise UploadError(400, "send either an 'image' file or a 'sample' name, not both")
    if sample is not None:
        data = samples.sample_png(sample)
        if data is None:
            raise UploadError(400, f"no sample named {sample[:40]!r}; see /api/samples")
        return data, sample, sample
    if upload is None:
        raise UploadError(400, "send the image as the multipart/form-data field 'image' "
                               "(or a 'sample' name)")
    return upload.read(), safe_stem(upload.filename), None


def request_model(demo: DemoState) -> Tuple[str, Optional[float]]:
    """(model name, focal px or None) of this request's ``model`` and ``focal`` fields."""
    name = request.values.get("model", demo.default_model)
    if name not in demo.predictors:
        raise UploadError(400, f"model must be one of {', '.join(demo.predictors)}, "
                               f"got {name[:20]!r}")
    return name, parse_focal(request.values.get("focal"))


def predict_decoded(demo: DemoState, decoded: DecodedImage, name: str, focal: Optional[float]
                    ) -> Tuple[np.ndarray, float, image_io.Intrinsics, float]:
    """The one prediction step of uploads and live frames: (depth (H, W) float32 m, focal px,
    intrinsics, model milliseconds) of a decoded image with model ``name``."""
    predictor = demo.predictors[name]
    # Shrinking an image shrinks its focal length in pixels by the same factor.
    focal_px = (focal if focal is not None else predictor.default_focal) * decoded.scale
    started = time.perf_counter()
    depth_m = predictor.predict_image(decoded.rgb, focal=focal_px)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    height, width = depth_m.shape
    given = {} if focal is None else {"fx": focal_px, "fy": focal_px}
    intrinsics = image_io.default_intrinsics(predictor.dataset, height, width, **given)
    return depth_m, float(focal_px), intrinsics, elapsed_ms


def predict_upload(demo: DemoState) -> Result:
    """Read, check, decode and predict the uploaded image (or sample) of this request."""
    data, stem, sample = request_image()
    name, focal = request_model(demo)
    decoded = decode_upload(data, max_pixels=demo.limits.max_pixels,
                            max_work_pixels=demo.limits.max_work_pixels)
    depth_m, focal_px, intrinsics, elapsed_ms = predict_decoded(demo, decoded, name, focal)
    predictor = demo.predictors[name]
    height, width = depth_m.shape
    LOGGER.info("%s %dx%d -> %dx%d with %s in %.0f ms", decoded.format,
                decoded.original_size[1], decoded.original_size[0], width, height, name,
                elapsed_ms)
    source = {"format": decoded.format, "original_width": decoded.original_size[1],
              "original_height": decoded.original_size[0],
              "resized": (height, width) != decoded.original_size,
              "predict_ms": round(elapsed_ms, 1),
              "ground_truth": sample_scores(sample, depth_m, predictor.dataset)}
    return Result(decoded.rgb, depth_m, name, predictor.max_depth,
                  image_io.depth_scale(predictor.dataset), focal_px, intrinsics, stem, source)


def sample_scores(sample: Optional[str], depth_m: np.ndarray, dataset: str
                  ) -> Optional[Dict[str, object]]:
    """Ground-truth scores of a bundled sample's prediction, None for uploads and other samples."""
    gt_m = samples.sample_ground_truth(sample) if sample else None
    return None if gt_m is None else ground_truth_scores(depth_m, gt_m, dataset)


# ----------------------------------------------------------------------------------------------
# Live camera mode: bounded sessions, one frame in flight each, depth back as raw float32
# ----------------------------------------------------------------------------------------------
@BP.post("/api/live/start")
def live_start() -> Response:
    demo = state()
    name, focal = request_model(demo)
    session = demo.live.start(name, focal)
    predictor, limits = demo.predictors[name], demo.limits
    LOGGER.info("live session %s… started with %s (%d running)", session[:6], name, len(demo.live))
    return jsonify({
        "session": session, "model": name, "untrained": demo.untrained,
        "max_depth": predictor.max_depth, "depth_scale": image_io.depth_scale(predictor.dataset),
        # The page colours the float32 depth itself with the server's table (colorize_depth).
        "colormap": image_io.colormap_lut().tolist(),
        "limits": {"max_fps": limits.live_max_fps,
                   "min_interval_ms": math.ceil(1e3 / limits.live_max_fps),
                   "max_frame_pixels": limits.live_max_frame_pixels,
                   "max_frame_bytes": limits.live_max_frame_bytes,
                   "idle_timeout_s": limits.live_idle_timeout_s},
        "urls": {"frame": f"/api/live/{session}/frame", "stop": f"/api/live/{session}/stop"}})


@BP.post("/api/live/<session_id>/frame")
def live_frame(session_id: str) -> Response:
    demo = state()
    limits = demo.limits
    with demo.live.frame(session_id) as session:  # 404 / 429 before the body is read
        request.max_content_length = limits.live_max_frame_bytes
        with demo.slot():
            decoded = decode_upload(live_frame_bytes(), max_pixels=limits.live_max_frame_pixels,
                                    max_work_pixels=limits.live_max_frame_pixels)
            depth_m, focal_px, intrinsics, elapsed_ms = predict_decoded(
                demo, decoded, session.model, session.focal)
        number = session.frames + 1
    predictor = demo.predictors[session.model]
    height, width = depth_m.shape
    LOGGER.debug("live %s… frame %d %dx%d in %.0f ms", session_id[:6], number, width, height,
                 elapsed_ms)
    response = Response(np.ascontiguousarray(depth_m, dtype="<f4").tobytes(),
                        mimetype="application/octet-stream")
    response.headers.update({
        "X-Depth-Width": str(width), "X-Depth-Height": str(height),
        "X-Max-Depth": f"{predictor.max_depth:g}",
        "X-Depth-Scale": f"{image_io.depth_scale(predictor.dataset):g}",
        "X-Focal-Px": f"{focal_px:.6g}", "X-Intrinsics": ",".join(f"{v:.6g}" for v in intrinsics),
        "X-Live-Frame": str(number), "X-Predict-Ms": f"{elapsed_ms:.1f}",
        "Cache-Control": "no-store"})
    return response


def live_frame_bytes() -> bytes:
    """The frame of this request: a multipart ``image`` field, else the body itself (in memory)."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise UploadError(400, "send the frame as the request body or as the multipart "
                                   "field 'image'")
        return upload.read()
    return request.get_data(cache=False)


@BP.post("/api/live/<session_id>/stop")
def live_stop(session_id: str) -> Response:
    demo = state()
    if not demo.live.stop(session_id):
        return json_error(404, "no such live session (already stopped or expired)")
    LOGGER.info("live session %s… stopped (%d running)", session_id[:6], len(demo.live))
    return jsonify({"stopped": session_id})

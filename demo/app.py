# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The demo web app: one page plus a small JSON/HTTP API, around shared ``DepthPredictor`` objects.

Routes (all errors are JSON ``{"error": message, "status": code}``):

* ``GET /``                          the page (templates/index.html, static/demo.js, demo.css)
* ``GET /healthz``                   liveness and the loaded models
* ``POST /api/predict``              multipart field ``image`` or form field ``sample`` (a bundled
  photo; the motorcycle is also scored against its ground truth), optional ``model``, ``focal``;
  ``?format=json`` (default: statistics and download links), ``png`` (raw uint16 depth at the
  dataset scale), ``npy`` (float32 metres), ``ply`` (coloured point cloud), ``colormap`` (RGB PNG)
* ``GET /api/result/<id>/<file>``    ``depth.png``, ``depth.npy``, ``cloud.ply``, ``colormap.png``,
  ``input.png`` of a recent prediction (kept in memory, least recently used dropped first)
* ``GET /api/samples``, ``GET /samples/<name>.png``   bundled sample photos (scikit-image)
* ``GET /legend/<model>.png``        the colormap ramp over [0, max_depth]

Pre/post-processing is the shared one: ``bts_predict.DepthPredictor.predict_image`` (normalise,
pad, KB crop) and ``utils.image_io`` (uint16 PNG convention, colormap, .npy, .ply). This module
only adds the web-facing parts: upload checks (``uploads.py``), limits and caching.

Concurrency and memory: at most ``max_concurrent`` requests read, decode, predict or encode a
download at once (others wait up to ``queue_timeout_s``, then get 503); uploads are parsed in
memory, never spooled to disk; the model calls themselves are serialised by
the predictor's lock; each image is shrunk to ``max_work_pixels`` before the model sees it; the
result cache holds ``cache_entries`` results. So memory stays bounded whatever arrives.
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
from typing import TYPE_CHECKING, Dict, Mapping, Optional

import numpy as np
from flask import Flask, Request, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from utils import image_io
from demo import samples
from demo.uploads import UploadError, decode_upload

if TYPE_CHECKING:  # importing the predictor starts TensorFlow; the app itself does not need it
    from bts_predict import DepthPredictor

LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = ("json", "png", "npy", "ply", "colormap")
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
MIME = {"png": "image/png", "colormap": "image/png", "npy": "application/octet-stream",
        "ply": "application/octet-stream", "json": "application/json"}
RESULT_FILES = {"depth.png": "png", "depth.npy": "npy", "cloud.ply": "ply",
                "colormap.png": "colormap", "input.png": "input"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Everything comes from this server: no CDN, no inline script.
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "script-src 'self'; style-src 'self'; object-src 'none'; "
                                "frame-ancestors 'none'"),
}


@dataclasses.dataclass(frozen=True)
class DemoLimits:
    """Resource limits of the demo; the defaults suit one CPU box serving a few people."""

    max_upload_bytes: int = 20 * 1024 * 1024  # request body (413 beyond)
    max_pixels: int = 40_000_000  # pixels an upload may declare (413 beyond; bombs)
    max_work_pixels: int = 1280 * 720  # larger images are shrunk to this before the model
    max_concurrent: int = 4  # requests decoding/predicting at once (each holds ≲ 100 MB)
    queue_timeout_s: float = 120.0  # waiting longer for a slot gives 503
    cache_entries: int = 16  # recent results kept for the download links


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
    """Bytes of one output of a result (``kind``: png, npy, ply, colormap, input)."""
    if kind == "png":
        return image_io.encode_png(image_io.depth_to_uint16(result.depth_m, result.depth_scale))
    if kind == "npy":
        return image_io.encode_npy(result.depth_m)
    if kind == "ply":
        return image_io.encode_point_cloud(result.depth_m, result.rgb, result.intrinsics)[0]
    if kind == "colormap":
        return image_io.encode_png(image_io.colorize_depth(result.depth_m, result.max_depth))
    if kind == "input":
        return image_io.encode_png(result.rgb)
    raise ValueError(f"unknown output kind {kind!r}")


def download_name(result: Result, kind: str) -> str:
    suffix = {"png": "_depth.png", "npy": "_depth.npy", "ply": "_cloud.ply",
              "colormap": "_colormap.png", "input": "_input.png"}[kind]
    return result.stem + suffix


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


def create_app(predictors: Mapping[str, "DepthPredictor"], *, untrained: bool = False,
               limits: DemoLimits = DemoLimits()) -> Flask:
    """The demo Flask app serving ``predictors`` (dataset name → predictor, first = default).

    ``untrained``: the models carry random weights; every page shows a warning banner and every
    API answer says so (``"untrained": true`` / ``X-BTS-Untrained: 1``).
    """
    if not predictors:
        raise ValueError("create_app needs at least one predictor")
    predictors = dict(predictors)
    default_model = next(iter(predictors))
    app = Flask(__name__, template_folder=os.path.join(HERE, "templates"),
                static_folder=os.path.join(HERE, "static"), static_url_path="/static")
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = limits.max_upload_bytes
    app.json.sort_keys = False
    cache = ResultCache(limits.cache_entries)
    slots = threading.BoundedSemaphore(limits.max_concurrent)

    @contextlib.contextmanager
    def slot():
        """Hold one of the ``max_concurrent`` work slots; UploadError 503 after the timeout."""
        if not slots.acquire(timeout=limits.queue_timeout_s):
            raise UploadError(503, "the server is busy; try again in a minute")
        try:
            yield
        finally:
            slots.release()

    def model_info(name: str) -> Dict[str, object]:
        predictor = predictors[name]
        return {"name": name, "max_depth": predictor.max_depth,
                "depth_scale": image_io.depth_scale(predictor.dataset),
                "default_focal": predictor.default_focal, "encoder": predictor.encoder}

    def result_urls(result_id: str) -> Dict[str, str]:
        return {kind: f"/api/result/{result_id}/{filename}"
                for filename, kind in RESULT_FILES.items()}

    def send_bytes(data: bytes, kind: str, result: Result, result_id: str,
                   attachment: bool) -> Response:
        response = Response(data, mimetype=MIME.get(kind, "image/png"))
        if attachment:
            response.headers["Content-Disposition"] = \
                f'attachment; filename="{download_name(result, kind)}"'
        response.headers["X-Result-Id"] = result_id
        response.headers["X-Depth-Scale"] = f"{result.depth_scale:g}"
        response.headers["X-Max-Depth"] = f"{result.max_depth:g}"
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.after_request
    def add_headers(response: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if untrained:
            response.headers["X-BTS-Untrained"] = "1"
        return response

    @app.errorhandler(UploadError)
    def upload_error(err: UploadError):
        return json_error(err.status, err.message)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        messages = {
            413: f"the upload is larger than {limits.max_upload_bytes / 2**20:.0f} MB",
            405: f"method {request.method} is not allowed on {request.path}",
            404: f"nothing at {request.path}",
        }
        return json_error(err.code or 500, messages.get(err.code, err.description or err.name))

    @app.errorhandler(Exception)
    def internal_error(err: Exception):
        LOGGER.exception("request %s %s failed", request.method, request.path)
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
        return json_error(500, f"internal error ({detail})")

    @app.get("/")
    def index():
        return render_template("index.html", models=[model_info(n) for n in predictors],
                               default_model=default_model, untrained=untrained,
                               samples=samples.sample_titles(), limits=limits)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "untrained": untrained, "default_model": default_model,
                        "models": [model_info(n) for n in predictors],
                        "limits": dataclasses.asdict(limits)})

    @app.get("/api/samples")
    def list_samples():
        return jsonify([{"name": name, "title": title, "url": f"/samples/{name}.png"}
                        for name, title in samples.sample_titles().items()])

    @app.get("/samples/<name>.png")
    def sample_image(name: str):
        data = samples.sample_png(name)
        if data is None:
            return json_error(404, f"no sample named {name[:40]!r}")
        return Response(data, mimetype="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/legend/<name>.png")
    def legend(name: str):
        if name not in predictors:
            return json_error(404, f"no model named {name[:40]!r}")
        max_depth = predictors[name].max_depth
        ramp = np.tile(np.linspace(0.0, max_depth, 256, dtype=np.float32), (16, 1))
        ramp[:, 0] = max_depth / 512.0  # the first column is 0 m = invalid (black); show near
        return Response(image_io.encode_png(image_io.colorize_depth(ramp, max_depth)),
                        mimetype="image/png")

    @app.post("/api/predict")
    def predict():
        kind = request.args.get("format", "json")
        if kind not in FORMATS:
            raise UploadError(400, f"format must be one of {', '.join(FORMATS)}, got {kind[:20]!r}")
        with slot():
            result = predict_upload()
            result_id = cache.put(result)
            if kind != "json":
                return send_bytes(encode_result(result, kind), kind, result, result_id,
                                  attachment=kind != "colormap")
        height, width = result.depth_m.shape
        body = {"id": result_id, "model": result.model, "untrained": untrained,
                "width": width, "height": height, "max_depth": result.max_depth,
                "depth_scale": result.depth_scale, "focal_px": result.focal_px,
                "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), result.intrinsics)),
                **result.source, **depth_statistics(result.depth_m), "urls": result_urls(result_id)}
        return jsonify(body)

    def request_image():
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

    def predict_upload() -> Result:
        """Read, check, decode and predict the uploaded image (or sample) of this request."""
        data, stem, sample = request_image()
        name = request.values.get("model", default_model)
        if name not in predictors:
            raise UploadError(400, f"model must be one of {', '.join(predictors)}, "
                                   f"got {name[:20]!r}")
        focal = parse_focal(request.values.get("focal"))
        decoded = decode_upload(data, max_pixels=limits.max_pixels,
                                max_work_pixels=limits.max_work_pixels)
        predictor = predictors[name]
        # Shrinking an image shrinks its focal length in pixels by the same factor.
        focal_px = (focal if focal is not None else predictor.default_focal) * decoded.scale
        started = time.perf_counter()
        depth_m = predictor.predict_image(decoded.rgb, focal=focal_px)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        height, width = depth_m.shape
        if focal is None:
            intrinsics = image_io.default_intrinsics(predictor.dataset, height, width)
        else:
            intrinsics = image_io.default_intrinsics(predictor.dataset, height, width,
                                                     fx=focal_px, fy=focal_px)
        LOGGER.info("%s %dx%d -> %dx%d with %s in %.0f ms", decoded.format,
                    decoded.original_size[1], decoded.original_size[0], width, height, name,
                    elapsed_ms)
        return Result(decoded.rgb, depth_m, name, predictor.max_depth,
                      image_io.depth_scale(predictor.dataset), float(focal_px), intrinsics,
                      stem,
                      {"format": decoded.format, "original_width": decoded.original_size[1],
                       "original_height": decoded.original_size[0],
                       "resized": (height, width) != decoded.original_size,
                       "predict_ms": round(elapsed_ms, 1),
                       "ground_truth": sample_scores(sample, depth_m, predictor.dataset)})

    def sample_scores(sample: Optional[str], depth_m: np.ndarray, dataset: str):
        gt_m = samples.sample_ground_truth(sample) if sample else None
        return None if gt_m is None else ground_truth_scores(depth_m, gt_m, dataset)

    @app.get("/api/result/<result_id>/<filename>")
    def result_file(result_id: str, filename: str):
        kind = RESULT_FILES.get(filename)
        result = cache.get(result_id) if RESULT_ID.match(result_id) else None
        if kind is None or result is None:
            return json_error(404, "no such result (results are kept for the "
                                   f"{limits.cache_entries} most recent predictions)")
        with slot():  # encoding a .ply of 0.9 Mpx takes ~15 MB: bounded like predictions
            return send_bytes(encode_result(result, kind), kind, result, result_id,
                              attachment=kind in ("png", "npy", "ply"))

    return app

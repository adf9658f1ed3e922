# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The demo's live camera mode: sessions, limits and frames through Flask's test client; a real
headless Chromium with a fake camera (and one that refuses it); a loopback load test."""
import builtins
import concurrent.futures
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import bts_demo
from demo import uploads
from demo.app import EXTENSION, LIVE_BURST, DemoLimits, create_app
from test_demo import CHROMIUM, CHROMIUM_ARGS, _assert_json_error, _encode, _png_header_only, _rgb
from test_demo import _save_screenshot
from tiny_run import save_run_folder
from utils import image_io
from utils.arguments import parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
FAST = DemoLimits(live_max_fps=1e6)  # for tests about frames, not about the rate
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


# -------------------------------------------------------------------------------------------
# Fixtures: the tiny NYU run folder, loaded the way bts_demo.py loads it
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live_models") / "nyu"
    save_run_folder(folder, "nyu", seed=7)
    args = parse_args(groups=bts_demo.DEMO_GROUPS, argv=["--checkpoint_path", str(folder)])
    return bts_demo.load_predictors(args, bts_demo.requested_checkpoints(args))["nyu"]


def _client(predictor, limits=FAST):
    return create_app({"nyu": predictor}, limits=limits).test_client()


def _start(client, **fields):
    response = client.post("/api/live/start", data=fields)
    assert response.status_code == 200, response.data[:300]
    return response.json


def _frame(client, session, data, content_type="image/jpeg"):
    return client.post(f"/api/live/{session}/frame", data=data, content_type=content_type)


def _depth(response):
    width, height = int(response.headers["X-Depth-Width"]), int(response.headers["X-Depth-Height"])
    return np.frombuffer(response.data, "<f4").reshape(height, width)


def _live_sessions(client):
    return client.get("/healthz").json["live_sessions"]


# -------------------------------------------------------------------------------------------
# Sessions and frames (test client)
# -------------------------------------------------------------------------------------------
def test_start_frame_stop_round_trip(predictor):
    client = _client(predictor)
    info = _start(client)
    assert SESSION_ID.match(info["session"]) and info["model"] == "nyu"
    assert info["max_depth"] == 10.0 and info["depth_scale"] == 1000.0
    assert info["limits"] == {"max_fps": 1e6, "min_interval_ms": 1, "max_frame_pixels": 307200,
                              "max_frame_bytes": 2 * 2**20, "idle_timeout_s": 30.0}
    np.testing.assert_array_equal(info["colormap"], image_io.colormap_lut())  # the page's table
    assert _live_sessions(client) == 1
    for number in (1, 2):
        response = _frame(client, info["session"], _encode(_rgb(48, 64, seed=number), "JPEG"))
        assert response.status_code == 200 and response.mimetype == "application/octet-stream"
        assert response.headers["X-Live-Frame"] == str(number)
        assert (response.headers["X-Max-Depth"], response.headers["X-Depth-Scale"]) == ("10", "1000")
        assert response.headers["Cache-Control"] == "no-store"
        assert _depth(response).shape == (48, 64)
        fx, fy, cx, cy = map(float, response.headers["X-Intrinsics"].split(","))
        np.testing.assert_allclose((fx, fy, cx, cy), image_io.default_intrinsics("nyu", 48, 64),
                                   rtol=1e-5)
    assert client.post(info["urls"]["stop"]).json == {"stopped": info["session"]}
    assert _live_sessions(client) == 0
    _assert_json_error(_frame(client, info["session"], _encode(_rgb(), "JPEG")), 404, "no such")
    _assert_json_error(client.post(info["urls"]["stop"]), 404, "no such live session")


def test_frame_depth_is_the_predictor_on_the_decoded_frame(predictor, monkeypatch):
    calls = []
    original = predictor.predict_image

    def spy(rgb, focal=None, **kwargs):
        calls.append(rgb.shape)
        return original(rgb, focal=focal, **kwargs)

    monkeypatch.setattr(predictor, "predict_image", spy)
    client = _client(predictor)
    session = _start(client)["session"]
    jpeg = _encode(_rgb(60, 80, seed=3), "JPEG", quality=80)
    raw = _depth(_frame(client, session, jpeg))
    png = _encode(_rgb(30, 40, seed=4))  # the same route takes a multipart 'image' field too
    multipart = _depth(client.post(f"/api/live/{session}/frame",
                                   data={"image": (io.BytesIO(png), "frame.png")},
                                   content_type="multipart/form-data"))
    assert calls == [(60, 80, 3), (30, 40, 3)]  # one predict_image call per frame, nothing else
    for data, depth in ((jpeg, raw), (png, multipart)):
        decoded = uploads.decode_upload(data, max_pixels=307200, max_work_pixels=307200)
        np.testing.assert_array_equal(depth, original(decoded.rgb))  # byte for byte


def test_a_focal_given_at_start_applies_to_every_frame(predictor):
    client = _client(predictor)
    session = _start(client, focal="300")["session"]
    response = _frame(client, session, _encode(_rgb(48, 64, seed=5), "JPEG"))
    assert response.headers["X-Focal-Px"] == "300"
    fx, fy, cx, cy = map(float, response.headers["X-Intrinsics"].split(","))
    assert (fx, fy) == (300.0, 300.0)
    _assert_json_error(client.post("/api/live/start", data={"model": "mars"}), 400,
                       "model must be one of")
    _assert_json_error(client.post("/api/live/start", data={"focal": "-1"}), 400, "positive")


def test_sessions_beyond_the_limit_are_503_until_one_stops(predictor):
    client = _client(predictor, DemoLimits(max_live_sessions=2))
    first, _ = _start(client), _start(client)
    _assert_json_error(client.post("/api/live/start"), 503, "2 live sessions already")
    client.post(first["urls"]["stop"])
    assert SESSION_ID.match(_start(client)["session"])


def test_unknown_and_expired_sessions_are_404(predictor):
    client = _client(predictor, DemoLimits(max_live_sessions=1, live_idle_timeout_s=0.2))
    frame = _encode(_rgb(16, 16), "JPEG")
    for bad in ("0" * 32, "..%2F..%2Fetc%2Fpasswd", "not-a-session"):
        _assert_json_error(_frame(client, bad, frame), 404)
    session = _start(client)["session"]
    assert _frame(client, session, frame).status_code == 200
    time.sleep(0.3)  # idle past the timeout
    _assert_json_error(_frame(client, session, frame), 404, "idle for more than 0.2 s")
    assert _live_sessions(client) == 0
    assert SESSION_ID.match(_start(client)["session"])  # the expired one freed its place


def test_non_image_frame_is_415_and_an_empty_one_400(predictor):
    client = _client(predictor)
    session = _start(client)["session"]
    response = _frame(client, session, b"<html>not a camera frame</html>", "image/jpeg")
    _assert_json_error(response, 415, "not an image")
    assert "\n" not in response.json["error"]
    _assert_json_error(_frame(client, session, b""), 400, "empty")
    assert _frame(client, session, _encode(_rgb(16, 16), "WEBP"), "image/webp").status_code == 200


def test_frames_over_the_pixel_or_byte_limit_are_413(predictor):
    client = _client(predictor, DemoLimits(live_max_fps=1e6, live_max_frame_pixels=64 * 48,
                                           live_max_frame_bytes=16 * 1024))
    session = _start(client)["session"]
    assert _frame(client, session, _encode(_rgb(48, 64), "JPEG")).status_code == 200
    _assert_json_error(_frame(client, session, _encode(_rgb(48, 65), "JPEG")), 413,
                       "3,120 pixels", "3,072 pixels")  # refused, not shrunk
    _assert_json_error(_frame(client, session, _png_header_only(9000, 9000)), 413, "pixels")
    _assert_json_error(_frame(client, session, os.urandom(20 * 1024)), 413,
                       "larger than 16 kB")  # the live limit, not the 20 MB upload one


def test_frames_faster_than_the_rate_are_429_with_retry_after(predictor):
    client = _client(predictor, DemoLimits(live_max_fps=5.0))
    session = _start(client)["session"]
    frame = _encode(_rgb(16, 16), "JPEG")
    assert _frame(client, session, frame).status_code == 200
    refused = _frame(client, session, frame)
    _assert_json_error(refused, 429, "at most 5 frames per second")
    assert refused.headers["Retry-After"] == "1" and 0 < refused.json["retry_after_ms"] <= 200
    time.sleep(refused.json["retry_after_ms"] / 1e3)
    assert _frame(client, session, frame).status_code == 200
    # A client ignoring the answers gets no more than the rate (plus what it banked) on average.
    accepted, started = 0, time.monotonic()
    while time.monotonic() - started < 0.6:
        accepted += _frame(client, session, frame).status_code == 200
    assert accepted <= LIVE_BURST + 5.0 * (time.monotonic() - started)


def test_one_frame_in_flight_per_session(predictor, monkeypatch):
    release, entered = threading.Event(), threading.Event()
    original = predictor.predict_image

    def slow(*args, **kwargs):
        entered.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_image", slow)
    app = create_app({"nyu": predictor}, limits=FAST)
    session = _start(app.test_client())["session"]
    frame = _encode(_rgb(16, 16), "JPEG")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(lambda: _frame(app.test_client(), session, frame).status_code)
        assert entered.wait(10)
        _assert_json_error(_frame(app.test_client(), session, frame), 429, "one frame at a time")
        release.set()
        assert first.result(timeout=30) == 200


def test_live_frames_stay_in_memory_and_out_of_the_result_cache(predictor, monkeypatch):
    import werkzeug.formparser

    client = _client(predictor, DemoLimits(live_max_fps=1e6, cache_entries=1))
    upload = client.post("/api/predict", data={"image": (io.BytesIO(_encode(_rgb())), "a.png")},
                         content_type="multipart/form-data").json
    session = _start(client)["session"]
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"a live frame was about to write {file!r}")
        return real_open(file, mode, *args, **kwargs)

    def no_disk(*args, **kwargs):
        raise AssertionError("a live frame was about to be written to a temporary file")

    monkeypatch.setattr(builtins, "open", read_only_open)
    for module, name in ((werkzeug.formparser, "SpooledTemporaryFile"),
                         (werkzeug.formparser, "TemporaryFile"), (tempfile, "TemporaryFile"),
                         (tempfile, "NamedTemporaryFile"), (tempfile, "SpooledTemporaryFile"),
                         (tempfile, "mkstemp")):
        monkeypatch.setattr(module, name, no_disk, raising=False)
    big = _encode(_rgb(480, 640, seed=8))  # ~900 kB of noise: werkzeug spools beyond 500 kB
    assert len(big) > 500 * 1024
    response = client.post(f"/api/live/{session}/frame",
                           data={"image": (io.BytesIO(big), "frame.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and _depth(response).shape == (480, 640)
    for seed in range(3):
        assert _frame(client, session, _encode(_rgb(48, 64, seed=seed), "JPEG")).status_code == 200
    monkeypatch.undo()
    # The one-entry result cache still holds the upload: live frames never entered it.
    assert client.get(upload["urls"]["npy"]).status_code == 200
    assert len(client.application.extensions[EXTENSION].cache._items) == 1


@pytest.mark.parametrize("field", ["max_live_sessions", "live_max_fps", "live_idle_timeout_s"])
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"DemoLimits.{field} must be positive, got 0"):
        DemoLimits(**{field: 0})


def test_page_offers_the_camera_and_may_use_it(predictor):
    client = _client(predictor, DemoLimits())
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert 'data-live="off"' in html and 'id="camera-start"' in html and 'id="live-fps"' in html
    assert "5.0 frames/s" in html  # the limit, from DemoLimits
    assert page.headers["Permissions-Policy"] == "camera=(self), microphone=(), geolocation=()"
    script = client.get("/static/demo.js").get_data(as_text=True)
    assert "/api/live/start" in script and "getUserMedia" in script
    assert client.get("/healthz").json["limits"]["live_max_fps"] == 5.0


# -------------------------------------------------------------------------------------------
# Real server on loopback: Chromium with a fake camera, then load
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_server(predictor):
    """(URL, app) of the default-limits demo on a loopback port."""
    from werkzeug.serving import make_server

    app = create_app({"nyu": predictor})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join(10)


def _http(url, data=None, headers=None):
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST"
                                     if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _write_y4m(path, frames):
    """A YUV4MPEG2 clip (what Chromium's fake camera plays) of uint8 RGB frames (H, W, 3):
    a one-line header, then per frame 'FRAME' and the I420 planes (BT.601 full range)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as clip:
        clip.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
            v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            half = [p.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for p in (u, v)]
            clip.write(b"FRAME\n")
            for plane in (y, *half):
                clip.write(np.clip(plane + 0.5, 0, 255).astype(np.uint8).tobytes())


def _camera_clip(tmp_path):
    """A 320 × 240 clip of the coffee photo panning right, 7 frames at 10 frames/s (Chromium
    loops it; 0.7 s, so frames taken every 0.2 s do not keep meeting the same picture)."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.coffee()).resize((320, 240)))
    path = tmp_path / "camera.y4m"
    _write_y4m(path, [np.roll(photo, 12 * k, axis=1) for k in range(7)])
    return str(path)


def _launch(playwright, *extra):
    if not os.path.exists(CHROMIUM):  # a system package: ./test.sh installs nothing
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it once with "
                    "`sudo apt-get install chromium chromium-driver` (.ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra])


def _frames_seen(page):
    return int(page.get_attribute("#live-fps", "data-frames"))


def _wait_for_frames(page, count, timeout_ms=30_000):
    page.wait_for_function("(n) => Number(document.querySelector('#live-fps').dataset.frames) >= n",
                           arg=count, timeout=timeout_ms)  # a function: CSP forbids eval


# The canvas's pixels and the depth they show, read in one go (no frame can land in between).
SNAPSHOT = """() => {
  const canvas = document.getElementById('live-depth');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  return {width: canvas.width, height: canvas.height, pixels: Array.from(pixels),
          depth: Array.from(live.field.values), frames: live.frames};
}"""


@pytest.mark.slow
def test_browser_camera_streams_live_depth_hover_and_point_cloud(live_server, tmp_path,
                                                                 monkeypatch):
    from playwright.sync_api import sync_playwright

    url, app = live_server
    predictor = app.extensions[EXTENSION].predictors["nyu"]
    predicted = []  # every depth the server's predictor made, in order (one frame at a time)
    original = predictor.predict_image

    def recording(rgb, focal=None, **kwargs):
        predicted.append((rgb.shape, original(rgb, focal=focal, **kwargs)))
        return predicted[-1][1]

    monkeypatch.setattr(predictor, "predict_image", recording)
    clip = _camera_clip(tmp_path)
    with sync_playwright() as playwright:
        browser = _launch(playwright, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={clip}")
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url + "/")
            page.click("#camera-start")
            page.wait_for_selector("body[data-live=on]", timeout=20_000)
            _wait_for_frames(page, 3)
            first = page.evaluate(SNAPSHOT)
            height, width = first["height"], first["width"]
            assert (width, height) == (320, 240)  # the clip's size, within the 640 × 480 limit
            shown = np.array(first["pixels"], np.uint8).reshape(height, width, 4)
            depth = np.array(first["depth"], np.float32).reshape(height, width)
            # It shows the predictor's depth of its frame, coloured exactly as colorize_depth does.
            shape, served = predicted[first["frames"] - 1]
            assert shape == (240, 320, 3)
            np.testing.assert_array_equal(depth, served)
            np.testing.assert_array_equal(shown[..., :3], image_io.colorize_depth(depth, 10.0))
            pictures = set()  # the camera pans: the depth image moves
            for _ in range(8):
                _wait_for_frames(page, _frames_seen(page) + 1)
                pictures.add(page.eval_on_selector("#live-depth", "c => c.toDataURL()"))
                if len(pictures) > 1:
                    break
            assert len(pictures) > 1

            box = page.locator("#live-depth").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            match = re.fullmatch(r"\((\d+), (\d+)\): (\d+\.\d{3}) m", page.text_content("#live-readout"))
            assert match, page.text_content("#live-readout")
            assert abs(int(match[1]) - 160) <= 1 and abs(int(match[2]) - 120) <= 1
            assert 0 < float(match[3]) <= 10.0

            page.evaluate("document.getElementById('live').scrollIntoView()")
            _wait_for_frames(page, _frames_seen(page) + 1)  # the read-out follows the scroll
            shot = _save_screenshot(page.screenshot(), str(tmp_path / "demo_live.png"))
            assert shot.size == (1000, 700)
            docs_copy = os.path.join(ROOT, "docs", "demo_live.png")
            if os.environ.get("BTS_UPDATE_SCREENSHOT") == "1" or not os.path.exists(docs_copy):
                _save_screenshot(page.screenshot(), docs_copy)  # docs/demo.md's picture

            page.click("#live-3d")  # the point cloud follows the camera
            counts = page.evaluate("""async () => {
              const viewer = () => document.getElementById('live-viewer-canvas').btsViewer;
              const seen = [];
              for (let i = 0; i < 30 && seen.length < 2; i++) {
                await new Promise((r) => setTimeout(r, 100));
                const v = viewer();
                if (v && (!seen.length || v.cloud !== seen[seen.length - 1])) seen.push(v.cloud);
              }
              return seen.map((c) => c.count);
            }""")
            assert len(counts) == 2 and min(counts) > 1000, counts  # rebuilt from new frames

            started, frames_before = time.monotonic(), _frames_seen(page)
            page.wait_for_timeout(3000)
            fps = (_frames_seen(page) - frames_before) / (time.monotonic() - started)
            print(f"\nlive: {fps:.1f} frames/s in the page (320x240 camera, tiny model, "
                  f"limit {app.extensions[EXTENSION].limits.live_max_fps:g}), "
                  f"its counter says {page.text_content('#live-fps')}")
            assert 1.0 <= fps <= 5.0 * 1.1  # runs, and never beyond the server's limit

            page.click("#camera-stop")
            page.wait_for_selector("body[data-live=off]")
            deadline = time.monotonic() + 10  # the stop goes as a beacon: poll for it
            while len(app.extensions[EXTENSION].live) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(app.extensions[EXTENSION].live) == 0
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.slow
def test_browser_without_camera_falls_back_to_uploads(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = live_server
    photo = tmp_path / "photo.png"
    Image.fromarray(_rgb(96, 128, seed=2)).save(photo)
    with sync_playwright() as playwright:
        cases = [  # (browser flags, page set-up, body state, message)
            (["--use-fake-device-for-media-stream", "--deny-permission-prompts"], None, "denied",
             "Camera not available: permission refused — upload a photo instead."),
            (["--use-fake-ui-for-media-stream"], None, "unavailable",  # no camera at all
             "Camera not available: no camera found — upload a photo instead."),
            ([], "Object.defineProperty(navigator, 'mediaDevices', {value: undefined})",
             "unavailable", "needs HTTPS"),  # what a page on a plain-HTTP remote host gets
        ]
        for flags, init_script, state, message in cases:
            browser = _launch(playwright, *flags)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda err: errors.append(str(err)))
                if init_script:
                    page.add_init_script(init_script)
                page.goto(url + "/")
                page.click("#camera-start")
                page.wait_for_selector(f"body[data-live={state}]", timeout=20_000)
                assert message in page.text_content("#camera-message")
                assert page.is_hidden("#live")
                page.set_input_files("#file-input", str(photo))  # uploads still work
                page.wait_for_selector("body[data-state=done]", timeout=60_000)
                assert page.eval_on_selector("#depth-image", "i => i.naturalWidth") == 128
                assert not errors, errors
            finally:
                browser.close()


def _vm_rss_mb():
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read())[1]) / 1024


@pytest.mark.slow
def test_loopback_load_4_live_sessions_x_10_frames(live_server):
    url, app = live_server
    demo = app.extensions[EXTENSION]
    sessions, per_session = demo.limits.max_live_sessions, 10
    frames = [_encode(_rgb(48, 64, seed=s), "JPEG") for s in range(sessions)]
    expected = [demo.predictors["nyu"].predict_image(
        uploads.decode_upload(f, max_pixels=307200, max_work_pixels=307200).rgb) for f in frames]
    rss = {"start": _vm_rss_mb(), "peak": 0.0}
    done = threading.Event()

    def sample_rss():
        while not done.wait(0.05):
            rss["peak"] = max(rss["peak"], _vm_rss_mb())

    all_started = threading.Barrier(sessions + 1, timeout=60)

    def run_session(index):
        status, _, body = _http(url + "/api/live/start", b"")
        assert status == 200, body
        info = json.loads(body)
        interval, errors, latencies = info["limits"]["min_interval_ms"] / 1e3, [], []
        try:
            all_started.wait()
            for _ in range(per_session):
                sent = time.monotonic()
                status, headers, body = _http(url + info["urls"]["frame"], frames[index],
                                              {"Content-Type": "image/jpeg"})
                latencies.append(time.monotonic() - sent)
                if status != 200:
                    errors.append((status, body[:200]))
                else:  # this session's own depth, no mix-up
                    np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(48, 64),
                                                  expected[index])
                time.sleep(max(0.0, sent + interval - time.monotonic()))  # the page's pacing
        finally:
            _http(url + info["urls"]["stop"], b"")
        return errors, latencies

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        running = pool.map(run_session, range(sessions))
        all_started.wait()
        extra = _http(url + "/api/live/start", b"")  # while all sessions run: refused
        results = list(running)
    wall = time.monotonic() - started
    done.set()
    sampler.join(5)
    errors = [e for r in results for e in r[0]]
    latencies = sorted(t for r in results for t in r[1])
    assert not errors, errors[:3]
    assert len(latencies) == sessions * per_session
    assert extra[0] == 503 and b"4 live sessions already" in extra[2]
    status, _, body = _http(url + "/healthz")
    assert status == 200 and json.loads(body)["live_sessions"] == 0  # all cleaned up
    growth = max(rss["peak"], _vm_rss_mb()) - rss["start"]
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\nlive load: {sessions} sessions x {per_session} frames (64x48 JPEG, tiny model): "
          f"{len(latencies) / wall:.1f} frames/s in all, p50 {p50 * 1e3:.0f} ms, "
          f"p95 {p95 * 1e3:.0f} ms, server RSS +{growth:.0f} MB")
    assert growth < 200


def test_served_demo_logs_refused_live_frames_but_not_each_answered_one():
    quiet = bts_demo.QuietLiveFrames()

    def logged(line, code):
        record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '"%s" %s %s',
                                   (line, code, "-"), None)
        return quiet.filter(record)

    frame = "POST /api/live/0123456789abcdef0123456789abcdef/frame HTTP/1.1"
    assert not logged(frame, "200")
    assert logged(frame, "429") and logged(frame, "413")
    assert logged("POST /api/live/start HTTP/1.1", "200")
    assert logged("POST /api/predict?format=png HTTP/1.1", "200")

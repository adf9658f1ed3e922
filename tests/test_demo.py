# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Web demo: every route and error path (Flask test client), real Chromium, loopback load test."""
import concurrent.futures
import io
import os
import re
import struct
import threading
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

import bts_demo
from utils.arguments import parse_args
from demo import uploads
from utils.datasets import get_dataset_facts
from demo.app import DemoLimits, create_app
from utils.image_io import read_ply
from tiny_run import TINY, save_run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


# -------------------------------------------------------------------------------------------
# Fixtures: tiny NYU and KITTI run folders, loaded the way bts_demo.py loads them: the folders
# alone (their bts_config.json), no --encoder/--bts_size
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_models")
    for dataset in ("nyu", "kitti"):
        save_run_folder(folder / dataset, dataset, seed=7)
    return {"nyu": str(folder / "nyu"), "kitti": str(folder / "kitti")}


@pytest.fixture(scope="module")
def predictors(checkpoints):
    args = parse_args(groups=bts_demo.DEMO_GROUPS,
                      argv=["--checkpoint_path", checkpoints["nyu"],
                            "--checkpoint_path_kitti", checkpoints["kitti"]])
    return bts_demo.load_predictors(args, bts_demo.requested_checkpoints(args))


@pytest.fixture(scope="module")
def app(predictors):
    return create_app(predictors)


@pytest.fixture
def client(app):
    return app.test_client()


def _rgb(height=48, width=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encode(rgb, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _post(client, data, *, query="", name="photo.png", **fields):
    return client.post(f"/api/predict{query}", data={"image": (io.BytesIO(data), name), **fields},
                       content_type="multipart/form-data")


def _post_sample(client, name):
    response = client.post("/api/predict", data={"sample": name})
    assert response.status_code == 200, response.data[:300]
    return response.json


def _png_header_only(width, height):
    """A PNG whose header claims width × height pixels but carries one tiny IDAT (a 'bomb')."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _assert_json_error(response, status, *words):
    assert response.status_code == status, response.data[:300]
    assert response.is_json and response.json["status"] == status
    for word in words:
        assert word in response.json["error"], response.json["error"]


# -------------------------------------------------------------------------------------------
# Page, health, samples, legend
# -------------------------------------------------------------------------------------------
def test_healthz_lists_both_models_with_their_depth_ranges(client):
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["untrained"] is False and body["default_model"] == "nyu"
    ranges = {m["name"]: (m["max_depth"], m["depth_scale"]) for m in body["models"]}
    assert ranges == {"nyu": (10.0, 1000.0), "kitti": (80.0, 256.0)}


def test_page_has_selector_samples_and_only_local_assets(client):
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'value="nyu"' in html and 'value="kitti"' in html and "untrained-banner" not in html
    assert 'data-sample="motorcycle"' in html and 'id="file-input"' in html
    for asset in ("demo.js", "viewer.js", "demo.css"):
        text = client.get(f"/static/{asset}").get_data(as_text=True)
        assert text and "https://" not in text and "http://" not in text, asset
    assert "https://" not in html and "http://" not in html  # no CDN, no network at run time
    assert "png16" not in html and client.get("/static/png16.js").status_code == 404  # float32 now


def test_untrained_app_shows_a_banner_and_says_so_in_every_answer(predictors):
    client = create_app({"nyu": predictors["nyu"]}, untrained=True).test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'id="untrained-banner"' in page and "untrained" in page
    assert 'value="kitti"' not in page
    response = _post(client, _encode(_rgb()))
    assert response.json["untrained"] is True and response.headers["X-BTS-Untrained"] == "1"
    assert client.get("/healthz").json["untrained"] is True


def test_samples_come_from_scikit_image_and_unknown_names_are_404(client):
    from skimage import data

    names = [s["name"] for s in client.get("/api/samples").json]
    assert names[:2] == ["motorcycle", "coffee"]
    with Image.open(io.BytesIO(client.get("/samples/motorcycle.png").data)) as image:
        np.testing.assert_array_equal(np.asarray(image), data.stereo_motorcycle()[0])
    for bad in ("/samples/nope.png", "/samples/..%2F..%2Fetc%2Fpasswd.png",
                "/samples/../../bts_demo.py", "/legend/..%2Fnyu.png", "/legend/mars.png"):
        assert client.get(bad).status_code == 404, bad


def test_legend_ramps_from_near_to_far_colours(client):
    from utils.image_io import colorize_depth

    with Image.open(io.BytesIO(client.get("/legend/kitti.png").data)) as image:
        ramp = np.asarray(image)
    assert ramp.shape == (16, 256, 3)
    np.testing.assert_array_equal(ramp[0, -1], colorize_depth(np.array([[80.0]]), 80.0)[0, 0])


# -------------------------------------------------------------------------------------------
# POST /api/predict: outputs against the predictor called directly
# -------------------------------------------------------------------------------------------
def test_json_statistics_match_the_predictor_called_directly(client, predictors):
    rgb = _rgb(seed=1)
    body = _post(client, _encode(rgb)).json
    depth = predictors["nyu"].predict_image(rgb)
    assert (body["height"], body["width"], body["model"]) == (48, 64, "nyu")
    assert body["resized"] is False and body["format"] == "PNG"
    np.testing.assert_allclose([body["min_m"], body["max_m"], body["median_m"]],
                               [depth.min(), depth.max(), np.median(depth)], rtol=1e-5)
    assert body["focal_px"] == pytest.approx(518.8579)
    native_cx = get_dataset_facts("nyu").default_intrinsics[2]  # for the 640-wide NYU frame
    assert body["intrinsics"]["cx"] == pytest.approx(native_cx * 64 / 640)


def test_png_format_is_raw_uint16_depth_times_the_dataset_scale(client, predictors):
    rgb = _rgb(seed=2)
    response = _post(client, _encode(rgb), query="?format=png", name="../../etc/my photo.png")
    assert response.headers["X-Depth-Scale"] == "1000" and response.mimetype == "image/png"
    disposition = response.headers["Content-Disposition"]  # the user's name, made safe
    assert disposition.endswith('my_photo_depth.png"')
    assert "/" not in disposition and ".." not in disposition
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.mode == "I;16" and image.size == (64, 48)
        values = np.asarray(image).astype(np.int64)
    expected = np.floor(predictors["nyu"].predict_image(rgb).astype(np.float64) * 1000)
    assert np.abs(values - expected).max() <= 1  # float32 × 1000 vs float64: ±1 at truncation


def test_npy_format_round_trips_float32_metres(client, predictors):
    rgb = _rgb(seed=3)
    depth = np.load(io.BytesIO(_post(client, _encode(rgb), query="?format=npy").data))
    assert depth.dtype == np.float32 and depth.shape == (48, 64)
    np.testing.assert_allclose(depth, predictors["nyu"].predict_image(rgb), rtol=1e-6, atol=1e-6)


def test_float32_depth_is_the_predictors_array_byte_for_byte(predictors, monkeypatch):
    known = np.linspace(0.0, 10.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    known[0, 1], known[5, 7] = np.float32(1 / 3), np.float32(np.pi)  # bits a uint16 PNG would lose
    monkeypatch.setattr(predictors["nyu"], "predict_image", lambda rgb, focal=None: known.copy())
    client = create_app({"nyu": predictors["nyu"]}).test_client()
    body = _post(client, _encode(_rgb())).json
    response = client.get(body["urls"]["float32"])
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    assert (response.headers["X-Depth-Width"], response.headers["X-Depth-Height"]) == ("64", "48")
    assert response.data == known.astype("<f4").tobytes()  # little-endian, row major, H × W
    assert "Content-Disposition" not in response.headers  # the page reads it; not a download
    decoded = np.frombuffer(response.data, "<f4").reshape(body["height"], body["width"])
    np.testing.assert_array_equal(decoded, np.load(io.BytesIO(client.get(body["urls"]["npy"]).data)))


def test_float32_format_is_the_same_depth_as_the_npy_of_that_result(client, predictors):
    rgb = _rgb(seed=11)
    response = _post(client, _encode(rgb), query="?format=float32", name="cat.png")
    assert response.headers["Content-Disposition"].endswith('cat_depth.f32"')
    depth = np.frombuffer(response.data, "<f4").reshape(48, 64)
    npy = client.get(f"/api/result/{response.headers['X-Result-Id']}/depth.npy").data
    np.testing.assert_array_equal(depth, np.load(io.BytesIO(npy)))
    np.testing.assert_allclose(depth, predictors["nyu"].predict_image(rgb), rtol=1e-6, atol=1e-6)


def test_ply_points_lie_on_their_pixel_rays_at_the_predicted_depth(client, tmp_path):
    rgb = _rgb(seed=4)
    body = _post(client, _encode(rgb)).json
    (tmp_path / "cloud.ply").write_bytes(client.get(body["urls"]["ply"]).data)
    points, colours = read_ply(str(tmp_path / "cloud.ply"))
    depth = np.load(io.BytesIO(client.get(body["urls"]["npy"]).data))
    k = body["intrinsics"]
    rows, cols = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)
    np.testing.assert_allclose(points[:, 0], ((cols - k["cx"]) * depth / k["fx"]).ravel(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(colours, rgb.reshape(-1, 3))


def test_motorcycle_sample_is_scored_against_its_stereo_ground_truth(client):
    from skimage import data

    body = _post_sample(client, "motorcycle")
    assert (body["width"], body["height"]) == (741, 500)
    disparity = data.stereo_motorcycle()[2].astype(np.float64)
    gt = 994.978 * 0.193001 / (disparity + 31.086)  # Middlebury calibration, metres
    valid = np.isfinite(gt) & (gt > 1e-3) & (gt < 10.0)
    pred = np.clip(np.load(io.BytesIO(client.get(body["urls"]["npy"]).data)), 1e-3, 10.0)[valid]
    gt = gt[valid]
    scored = body["ground_truth"]
    assert scored["valid_pixels"] == valid.sum()
    ratio = np.maximum(gt / pred, pred / gt)
    assert scored["metrics"]["abs_rel"] == pytest.approx(np.mean(np.abs(gt - pred) / gt), rel=1e-4)
    assert scored["metrics"]["d1"] == pytest.approx(np.mean(ratio < 1.25), abs=1e-6)
    scaled = np.clip(pred * np.median(gt) / np.median(pred), 1e-3, 10.0)
    assert scored["median_scaled"]["abs_rel"] == pytest.approx(
        np.mean(np.abs(gt - scaled) / gt), rel=1e-4)


def test_samples_without_ground_truth_and_bad_sample_requests(client):
    body = _post_sample(client, "chelsea")
    assert body["ground_truth"] is None and (body["width"], body["height"]) == (451, 300)
    _assert_json_error(client.post("/api/predict", data={"sample": "../../etc/passwd"}), 400,
                       "no sample named")
    _assert_json_error(_post(client, _encode(_rgb(16, 16)), sample="coffee"), 400, "not both")


def test_kitti_model_is_selected_by_the_model_field(client, predictors):
    rgb = _rgb(seed=5)
    response = _post(client, _encode(rgb), query="?format=npy", model="kitti")
    assert response.headers["X-Depth-Scale"] == "256" and response.headers["X-Max-Depth"] == "80"
    np.testing.assert_allclose(np.load(io.BytesIO(response.data)),
                               predictors["kitti"].predict_image(rgb), rtol=1e-6, atol=1e-6)


def test_given_focal_scales_kitti_depth(client, predictors):
    rgb = _rgb(seed=6)
    def depth_at(focal):
        return np.load(io.BytesIO(_post(client, _encode(rgb), query="?format=npy", model="kitti",
                                        focal=str(focal)).data))

    base, double = depth_at(715.0873), depth_at(2 * 715.0873)
    np.testing.assert_allclose(double, 2 * base, rtol=1e-5)  # KITTI output ∝ focal (design §1.9)


def test_colormap_and_input_downloads_match_the_shared_writers(client):
    from utils.image_io import colorize_depth

    rgb = _rgb(seed=7)
    body = _post(client, _encode(rgb, "JPEG", quality=100, subsampling=0)).json
    assert body["format"] == "JPEG"
    depth = np.load(io.BytesIO(client.get(body["urls"]["npy"]).data))
    with Image.open(io.BytesIO(client.get(body["urls"]["colormap"]).data)) as image:
        np.testing.assert_array_equal(np.asarray(image), colorize_depth(depth, 10.0))
    with Image.open(io.BytesIO(client.get(body["urls"]["input"]).data)) as image:
        assert np.abs(np.asarray(image).astype(int) - rgb).mean() < 8  # JPEG q100 round trip


def test_result_links_serve_the_same_depth_as_a_direct_png_request(client):
    data = _encode(_rgb(seed=8))
    body = _post(client, data).json
    assert client.get(body["urls"]["png"]).data == _post(client, data, query="?format=png").data
    for bad in (f"/api/result/{'0' * 32}/depth.png", f"/api/result/{body['id']}/secret.txt",
                "/api/result/..%2F..%2Fetc/depth.png", f"/api/result/{body['id']}/..%2Fdepth.png"):
        _assert_json_error(client.get(bad), 404)


def test_large_uploads_are_parsed_in_memory_never_spooled_to_disk(client, monkeypatch):
    import werkzeug.formparser

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(werkzeug.formparser, "TemporaryFile", no_disk, raising=False)
    data = _encode(_rgb(400, 600, seed=10))  # ~720 kB of noise: werkzeug spools beyond 500 kB
    assert len(data) > 500 * 1024
    assert _post(client, data, query="?format=npy").status_code == 200


def test_old_results_are_dropped_beyond_the_cache_size(predictors):
    client = create_app({"nyu": predictors["nyu"]},
                        limits=DemoLimits(cache_entries=2)).test_client()
    ids = [_post(client, _encode(_rgb(16, 16, seed=i))).json["id"] for i in range(3)]
    assert client.get(f"/api/result/{ids[0]}/depth.npy").status_code == 404
    assert all(client.get(f"/api/result/{i}/depth.npy").status_code == 200 for i in ids[1:])


def test_large_images_are_shrunk_and_the_focal_with_them(predictors):
    client = create_app({"nyu": predictors["nyu"]}, limits=DemoLimits(max_work_pixels=1536)
                        ).test_client()
    body = _post(client, _encode(_rgb(64, 96))).json
    assert (body["height"], body["width"]) == uploads.working_size(64, 96, 1536) == (32, 48)
    assert body["resized"] is True and (body["original_width"], body["original_height"]) == (96, 64)
    assert body["focal_px"] == pytest.approx(518.8579 * 48 / 96)


def test_exif_rotated_jpeg_is_decoded_upright():
    rgb = _rgb(32, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    decoded = uploads.decode_upload(_encode(rgb, "JPEG", exif=exif.tobytes()),
                                    max_pixels=10_000, max_work_pixels=10_000)
    assert decoded.rgb.shape == (64, 32, 3) and decoded.scale == 1.0


def test_16bit_grey_png_is_scaled_to_8_bits_not_clipped():
    grey16 = np.array([[0, 32768, 65535]], np.uint16)
    decoded = uploads.decode_upload(_encode(grey16), max_pixels=100, max_work_pixels=100)
    np.testing.assert_array_equal(decoded.rgb[0, :, 0], [0, 128, 255])
    assert decoded.rgb.shape == (1, 3, 3)


def test_working_size_keeps_the_aspect_within_the_pixel_budget():
    assert uploads.working_size(480, 640, 307200) == (480, 640)
    height, width = uploads.working_size(3000, 4000, 1280 * 720)
    assert height * width <= 1280 * 720 and abs(width / height - 4 / 3) < 0.01


# -------------------------------------------------------------------------------------------
# Error paths: JSON with the right status code
# -------------------------------------------------------------------------------------------
def test_non_image_content_is_415_whatever_its_name(client):
    _assert_json_error(_post(client, b"#!/bin/sh\necho not a picture\n" * 20, name="cat.jpg"),
                       415, "not an image")
    _assert_json_error(_post(client, b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n",
                             name="x.eps"), 415)  # EPS would start Ghostscript: not accepted


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_400(client, fmt):
    data = _encode(_rgb(64, 96, seed=9), fmt)
    _assert_json_error(_post(client, data[:len(data) // 2]), 400, "truncated")


def test_empty_file_and_missing_field_are_400(client):
    _assert_json_error(_post(client, b""), 400, "empty")
    _assert_json_error(client.post("/api/predict", data={"picture": (io.BytesIO(b"x"), "a.png")}),
                       400, "'image'")


@pytest.mark.parametrize("query,fields,words", [
    ("?format=gif", {}, "format must be one of"),
    ("", {"model": "mars"}, "model must be one of"),
    ("", {"focal": "-3"}, "positive"),
    ("", {"focal": "wide"}, "number of pixels"),
])
def test_bad_parameters_are_400(client, query, fields, words):
    _assert_json_error(_post(client, _encode(_rgb(16, 16)), query=query, **fields), 400, words)


def test_body_over_the_upload_limit_is_413(predictors):
    client = create_app({"nyu": predictors["nyu"]},
                        limits=DemoLimits(max_upload_bytes=4096)).test_client()
    _assert_json_error(_post(client, os.urandom(8192)), 413, "larger than")


def test_too_many_pixels_is_413_before_decoding(client, predictors):
    # 9000 × 9000 = 81 Mpx: over our 40 Mpx limit, under Pillow's own bomb threshold.
    _assert_json_error(_post(client, _png_header_only(9000, 9000)), 413, "81,000,000 pixels")
    # 100000 × 100000: Pillow refuses it at open (DecompressionBombError); still 413.
    _assert_json_error(_post(client, _png_header_only(100_000, 100_000)), 413, "pixels")
    small = create_app({"nyu": predictors["nyu"]}, limits=DemoLimits(max_pixels=1000)).test_client()
    _assert_json_error(_post(small, _encode(_rgb(40, 40))), 413, "1,600 pixels")


@pytest.mark.parametrize("method,path", [("get", "/api/predict"), ("put", "/api/predict"),
                                         ("delete", "/api/predict"), ("post", "/healthz"),
                                         ("post", "/")])
def test_wrong_method_is_405(client, method, path):
    _assert_json_error(getattr(client, method)(path), 405, "not allowed")


def test_unexpected_failure_is_a_one_line_500(client, predictors, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated kernel failure\nsecond line")

    monkeypatch.setattr(predictors["nyu"], "predict_image", broken)
    response = _post(client, _encode(_rgb(16, 16)))
    _assert_json_error(response, 500, "RuntimeError: simulated kernel failure")
    assert "second line" not in response.json["error"] and "Traceback" not in response.json["error"]


def test_requests_beyond_the_concurrency_cap_wait_then_get_503(predictors, monkeypatch):
    release = threading.Event()
    original = predictors["nyu"].predict_image

    def slow(*args, **kwargs):
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictors["nyu"], "predict_image", slow)
    app = create_app({"nyu": predictors["nyu"]},
                     limits=DemoLimits(max_concurrent=1, queue_timeout_s=0.2))
    data = _encode(_rgb(16, 16))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(lambda: _post(app.test_client(), data).status_code)
        time.sleep(0.3)  # the first request now holds the only slot
        _assert_json_error(_post(app.test_client(), data), 503, "busy")
        release.set()
        assert first.result(timeout=30) == 200


# -------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------
def test_cli_without_checkpoint_refuses_with_a_plain_message(capsys):
    assert bts_demo.main([]) == 2
    assert "no model to serve" in capsys.readouterr().err


def test_cli_rejects_a_kitti_pair_and_a_missing_checkpoint(capsys, tmp_path):
    with pytest.raises(SystemExit):
        bts_demo.main(["--dataset", "kitti", "--checkpoint_path", "a.keras",
                       "--checkpoint_path_kitti", "b.keras"])
    assert "--checkpoint_path_kitti" in capsys.readouterr().err
    assert bts_demo.main([*TINY, "--checkpoint_path", str(tmp_path / "nope.keras")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_allow_untrained_serves_a_random_model_behind_a_banner(monkeypatch):
    served = {}
    monkeypatch.setattr(bts_demo, "serve", lambda app, host, port: served.update(
        app=app, host=host, port=port))
    assert bts_demo.main([*TINY, "--allow_untrained"]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 5000)  # loopback by default
    page = served["app"].test_client().get("/").get_data(as_text=True)
    assert 'id="untrained-banner"' in page


# -------------------------------------------------------------------------------------------
# Real server on loopback: Chromium, then load
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_url(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def _fetch(url, data=None, headers=None, timeout=60):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def _save_screenshot(png: bytes, path: str) -> Image.Image:
    """Write a small screenshot (256 colours, optimised PNG, atomically); returns it.

    docs/demo_screenshot.png (the README's) is rewritten only when missing or when
    BTS_UPDATE_SCREENSHOT=1, so a test run leaves the committed file alone.
    """
    from utils.io import atomic_write_bytes

    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        small.save(buffer, "PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    return small


@pytest.mark.slow
def test_browser_upload_shows_float32_depth_hover_and_downloads(server_url, tmp_path):
    if not os.path.exists(CHROMIUM):  # a system package: ./test.sh installs nothing (README "Tests")
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it once with "
                    "`sudo apt-get install chromium chromium-driver` (.ci/run does)")
    from playwright.sync_api import sync_playwright
    from skimage import data

    photo = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(photo, quality=92)  # 600 × 400
    (tmp_path / "notes.png").write_text("not an image at all\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server_url + "/")
            page.set_input_files("#file-input", str(photo))
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            size = page.eval_on_selector("#depth-image", "i => [i.naturalWidth, i.naturalHeight]")
            assert size == [600, 400]
            box = page.locator("#depth-image").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            readout = page.text_content("#hover-readout")  # "(x, y): 1.234 m"
            match = re.fullmatch(r"\((\d+), (\d+)\): (\d+\.\d{3}) m", readout)
            assert match, readout
            x, y, metres = int(match[1]), int(match[2]), float(match[3])
            assert abs(x - 300) <= 1 and abs(y - 200) <= 1  # the middle of the 600 × 400 map
            href = page.get_attribute("#download-png", "href")  # /api/result/<id>/depth.png
            status, raw = _fetch(server_url + href.replace("depth.png", "depth.f32"))
            depth = np.frombuffer(raw, "<f4").reshape(400, 600)  # what the page read
            assert status == 200 and metres == pytest.approx(float(depth[y, x]), abs=5.01e-4)
            assert "value / 1000" in page.text_content("#png-scale")
            status, png = _fetch(server_url + href)
            with Image.open(io.BytesIO(png)) as depth_png:
                assert status == 200 and depth_png.mode == "I;16" and depth_png.size == (600, 400)
                assert abs(int(np.asarray(depth_png)[y, x]) - depth[y, x] * 1000.0) <= 1
            page.click("#view-3d")  # the WebGL viewer draws without a script error
            page.wait_for_timeout(300)
            page.evaluate("window.scrollTo(0, 0)")
            shot = _save_screenshot(page.screenshot(), str(tmp_path / "demo_screenshot.png"))
            assert shot.size == (1000, 700)
            readme_copy = os.path.join(ROOT, "docs", "demo_screenshot.png")
            if os.environ.get("BTS_UPDATE_SCREENSHOT") == "1" or not os.path.exists(readme_copy):
                _save_screenshot(page.screenshot(), readme_copy)  # the README's picture
            page.click("button[data-sample=motorcycle]")  # bundled sample, scored against its GT
            page.wait_for_selector("#stats:has-text('ground truth')", timeout=60_000)
            assert page.eval_on_selector("#depth-image", "i => i.naturalWidth") == 741
            page.set_input_files("#file-input", str(tmp_path / "notes.png"))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            message = page.text_content("#error")
            assert "not an image" in message and "(HTTP 415)" in message
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.slow
def test_loopback_load_20_clients_x_10_requests_without_errors(server_url, predictors):
    clients, per_client = 20, 10
    body_parts, expected = [], []
    boundary = "bts-demo-load-test"
    for seed in range(clients):
        rgb = _rgb(32, 48, seed=seed)
        image = _encode(rgb)
        expected.append(np.floor(predictors["nyu"].predict_image(rgb).astype(np.float64) * 1000))
        body_parts.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                           f"filename=\"x{seed}.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
                          + image + f"\r\n--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def client_run(seed):
        latencies = []
        for _ in range(per_client):
            started = time.perf_counter()
            status, data = _fetch(server_url + "/api/predict?format=png", body_parts[seed], headers)
            latencies.append(time.perf_counter() - started)
            assert status == 200
            with Image.open(io.BytesIO(data)) as depth_png:  # this client's depth, no mix-up
                assert np.abs(np.asarray(depth_png).astype(np.int64) - expected[seed]).max() <= 1
        return latencies

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = sorted(sum(pool.map(client_run, range(clients)), []))
    wall = time.perf_counter() - started
    assert len(latencies) == clients * per_client
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\nload: {clients} clients x {per_client} requests (32x48 PNG, tiny model): "
          f"{len(latencies) / wall:.1f} req/s, p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms")


def test_a_nyu_model_in_the_kitti_slot_is_one_line_naming_that_flag(checkpoints, capsys):
    assert bts_demo.main(["--checkpoint_path", checkpoints["nyu"],
                          "--checkpoint_path_kitti", checkpoints["nyu"]]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error: --checkpoint_path_kitti is not a KITTI model: " in lines[0]
    assert "Traceback" not in lines[0]

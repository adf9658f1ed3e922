# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``bts_test.py --video``: depth for video files (bts_video.py, utils/video.py), through the CLI.

The input clips are written here with OpenCV: 10 frames of 50x70 (not a multiple of 32: padded as
images are) at 12.5 fps, FFV1 in .avi (lossless). Every reference is computed on the frames as
OpenCV decodes them, so the claims hold for lossy inputs too. Claims: the depth video keeps the
frame count, frame rate and panel size; per-frame .npy/PNG equal ``DepthPredictor.predict_image``
of the decoded frame exactly at --batch_size 1 (within the batched tolerance of
tests/test_batched_eval.py at 4); the depth panel is ``colorize_depth`` over the fixed [0, max_depth]
(exact in a lossless .mkv, within codec tolerance in the default mp4v .mp4); the legend is the
same in every frame and below the panels; bad inputs are one line and leave nothing; Ctrl-C keeps
a playable video of the frames written.
"""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

import bts_model
import bts_predict
import bts_test
from conftest import tiny_model_config, write_random_rgb
from tiny_run import TINY
from utils import video
from utils.image_io import colorize_depth, depth_to_uint16

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH, FRAMES, FPS = 50, 70, 10, 12.5


def _synthetic_frames(count, height, width, seed=0):
    """Moving colour gradients with a little noise: RGB uint8 frames that differ from each other."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    return [np.clip(np.stack([(xx * 3 + 9 * i) % 256, yy * 255 // height, (xx + yy + 20 * i) % 256], -1)
                    + rng.integers(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8) for i in range(count)]


def write_clip(path, frames, fps=FPS, codec="FFV1"):
    """Frames (RGB) to a video with OpenCV directly (the test's own writer, not utils.video's)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def decoded(path):
    """(RGB frames as OpenCV decodes them, fps, frame count the container reports)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return frames, fps, count


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(7)
    path = str(tmp_path_factory.mktemp("models") / "nyu.weights.h5")
    bts_model.build_bts_model(tiny_model_config("nyu")).save_weights(path)
    return path


@pytest.fixture(scope="module")
def predictor(weights):
    """The one predict path on the same weights, built as bts_test.py builds it."""
    import bts_trainer

    model, _ = bts_predict.load_model(weights, tiny_model_config("nyu"),
                                      model_ops=bts_trainer.resolve_model_ops("auto"))
    return bts_predict.DepthPredictor(model, "nyu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.avi", _synthetic_frames(FRAMES, HEIGHT, WIDTH))


class Calls(list):
    """Batch sizes ``DepthPredictor.predict_batch`` was called with; ``focals``: its focal lengths."""

    focals: list


@pytest.fixture
def calls(monkeypatch):
    seen = Calls()
    seen.focals = []
    original = bts_predict.DepthPredictor.predict_batch

    def spy(self, images, focal=None, **kw):
        seen.append(int(np.shape(images)[0]))
        seen.focals += list(np.asarray(focal, np.float32).reshape(-1))
        return original(self, images, focal, **kw)

    monkeypatch.setattr(bts_predict.DepthPredictor, "predict_batch", spy)
    return seen


def _main(weights, *argv):
    return bts_test.main(TINY + ["--dataset", "nyu", "--checkpoint_path", weights, *map(str, argv)])


# ------------------------------------------------------------------ the CLI, end to end
def test_video_frames_equal_single_image_predictions_exactly(tmp_path, weights, predictor, clip, calls):
    out, mkv = tmp_path / "out", tmp_path / "depth.mkv"
    assert _main(weights, "--video", clip, "--save_video", mkv, "--save_png", "--save_npy",
                 "--output_directory", out) == 0
    assert calls == [1] * FRAMES and calls.focals == [np.float32(predictor.default_focal)] * FRAMES
    inputs, _, _ = decoded(clip)
    frames, fps, count = decoded(mkv)
    assert len(frames) == count == FRAMES and fps == pytest.approx(FPS, abs=1e-3)
    composer = video.FrameComposer(HEIGHT, WIDTH, predictor.max_depth)
    assert frames[0].shape == (composer.size[1], composer.size[0], 3) and composer.size[0] == 2 * WIDTH
    names = [f"clip_{i:06d}" for i in range(FRAMES)]
    assert sorted(os.listdir(out)) == ["npy", "raw"]
    assert sorted(os.listdir(out / "npy")) == [n + ".npy" for n in names]
    for rgb, frame, name in zip(inputs, frames, names):
        expected = predictor.predict_image(rgb)  # the frame as OpenCV decodes it
        np.testing.assert_array_equal(np.load(out / "npy" / f"{name}.npy"), expected)
        np.testing.assert_array_equal(np.asarray(Image.open(out / "raw" / f"{name}.png")),
                                      depth_to_uint16(expected, 1000.0))
        # FFV1 is lossless: the panels and the legend exactly as composed, on the fixed scale.
        np.testing.assert_array_equal(frame[:HEIGHT, :WIDTH], rgb)
        np.testing.assert_array_equal(frame[:HEIGHT, WIDTH:], colorize_depth(expected, predictor.max_depth))
        np.testing.assert_array_equal(frame[HEIGHT:], composer.legend)
    assert not glob.glob(str(tmp_path / ".*"))  # no .part video, no staging folder left


def test_default_mp4_keeps_count_rate_and_size_and_batches_frames(tmp_path, weights, predictor, clip, calls):
    out = tmp_path / "out"
    assert _main(weights, "--video", clip, "--batch_size", "4", "--output_directory", out) == 0
    assert calls == [4, 4, 2]
    assert os.listdir(out) == ["clip_depth.mp4"]  # no --save_* flag: the depth video alone
    inputs, _, _ = decoded(clip)
    frames, fps, count = decoded(out / "clip_depth.mp4")
    assert len(frames) == count == FRAMES and fps == pytest.approx(FPS, abs=1e-3)
    composer = video.FrameComposer(HEIGHT, WIDTH, predictor.max_depth)
    assert frames[0].shape == (composer.size[1], composer.size[0], 3)
    for rgb, frame in zip(inputs, frames):  # mp4v is lossy; measured mean |diff| 3.2 (depth), 5.3 (noisy input)
        expected = colorize_depth(predictor.predict_image(rgb), predictor.max_depth)
        error = np.abs(frame[:HEIGHT, WIDTH:].astype(np.int16) - expected)
        assert error.mean() < 8 and np.percentile(error, 90) < 20
        assert np.abs(frame[:HEIGHT, :WIDTH].astype(np.int16) - rgb).mean() < 8


def test_batched_per_frame_files_stay_within_the_batched_tolerance(tmp_path, weights, predictor, clip, calls):
    out = tmp_path / "out"
    assert _main(weights, "--video", clip, "--batch_size", "4", "--save_npy", "--save_png", "--focal", "300",
                 "--output_directory", out) == 0
    assert calls == [4, 4, 2] and calls.focals == [300.0] * FRAMES  # --focal reaches every frame
    assert sorted(os.listdir(out)) == ["npy", "raw"]  # --save_* typed: no depth video
    inputs, _, _ = decoded(clip)
    for i, rgb in enumerate(inputs):
        expected = predictor.predict_image(rgb)
        assert np.abs(np.load(out / "npy" / f"clip_{i:06d}.npy") - expected).max() <= 1e-4
        raw = np.asarray(Image.open(out / "raw" / f"clip_{i:06d}.png"), np.int64)
        assert np.abs(raw - depth_to_uint16(expected, 1000.0)).max() <= 1  # one PNG step


def test_image_path_with_a_video_predicts_images_and_the_video(tmp_path, weights, clip):
    write_random_rgb(str(tmp_path / "photo.png"), 40, 60, seed=1)
    out = tmp_path / "out"
    assert _main(weights, "--image_path", tmp_path / "photo.png", clip, "--output_directory", out,
                 "--video_layout", "depth") == 0
    # the image: raw and colour PNGs (the image default); the video: its depth video alone
    assert sorted(os.listdir(out)) == ["clip_depth.mp4", "cmap", "raw"]
    assert os.listdir(out / "raw") == ["photo.png"]
    frames, _, count = decoded(out / "clip_depth.mp4")
    composer = video.FrameComposer(HEIGHT, WIDTH, 10.0, "depth")
    assert len(frames) == count == FRAMES and composer.size[0] == WIDTH
    assert frames[0].shape == (composer.size[1], WIDTH, 3)


# ------------------------------------------------------------------ the frame: fixed scale, legend
def test_one_depth_has_one_colour_in_frames_of_different_depth_ranges():
    composer = video.FrameComposer(HEIGHT, WIDTH, 10.0)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    near = np.linspace(1.0, 2.0, HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH)
    far = np.linspace(1.0, 9.0, HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH)
    near[3, 4] = far[20, 30] = 1.5
    a, b = composer.compose(rgb, near), composer.compose(rgb, far)
    np.testing.assert_array_equal(a[3, WIDTH + 4], b[20, WIDTH + 30])  # 1.5 m: one colour
    np.testing.assert_array_equal(a[3, WIDTH + 4], colorize_depth(np.float32([1.5]), 10.0)[0])
    # per-frame min-max scaling would stretch 'near' over the whole map; the fixed one does not
    assert not np.array_equal(a[HEIGHT - 1, 2 * WIDTH - 1], b[HEIGHT - 1, 2 * WIDTH - 1])
    np.testing.assert_array_equal(a[HEIGHT:], b[HEIGHT:])  # the legend: the same in every frame


def test_legend_sits_below_the_panels_with_the_colour_ramp_of_the_scale():
    composer = video.FrameComposer(480, 640, 10.0)
    legend = composer.legend
    assert composer.size == (1280, 480 + legend.shape[0]) and composer.size[1] % 2 == 0
    assert not legend[:, :640].any()  # under the input panel: black
    ramp_row = legend[np.argmax(legend[:, 640:].any(axis=(1, 2)))][640:]
    lit = np.flatnonzero(ramp_row.any(axis=1))
    first, last = ramp_row[lit[0]], ramp_row[lit[-1]]
    np.testing.assert_array_equal(first, colorize_depth(np.float32([0.01]), 10.0)[0])  # near end
    np.testing.assert_array_equal(last, colorize_depth(np.float32([10.0]), 10.0)[0])  # far end
    white = (legend[:, 640:] == 255).all(axis=2)
    assert white.any(axis=0)[[lit[0], lit[-1]]].all()  # ticks at 0 and max


def test_odd_sizes_keep_every_panel_pixel_through_a_lossless_video(tmp_path):
    height, width = 51, 71  # FFmpeg cuts odd sizes: the composer makes the frame even
    rgb = _synthetic_frames(1, height, width)[0]
    depth = np.linspace(0.5, 9.5, height * width, dtype=np.float32).reshape(height, width)
    for layout in video.LAYOUTS:
        composer = video.FrameComposer(height, width, 10.0, layout)
        assert composer.size[0] % 2 == 0 and composer.size[1] % 2 == 0
        path = str(tmp_path / f"{layout}.mkv")
        with video.AtomicVideoWriter(path, 25.0, *composer.size) as writer:
            writer.write(composer.compose(rgb, depth))
        (frame,), _, _ = decoded(path)
        left = composer.depth_left
        np.testing.assert_array_equal(frame[:height, left:left + width], colorize_depth(depth, 10.0))


def test_frames_are_rgb_on_both_sides_of_opencv(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    path = str(tmp_path / "red.mkv")
    with video.AtomicVideoWriter(path, 10.0, 16, 16) as writer:
        writer.write(red)
    ok, bgr = cv2.VideoCapture(path, cv2.CAP_FFMPEG).read()
    assert ok and bgr[..., 2].min() == 255 and not bgr[..., :2].any()  # OpenCV's own order: BGR
    (frame,) = list(video.read_frames(path))
    np.testing.assert_array_equal(frame, red)


def test_unknown_frame_rate_falls_back_to_30_fps():
    for fps in (0.0, float("nan"), -1.0):
        assert video.VideoInfo("x.mp4", fps, 10, 8, 8).output_fps == video.DEFAULT_FPS == 30.0
    assert video.VideoInfo("x.mp4", 12.5, 10, 8, 8).output_fps == 12.5


def test_a_discarded_writer_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "v.mp4"
    with pytest.raises(RuntimeError):
        with video.AtomicVideoWriter(str(target), 10.0, 16, 16) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("the run failed")
    assert os.listdir(tmp_path) == []  # neither the .part file nor the folders made for it


# ------------------------------------------------------------------ bad input
def _bad(tmp_path):
    """Inputs that are not usable videos: name -> path."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "text.mp4").write_text("hello, not a video\n" * 10)
    empty = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"),
                            10.0, (64, 48))
    empty.release()  # a valid AVI header, no frame
    data = bytearray((write_clip(tmp_path / "ok.avi", _synthetic_frames(3, 48, 64), codec="MJPG")).read_bytes())
    (tmp_path / "codec.avi").write_bytes(bytes(data).replace(b"MJPG", b"ZZZZ"))  # a codec nobody has
    start = data.find(b"movi")
    while (chunk := data.find(b"00dc", start)) >= 0:  # frames present, their JPEG data zeroed
        size = int.from_bytes(data[chunk + 4:chunk + 8], "little")
        data[chunk + 8:chunk + 8 + size] = bytes(size)
        start = chunk + 8 + size
    (tmp_path / "broken.avi").write_bytes(bytes(data))
    return {"text": tmp_path / "text.mp4", "missing": tmp_path / "missing.mp4", "empty": tmp_path / "empty.avi",
            "codec": tmp_path / "codec.avi", "broken": tmp_path / "broken.avi"}


@pytest.mark.parametrize("case, message", [
    ("text", "is not a video OpenCV can open"),
    ("missing", "does not exist"),
    ("empty", "holds no frames"),
    ("codec", "is not a video OpenCV can open (not a video file, or a container or codec"),
    ("broken", "its first frame cannot be decoded"),
])
def test_a_bad_video_is_one_line_naming_it_and_leaves_nothing(tmp_path, weights, capsys, case, message):
    source = _bad(tmp_path / "in")[case]
    out = tmp_path / "out"
    assert _main(weights, "--video", source, "--save_png", "--output_directory", out) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bts_test.py: error: --video {str(source)!r}"), lines
    assert message in lines[0] and not out.exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in: a read-only tmpfs as root (who may write anywhere else)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("root without mount: no read-only folder to test")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_unwritable_depth_video_is_one_line_before_any_inference(tmp_path, weights, clip, capsys, calls,
                                                                    read_only_folder):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [(tmp_path / "nowhere" / "d.mp4", "the folder"), (blocker / "d.mp4", "is a file, not a folder"),
             (read_only_folder / "d.mp4", "cannot be written"),
             (tmp_path / "d.webm", "OpenCV cannot write .webm; use .mp4, .m4v, .mov, .avi, .mkv")]
    for target, message in cases:
        out = tmp_path / "out"
        assert _main(weights, "--video", clip, "--save_video", target, "--save_npy",
                     "--output_directory", out) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"bts_test.py: error: --save_video {str(target)!r}")
        assert message in lines[0], lines
        assert not out.exists() and not os.path.exists(target)
    assert calls == []  # refused before the model ran
    assert sorted(os.listdir(tmp_path)) == ["a_file", "read_only"] and os.listdir(read_only_folder) == []


def test_an_existing_depth_video_is_kept_unless_overwrite(tmp_path, weights, clip, capsys):
    target = tmp_path / "d.mp4"
    target.write_bytes(b"an earlier result")
    assert _main(weights, "--video", clip, "--save_video", target) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"an earlier result"
    assert _main(weights, "--video", clip, "--save_video", target, "--overwrite") == 0
    assert decoded(target)[2] == FRAMES


def test_a_bad_video_fails_in_one_stderr_line_without_tensorflow(tmp_path):
    source = _bad(tmp_path)["text"]
    code = ("import sys, bts_test\nrc = bts_test.main(sys.argv[1:])\n"
            "print('tensorflow' in sys.modules)\nsys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "--checkpoint_path", str(tmp_path), "--video",
                           str(source)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout.strip() == "False"
    assert done.stderr == (f"bts_test.py: error: --video {str(source)!r} is not a video OpenCV can open "
                           "(not a video file, or a container or codec this OpenCV build cannot read)\n")


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_keeps_a_playable_video_of_the_frames_written(tmp_path, weights):
    source = write_clip(tmp_path / "long.avi", _synthetic_frames(400, 48, 64), fps=25.0, codec="MJPG")
    out, target = tmp_path / "out", tmp_path / "long_depth.mp4"
    command = [sys.executable, "bts_test.py", *TINY, "--checkpoint_path", weights, "--video", str(source),
               "--save_video", str(target), "--save_npy", "--output_directory", str(out)]
    # SIGINT as a terminal sends it (a shell's background job would start with it ignored)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 50
    while len(glob.glob(str(tmp_path / ".out.partial-*" / "npy" / "*.npy"))) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    found = re.fullmatch(rf"bts_test.py: interrupted after (\d+) of 400 frames; wrote {re.escape(str(target))} "
                         rf"and {re.escape(str(out))} \((\d+) frames\)", last)
    assert found and found.group(1) == found.group(2), last
    written = int(found.group(1))
    frames, fps, count = decoded(target)  # playable: OpenCV opens and decodes every frame
    assert 2 <= written < 400 and len(frames) == count == written and fps == pytest.approx(25.0)
    assert len(os.listdir(out / "npy")) == written  # the per-frame files of those frames, committed
    assert sorted(os.listdir(tmp_path)) == ["long.avi", "long_depth.mp4", "out"]  # no .part, no staging


def test_save_video_with_two_videos_or_video_with_image_path_is_a_flag_error(tmp_path, clip, capsys):
    for argv, expected in [
        (["--image_path", str(clip), str(tmp_path / "b.mp4"), "--save_video", "d.mp4"],
         "bts_test.py: error: --save_video names one file, for one video; 2 given (leave it out: each "
         "video is written to <output_directory>/<video name>_depth.mp4)"),
        (["--video", str(clip), "--image_path", str(clip)],
         "bts_test.py: error: --video and --image_path: give one of them (--image_path takes video files too)"),
    ]:
        with pytest.raises(SystemExit) as stop:
            bts_test.main(["--checkpoint_path", str(tmp_path), *argv])
        assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [expected]

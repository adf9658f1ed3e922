# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``bts_test.py --batch_size N``: batched evaluation and prediction against batch 1, through the CLI.

Two claims, each checked on synthetic NYU and KITTI lists (KITTI with the KB crop over mixed raw
frame sizes, and without it, where frames of different sizes must not share a batch):

* The batching itself is exact: with a forward pass that is the same computation for every
  batch size (the model called frame by frame inside ``DepthPredictor._run``), ``--batch_size 4``
  writes byte-identical raw PNGs and ``.npy`` files, the same per-image metrics CSV and the same
  printed table as ``--batch_size 1``, while ``predict_batch`` really received frames together.
* With TensorFlow's real batched forward pass the per-frame depth is not bit-identical on this CPU:
  Eigen's convolution (a GEMM over batch × H × W rows) sums in a batch-size-dependent order.
  Measured with the tiny model (AMD EPYC, 2 threads): max |depth difference| 3.8e-6 m at 64×96
  (NYU), 3.8e-5 m at 352×1216 (KITTI KB crop), 3.1e-5 m at 48×160; a raw PNG value then moves
  by one grid step where the float depth sits at a step (15 of 43k NYU pixels, 1640 of 2.1M
  KITTI pixels); per-image metrics by at most a relative 6.2e-7; the printed table (4 and 3
  decimals) came out the same. Asserted: depth within 1e-4 m, PNGs within one step, metrics
  within a relative 1e-5.
"""
import csv
import os

import numpy as np
import pytest
from PIL import Image

import bts_model
import bts_predict
import bts_test
from conftest import write_random_depth, write_random_rgb
from tiny_run import TINY
from utils.arguments import model_config, parse_args

KITTI_SIZES = ((375, 1242), (370, 1224))  # two raw KITTI frame sizes: one KB crop, 352×1216
# Without the KB crop every size is predicted as it is: runs of equal size, small frames.
UNCROPPED = ((48, 160), (48, 160), (40, 150), (48, 160), (48, 160), (48, 160), (40, 150))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Seeded tiny BTS weights per dataset (the KITTI model scales its output by focal)."""
    import keras

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for dataset in ("nyu", "kitti"):
        keras.utils.set_random_seed(7)
        args = parse_args(groups=("model",), argv=TINY + ["--dataset", dataset])
        paths[dataset] = str(folder / f"{dataset}.weights.h5")
        bts_model.build_bts_model(model_config(args)).save_weights(paths[dataset])
    return paths


def _nyu_list(root, frames=7):
    """NYU-layout 64×96 noise frames (7: not a multiple of 4), the 6th without ground truth."""
    lines = []
    for i in range(1, frames + 1):
        scene = ("bathroom", "kitchen")[i % 2]
        write_random_rgb(str(root / scene / f"rgb_{i:05d}.jpg"), 64, 96, seed=i)
        depth = "None"
        if i != 6:
            depth = f"{scene}/sync_depth_{i:05d}.png"
            write_random_depth(str(root / depth), 64, 96, 1000.0, 10.0, seed=100 + i)
        lines.append(f"{scene}/rgb_{i:05d}.jpg {depth} 518.8579")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def _kitti_list(root, sizes):
    """A KITTI Eigen-layout list, one frame per size (drive folders, annotated-depth GT at 30 %
    density, the 3rd frame without GT), focal varying per frame."""
    data, gt = root / "raw", root / "gt"
    drive = "2011_09_26_drive_0002_sync"
    lines = []
    for i, (height, width) in enumerate(sizes):
        frame = f"{i:010d}.png"
        write_random_rgb(str(data / "2011_09_26" / drive / "image_02" / "data" / frame), height, width, i)
        depth = "None"
        if i != 2:
            depth = f"{drive}/proj_depth/groundtruth/image_02/{frame}"
            write_random_depth(str(gt / depth), height, width, 256.0, 80.0, seed=50 + i, density=0.3)
        lines.append(f"2011_09_26/{drive}/image_02/data/{frame} {depth} {700.0 + 5 * i}")
    (root / "eigen.txt").write_text("\n".join(lines) + "\n")
    return data, gt, root / "eigen.txt"


def _run(argv, out, capsys):
    """bts_test.main on ``argv`` into ``out``: (printed lines, {file: bytes} of out)."""
    assert bts_test.main(argv + ["--output_directory", str(out), "--metrics_csv",
                                 str(out) + ".csv"]) == 0
    printed = capsys.readouterr().out.splitlines()
    files = {os.path.relpath(os.path.join(folder, name), out): open(os.path.join(folder, name), "rb").read()
             for folder, _, names in os.walk(out) for name in names}
    return printed, files


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def calls(monkeypatch):
    """The batch sizes ``DepthPredictor.predict_batch`` is called with, in order."""
    seen = []
    original = bts_predict.DepthPredictor.predict_batch

    def spy(self, images, *rest, **kw):
        seen.append(int(np.shape(images)[0]))
        return original(self, images, *rest, **kw)

    monkeypatch.setattr(bts_predict.DepthPredictor, "predict_batch", spy)
    return seen


def frame_by_frame(monkeypatch):
    """Make the forward pass the same computation at every batch size: the compiled model is
    called on one frame at a time and the results concatenated (the batch-1 graph exactly)."""
    original = bts_predict.DepthPredictor._run

    def per_frame(self, fn, images, focal_px):
        parts = [original(self, fn, images[i:i + 1], focal_px[i:i + 1]) for i in range(len(images))]
        if isinstance(parts[0], dict):
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        return np.concatenate(parts)

    monkeypatch.setattr(bts_predict.DepthPredictor, "_run", per_frame)


def _compare(tmp_path, argv, capsys, calls, monkeypatch, batch, expected_calls):
    """``argv`` at --batch_size 1 and ``batch``: real batched forward within the measured bounds,
    and, with the forward made batch-size independent (:func:`frame_by_frame`), exactly equal."""
    printed1, files1 = _run(argv + ["--batch_size", "1"], tmp_path / "b1", capsys)
    n_frames = len(calls)
    assert calls == [1] * n_frames
    rows1 = _csv(str(tmp_path / "b1") + ".csv")
    assert any(f.startswith("raw/") for f in files1) and rows1[-1]["name"] == "mean"
    assert sum(bool(row["silog"]) for row in rows1[:-1]) >= 2  # frames really scored

    # TensorFlow's batched forward pass: not bit-identical on this CPU, within these bounds.
    del calls[:]
    printed, files = _run(argv + ["--batch_size", str(batch)], tmp_path / "real", capsys)
    assert calls == expected_calls and sum(calls) == n_frames  # really predicted together
    assert sorted(files) == sorted(files1)
    rows = _csv(str(tmp_path / "real") + ".csv")
    assert [r["name"] for r in rows] == [r["name"] for r in rows1]
    assert len(printed) == len(printed1)
    for name in files1:
        if name.startswith("npy/"):
            a, b = (np.load(tmp_path / run / name) for run in ("b1", "real"))
            assert np.abs(a - b).max() <= 1e-4, name  # measured <= 3.9e-5 m
        if name.startswith("raw/"):
            a, b = (np.asarray(Image.open(tmp_path / run / name), np.int64) for run in ("b1", "real"))
            assert np.abs(a - b).max() <= 1, name  # one PNG grid step at most
    for row1, row in zip(rows1, rows):
        for key in row1:
            if key != "name" and row1[key]:  # measured: relative <= 6.2e-7
                assert float(row[key]) == pytest.approx(float(row1[key]), rel=1e-5, abs=1e-7), key

    # The batching itself (grouping, order, per-frame outputs, scoring, writing): exact.
    frame_by_frame(monkeypatch)
    del calls[:]
    printed, files = _run(argv + ["--batch_size", str(batch)], tmp_path / "exact", capsys)
    assert calls == expected_calls
    assert files == files1  # raw PNGs, .npy, ...: byte for byte
    assert _csv(str(tmp_path / "exact") + ".csv") == rows1  # every metric and the mean, in full
    assert [line for line in printed if "written to" not in line] == \
        [line for line in printed1 if "written to" not in line]  # the printed table


def test_nyu_list_batch_4_equals_batch_1(tmp_path, weights, capsys, calls, monkeypatch):
    data = _nyu_list(tmp_path / "nyu")
    argv = TINY + ["--dataset", "nyu", "--data_path", str(data), "--gt_path", str(data),
                   "--filenames_file", str(data / "list.txt"), "--checkpoint_path", weights["nyu"],
                   "--eigen_crop", "--save_png", "--save_npy", "--save_cmap"]
    _compare(tmp_path, argv, capsys, calls, monkeypatch, 4, [4, 3])  # 7 frames


def test_kitti_eigen_kb_crop_batches_mixed_raw_sizes(tmp_path, weights, capsys, calls, monkeypatch):
    data, gt, listing = _kitti_list(tmp_path / "kitti", KITTI_SIZES + KITTI_SIZES[:1])
    argv = TINY + ["--dataset", "kitti", "--data_path", str(data), "--gt_path", str(gt),
                   "--filenames_file", str(listing), "--checkpoint_path", weights["kitti"],
                   "--do_kb_crop", "--garg_crop", "--save_png", "--save_npy"]
    # 375×1242, 370×1224, 375×1242: one KB crop (352×1216), so batched across raw sizes.
    _compare(tmp_path, argv, capsys, calls, monkeypatch, 2, [2, 1])


def test_kitti_without_kb_crop_never_batches_frames_of_different_sizes(tmp_path, weights, capsys,
                                                                       calls, monkeypatch):
    data, gt, listing = _kitti_list(tmp_path / "kitti", UNCROPPED)
    argv = TINY + ["--dataset", "kitti", "--data_path", str(data), "--gt_path", str(gt),
                   "--filenames_file", str(listing), "--checkpoint_path", weights["kitti"],
                   "--garg_crop", "--save_png", "--save_npy", "--save_lpg"]
    # 48×160 ×2 | 40×150 | 48×160 ×3 | 40×150: a size change starts a new batch, order kept.
    _compare(tmp_path, argv, capsys, calls, monkeypatch, 4, [2, 1, 3, 1])


def test_image_folder_batches_equal_sizes_exactly(tmp_path, weights, capsys, calls, monkeypatch):
    frame_by_frame(monkeypatch)
    photos = tmp_path / "photos"
    for i, (height, width) in enumerate(((50, 70), (50, 70), (50, 70), (33, 45), (50, 70))):
        write_random_rgb(str(photos / f"p{i}.png"), height, width, seed=i)
    argv = TINY + ["--dataset", "nyu", "--checkpoint_path", weights["nyu"], "--image_path",
                   str(photos), "--save_png", "--save_npy", "--save_lpg", "--save_point_cloud"]
    outputs = []
    for batch in ("1", "3"):
        out = tmp_path / f"out{batch}"
        assert bts_test.main(argv + ["--batch_size", batch, "--output_directory", str(out)]) == 0
        outputs.append({os.path.relpath(os.path.join(f, n), out): open(os.path.join(f, n), "rb").read()
                        for f, _, names in os.walk(out) for n in names})
    assert calls == [1] * 5 + [3, 1, 1]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 5 * (1 + 1 + 4 + 1)
    capsys.readouterr()


def test_batch_size_must_be_positive_in_one_line(tmp_path, weights, capsys):
    for value in ("0", "-2"):
        with pytest.raises(SystemExit) as exit_info:
            bts_test.main(["--checkpoint_path", weights["nyu"], "--image_path", str(tmp_path),
                           "--batch_size", value])
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"bts_test.py: error: --batch_size {value}: must be an integer >= 1"]


def test_batch_size_flags_of_test_and_training_stay_apart():
    import bts_main

    test_args = parse_args(("model", "data", "eval", "test", "predict_batch"), [])
    assert test_args.batch_size == 1
    train = bts_main.parse_train_args(["--filenames_file", "x.txt"])
    assert train.batch_size == 4  # the training group's global batch, unchanged
    both = parse_args(("model", "data", "train", "eval", "test", "predict_batch"), [])
    assert both.batch_size == 4  # one --batch_size: the training group's


def test_batched_run_with_an_undecodable_frame_names_its_line_and_leaves_nothing(tmp_path, weights,
                                                                                capsys):
    data = _nyu_list(tmp_path / "nyu")
    (data / "kitchen" / "rgb_00003.jpg").write_bytes(b"\xff\xd8\xff truncated")
    out = tmp_path / "out"
    rc = bts_test.main(TINY + ["--dataset", "nyu", "--data_path", str(data), "--gt_path", str(data),
                               "--filenames_file", str(data / "list.txt"), "--checkpoint_path",
                               weights["nyu"], "--save_png", "--batch_size", "4",
                               "--output_directory", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert rc == 1 and len(lines) == 1 and "line 3" in lines[0] and "rgb_00003.jpg" in lines[0], lines
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if "partial" in n]


def test_a_failed_background_write_is_one_line_and_leaves_nothing(tmp_path, weights, capsys,
                                                                   monkeypatch):
    from utils import image_io

    data = _nyu_list(tmp_path / "nyu")
    written = []
    original = image_io.save_depth_npy

    def fail_on_third(path, depth):
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return original(path, depth)

    monkeypatch.setattr(image_io, "save_depth_npy", fail_on_third)
    out = tmp_path / "out"
    rc = bts_test.main(TINY + ["--dataset", "nyu", "--data_path", str(data), "--gt_path", str(data),
                               "--filenames_file", str(data / "list.txt"), "--checkpoint_path",
                               weights["nyu"], "--save_png", "--save_npy", "--batch_size", "4",
                               "--output_directory", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert rc == 1 and len(lines) == 1, lines
    assert f"cannot write {out / 'npy'}" in lines[0] and "No space left" in lines[0]
    assert len(written) == 3  # the queued writes after the failure were dropped
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if "partial" in n]

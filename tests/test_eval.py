# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""End to end: bts_test.py on tiny synthetic NYU/KITTI data and any images; eval_with_pngs.py."""
import csv
import math
import os

import numpy as np
import pytest
from PIL import Image

import bts_model
import bts_test
from conftest import write_random_depth, write_random_rgb
from tiny_run import TINY
from tools import eval_with_pngs
from utils import metrics
from utils.arguments import model_config, parse_args


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny BTS weights per dataset (the KITTI model scales its output by focal)."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for dataset in ("nyu", "kitti"):
        args = parse_args(groups=("model",), argv=TINY + ["--dataset", dataset])
        model = bts_model.build_bts_model(model_config(args))
        paths[dataset] = str(folder / f"{dataset}.weights.h5")
        model.save_weights(paths[dataset])
    return paths


def _read_csv(path):
    with open(path, newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def _reference_metrics(gt, pred, box, min_depth, max_depth):
    """Independent float64 evaluation of one image inside a (top, bottom, left, right) box."""
    top, bottom, left, right = box
    gt, pred = gt[top:bottom, left:right].astype(np.float64), pred[top:bottom, left:right]
    pred = np.clip(pred.astype(np.float64), min_depth, max_depth)
    keep = (gt > min_depth) & (gt < max_depth)
    g, p = gt[keep], pred[keep]
    ratio = np.maximum(g / p, p / g)
    e = np.log(p) - np.log(g)
    return {"d1": np.mean(ratio < 1.25), "abs_rel": np.mean(np.abs(g - p) / g),
            "rms": math.sqrt(np.mean((g - p) ** 2)), "sq_rel": np.mean((g - p) ** 2 / g),
            "silog": 100 * math.sqrt(np.mean(e ** 2) - np.mean(e) ** 2),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(g)))}


def _png(path):
    return np.asarray(Image.open(path)).astype(np.float32)


def test_nyu_list_evaluation_matches_eval_with_pngs_and_a_reference(tmp_path, nyu_eval_list, weights,
                                                                    capsys):
    out, csv_test, csv_pngs = tmp_path / "out", tmp_path / "test.csv", tmp_path / "pngs.csv"
    rc = bts_test.main(TINY + [
        "--mode", "test", "--dataset", "nyu", "--data_path", str(nyu_eval_list), "--gt_path",
        str(nyu_eval_list), "--filenames_file", str(nyu_eval_list / "list.txt"), "--checkpoint_path",
        weights["nyu"], "--output_directory", str(out), "--eigen_crop", "--save_png",
        "--save_cmap", "--save_npy", "--metrics_csv", str(csv_test)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "Now testing 4 images" in printed and "1 GT files missing" in printed
    assert "silog, abs_rel,   log10" in printed
    names = ["bathroom_rgb_00001", "bathroom_rgb_00002", "living_room_rgb_00003", "office_rgb_00004"]
    assert sorted(os.listdir(out / "raw")) == [n + ".png" for n in names]
    assert sorted(os.listdir(out / "cmap")) == [n + ".png" for n in names]
    npy = np.load(out / "npy" / "bathroom_rgb_00001.npy")
    raw = _png(out / "raw" / "bathroom_rgb_00001.png")
    assert npy.shape == raw.shape == (64, 96)
    np.testing.assert_array_equal(raw, np.floor(npy * np.float32(1000)))

    rc = eval_with_pngs.main(["--pred_path", str(out / "raw"), "--gt_path", str(nyu_eval_list),
                              "--dataset", "nyu", "--eigen_crop", "--max_depth_eval", "10",
                              "--metrics_csv", str(csv_pngs)])
    printed = capsys.readouterr().out
    assert rc == 0 and "Evaluating 4 files" in printed and "1 GT files missing" in printed
    in_process, offline = _read_csv(csv_test), _read_csv(csv_pngs)
    assert len(in_process) == len(offline) == 4  # three images and the mean
    for list_name, png_name in (("bathroom/rgb_00001.jpg", "bathroom_rgb_00001.png"),
                                ("bathroom/rgb_00002.jpg", "bathroom_rgb_00002.png"),
                                ("living_room/rgb_00003.jpg", "living_room_rgb_00003.png")):
        for name in metrics.METRIC_NAMES:  # same predictions, same protocol: identical values
            assert in_process[list_name][name] == offline[png_name][name]
        gt = _png(nyu_eval_list / list_name.split("/")[0] / f"sync_depth_{list_name[-9:-4]}.png") / 1000
        pred = _png(out / "raw" / png_name) / 1000
        reference = _reference_metrics(gt, pred, (45, 471, 41, 601), 1e-3, 10.0)
        for name, value in reference.items():
            assert float(in_process[list_name][name]) == pytest.approx(value, rel=2e-5), name
    for name in metrics.METRIC_NAMES:  # averaged in the official walk order: identical means
        assert in_process["mean"][name] == offline["mean"][name]


def test_kitti_prediction_on_kb_crop_is_pasted_back_then_garg_cropped(tmp_path, weights, capsys):
    data, gt_root = tmp_path / "kitti", tmp_path / "kitti_gt"
    drive, frame = "2011_09_26_drive_0002_sync", "0000000069"
    write_random_rgb(str(data / "2011_09_26" / drive / "image_02" / "data" / f"{frame}.png"), 375, 1242, 1)
    gt_file = gt_root / drive / "proj_depth" / "groundtruth" / "image_02" / f"{frame}.png"
    write_random_depth(str(gt_file), 375, 1242, 256.0, 80.0, seed=2, density=0.3)
    (tmp_path / "eigen.txt").write_text(
        f"2011_09_26/{drive}/image_02/data/{frame}.png {drive}/proj_depth/groundtruth/image_02/"
        f"{frame}.png 721.5377\n2011_09_26/{drive}/image_02/data/{frame}.png None 721.5377\n"
        .replace(f"{frame}.png None", "0000000070.png None"))
    write_random_rgb(str(data / "2011_09_26" / drive / "image_02" / "data" / "0000000070.png"), 375, 1242, 3)
    out, csv_test, csv_pngs = tmp_path / "out", tmp_path / "t.csv", tmp_path / "p.csv"
    rc = bts_test.main(TINY + [
        "--mode", "test", "--dataset", "kitti", "--data_path", str(data), "--gt_path", str(gt_root),
        "--filenames_file", str(tmp_path / "eigen.txt"), "--checkpoint_path", weights["kitti"],
        "--output_directory", str(out), "--do_kb_crop", "--garg_crop", "--save_png",
        "--metrics_csv", str(csv_test)])
    assert rc == 0
    assert "1 GT files missing" in capsys.readouterr().out
    raw = _png(out / "raw" / f"{drive}_{frame}.png")
    assert raw.shape == (352, 1216)  # upstream: the KB crop, pasted back at evaluation

    assert eval_with_pngs.main(["--pred_path", str(out / "raw"), "--gt_path", str(gt_root),
                                "--dataset", "kitti", "--garg_crop", "--do_kb_crop",
                                "--metrics_csv", str(csv_pngs)]) == 0
    row = _read_csv(csv_test)[f"2011_09_26/{drive}/image_02/data/{frame}.png"]
    assert row == dict(_read_csv(csv_pngs)[f"{drive}_{frame}.png"],
                       name=row["name"])
    full = np.zeros((375, 1242), np.float32)
    full[23:375, 13:1229] = raw / 256  # KB offsets of a 375×1242 frame
    reference = _reference_metrics(_png(gt_file) / 256, full, (153, 371, 44, 1197), 1e-3, 80.0)
    for name, value in reference.items():
        assert float(row[name]) == pytest.approx(value, rel=2e-5), name


def test_image_path_predicts_any_size_with_all_outputs(tmp_path, weights, capsys):
    photos = tmp_path / "photos"
    write_random_rgb(str(photos / "a.png"), 37, 53, seed=1)
    write_random_rgb(str(photos / "sub" / "b.jpg"), 64, 80, seed=2)
    out = tmp_path / "out"
    rc = bts_test.main(TINY + [
        "--dataset", "nyu", "--checkpoint_path", weights["nyu"], "--image_path", str(photos),
        "--output_directory", str(out), "--save_png", "--save_cmap", "--save_npy",
        "--save_point_cloud", "--focal", "300"])
    assert rc == 0 and "Now predicting 2 images" in capsys.readouterr().out
    assert _png(out / "raw" / "a.png").shape == (37, 53)
    assert _png(out / "raw" / "sub" / "b.png").shape == (64, 80)
    assert np.asarray(Image.open(out / "cmap" / "sub" / "b.png")).shape == (64, 80, 3)
    depth = np.load(out / "npy" / "a.npy")
    assert depth.shape == (37, 53) and np.all(depth > 0)
    with open(out / "ply" / "a.ply", "rb") as handle:
        assert f"element vertex {37 * 53}".encode() in handle.read(300)


def _run_expecting_error(argv, capsys):
    rc = bts_test.main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("bts_test.py: error:")]


def test_bad_inputs_give_one_clear_line_and_no_partial_files(tmp_path, weights, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a_broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    write_random_rgb(str(photos / "b.png"), 32, 32, seed=3)
    out = tmp_path / "out"
    common = TINY + ["--dataset", "nyu", "--image_path", str(photos), "--save_png",
                     "--output_directory", str(out)]
    lines = _run_expecting_error(common + ["--checkpoint_path", weights["nyu"]], capsys)
    assert len(lines) == 1 and "a_broken.jpg" in lines[0]
    assert [f for _, _, files in os.walk(out) for f in files] == []  # nothing half-written

    lines = _run_expecting_error(common + ["--checkpoint_path", str(tmp_path / "no.keras")], capsys)
    assert len(lines) == 1 and "does not exist" in lines[0]
    lines = _run_expecting_error(common + ["--checkpoint_path", weights["nyu"], "--bts_size", "256"],
                                 capsys)
    assert len(lines) == 1 and "does not fit this model" in lines[0]

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    lines = _run_expecting_error(TINY + ["--image_path", str(photos / "b.png"), "--save_png",
                                         "--checkpoint_path", weights["nyu"],
                                         "--output_directory", str(blocker / "out")], capsys)
    assert len(lines) == 1 and "not writable" in lines[0]
    assert blocker.read_text() == "x"


def test_image_inputs_expand_folders_and_list_files_with_focal(tmp_path):
    write_random_rgb(str(tmp_path / "f" / "x.png"), 8, 8, seed=1)
    write_random_rgb(str(tmp_path / "f" / "deep" / "y.jpg"), 8, 8, seed=2)
    write_random_rgb(str(tmp_path / "g" / "x.jpg"), 8, 8, seed=3)
    (tmp_path / "f" / "notes.md").write_text("not an image")
    (tmp_path / "list.txt").write_text(f"# comment\nf/x.png 600.5\n{tmp_path / 'f' / 'deep' / 'y.jpg'}\n")
    items = bts_test.collect_images([str(tmp_path / "f")])
    assert [(i.name, i.focal) for i in items] == [(os.path.join("deep", "y"), None), ("x", None)]
    items = bts_test.collect_images([str(tmp_path / "list.txt")])
    assert [(i.path, i.focal) for i in items] == [(str(tmp_path / "f" / "x.png"), 600.5),
                                                 (str(tmp_path / "f" / "deep" / "y.jpg"), None)]
    with pytest.raises(ValueError, match="same output name"):
        bts_test.collect_images([str(tmp_path / "f" / "x.png"), str(tmp_path / "g" / "x.jpg")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bts_test.collect_images([str(tmp_path / "missing.jpg")])


# -------------------------------------------------------------------------------------------
# One evaluation loop, self-describing run folders
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, plane_data_480x640, nyu_eval_list):
    """``bts_main.py`` with the tiny flags on the plane frames: two steps, online validation of
    nyu_eval_list (Eigen crop) at steps 0 and 2, the best weights in best/. Returns (run folder,
    best record)."""
    import json

    import bts_main
    from tiny_run import train_argv

    logs = tmp_path_factory.mktemp("logs")
    assert bts_main.main(train_argv(
        plane_data_480x640, logs, "--num_steps", "2", "--do_online_eval", "--eval_freq", "2", "--eigen_crop",
        "--filenames_file_eval", nyu_eval_list / "list.txt", "--data_path_eval", nyu_eval_list,
        "--gt_path_eval", nyu_eval_list)) == 0
    with open(logs / "run" / "best" / "best_metrics.json") as handle:
        return logs / "run", json.load(handle)["silog"]


def _eval_list_argv(nyu_eval_list, checkpoint, *extra):
    """bts_test.py on nyu_eval_list's list with no --encoder/--bts_size: the checkpoint says."""
    return ["--mode", "test", "--dataset", "nyu", "--data_path", str(nyu_eval_list), "--gt_path",
            str(nyu_eval_list), "--filenames_file", str(nyu_eval_list / "list.txt"), "--eigen_crop",
            "--checkpoint_path", str(checkpoint), *map(str, extra)]


def test_bts_test_reports_the_online_validation_numbers_of_the_same_weights(
        trained_run, nyu_eval_list, tmp_path, capsys):
    run, best = trained_run
    capsys.readouterr()
    csv_path = tmp_path / "metrics.csv"
    assert bts_test.main(_eval_list_argv(nyu_eval_list, run / "best", "--metrics_csv", csv_path)) == 0
    printed = capsys.readouterr().out
    assert "metrics on predictions quantised to the 16-bit PNG grid (1/1000 m)" in printed
    assert metrics.format_result_table(best["metrics"]) in printed  # the table, as printed
    mean = _read_csv(csv_path)["mean"]
    for name in metrics.METRIC_NAMES:  # and the full-precision values: identical
        assert float(mean[name]) == best["metrics"][name], name
    # Quantisation is a choice, and printed: off, the float32 depth scores differently.
    assert bts_test.main(_eval_list_argv(nyu_eval_list, run / "best", "--no_quantize_eval",
                                         "--metrics_csv", tmp_path / "float.csv")) == 0
    assert "metrics on float32 predictions, not quantised" in capsys.readouterr().out
    assert float(_read_csv(tmp_path / "float.csv")["mean"]["rms"]) != best["metrics"]["rms"]


def test_run_folder_alone_is_enough_and_a_contradicting_flag_is_one_line(
        trained_run, nyu_eval_list, tmp_path, capsys):
    run, _ = trained_run
    assert bts_test.main(_eval_list_argv(nyu_eval_list, run)) == 0  # latest ckpt-N + bts_config.json
    assert "Evaluated 3 images" in capsys.readouterr().out
    lines = _run_expecting_error(_eval_list_argv(nyu_eval_list, run, "--bts_size", "256"), capsys)
    assert len(lines) == 1 and lines[0].startswith("bts_test.py: error: --bts_size is 256, but ")
    assert str(run / "bts_config.json") in lines[0] and "records bts_size 128" in lines[0]
    # An argument file's model flags (the shipped ones name DenseNet-161 and max_depth) yield to
    # the checkpoint's record, as the default --encoder always did; typed flags are checked.
    arguments = tmp_path / "arguments.txt"
    arguments.write_text("--encoder densenet161_bts\n--max_depth 10\n--bts_size 512\n")
    assert bts_test.main([str(arguments), *_eval_list_argv(nyu_eval_list, run)]) == 0
    assert "Evaluated 3 images" in capsys.readouterr().out
    lines = _run_expecting_error([str(arguments), *_eval_list_argv(nyu_eval_list, run),
                                  "--encoder", "densenet121_bts"], capsys)
    assert len(lines) == 1 and "--encoder is densenet121_bts" in lines[0]
    assert "records encoder densenet_tiny" in lines[0]


# -------------------------------------------------------------------------------------------
# Output folder names follow the model that is loaded
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def named_models(tmp_path_factory):
    """``models/bts_synthetic_nyu`` (a run folder: ckpt-1, bts_config.json, best/ with its
    weights file) and ``downloads/nyu_finetuned.keras``, under one root; and a photo."""
    from tiny_run import save_run_folder
    from utils.checkpoints import write_model_config

    root = tmp_path_factory.mktemp("named")
    run = root / "models" / "bts_synthetic_nyu"
    model, config = save_run_folder(run)
    (run / "best").mkdir()
    model.save_weights(str(run / "best" / "model-best_silog.weights.h5"))
    write_model_config(str(run / "best"), config)
    (root / "downloads").mkdir()
    model.save(str(root / "downloads" / "nyu_finetuned.keras"))
    write_random_rgb(str(root / "photos" / "a.png"), 32, 48, seed=3)
    (root / "arguments_test.txt").write_text(  # a shipped file: its model's name and folder
        "--mode test\n--dataset nyu\n--model_name bts_nyu_v2\n--checkpoint_path ./models/bts_nyu_v2\n")
    return root


@pytest.mark.parametrize("argv, folder", [
    (["arguments_test.txt", "--checkpoint_path", "models/bts_synthetic_nyu/best"], "result_bts_synthetic_nyu"),
    (["--checkpoint_path", "models/bts_synthetic_nyu"], "result_bts_synthetic_nyu"),
    (["--checkpoint_path", "models/bts_synthetic_nyu/ckpt-1"], "result_bts_synthetic_nyu"),
    (["--checkpoint_path", "downloads/nyu_finetuned.keras"], "result_nyu_finetuned"),
    (["--checkpoint_path", "models/bts_synthetic_nyu", "--model_name", "mine"], "result_mine"),
])
def test_default_output_folder_is_named_after_the_loaded_model(named_models, tmp_path, monkeypatch,
                                                               argv, folder):
    for name in ("models", "downloads", "photos", "arguments_test.txt"):
        (tmp_path / name).symlink_to(named_models / name)
    monkeypatch.chdir(tmp_path)
    assert bts_test.main([*argv, "--image_path", "photos", "--save_npy"]) == 0
    assert sorted(p.name for p in tmp_path.glob("result_*")) == [folder]
    assert (tmp_path / folder / "npy" / "a.npy").exists()


def test_an_argument_files_own_checkpoint_keeps_its_model_name(named_models, tmp_path, monkeypatch):
    # upstream's default: the argument file names its checkpoint's folder, result_{model_name}
    (tmp_path / "models").symlink_to(named_models / "models")
    (tmp_path / "arguments.txt").write_text(
        "--dataset nyu\n--model_name bts_synthetic_nyu\n--checkpoint_path ./models/bts_synthetic_nyu\n")
    monkeypatch.chdir(tmp_path)
    assert bts_test.main(["arguments.txt", "--image_path", str(named_models / "photos"), "--save_png"]) == 0
    assert sorted(p.name for p in tmp_path.glob("result_*")) == ["result_bts_synthetic_nyu"]


@pytest.mark.parametrize("checkpoint, name", [
    ("models/run", "run"), ("models/run/", "run"), ("models/run/ckpt-12", "run"),
    ("models/run/best", "run"), ("models/run/best/model-best_d1.weights.h5", "run"),
    ("models/run/model.keras", "run"), ("gs://bucket/runs/run/ckpt-3", "run"),
    ("models/bts_nyu_v2_pytorch_densenet161/model", "bts_nyu_v2_pytorch_densenet161"),
    ("weights/nyu_finetuned.weights.h5", "nyu_finetuned"), ("model.keras", ""), ("", ""),
])
def test_checkpoint_model_name_of_every_checkpoint_form(checkpoint, name):
    from utils.arguments import checkpoint_model_name

    assert checkpoint_model_name(checkpoint) == name

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``bts_test.py --dataset kitti_benchmark``: the KITTI online benchmark's test images (no ground
truth), as upstream bts_test.py writes them: raw/<image file name>.png, uint16 = depth × 256 of
the 352×1216 KB-crop prediction, the listed focal; nothing scored; training refuses the dataset."""
import os

import numpy as np
import pytest
from PIL import Image

import bts_dataloader
import bts_main
import bts_predict
import bts_test
import bts_trainer
from conftest import write_random_depth, write_random_rgb
from tiny_run import save_run_folder
from utils import metrics
from utils.arguments import parse_args
from utils.configs import BtsConfig
from utils.image_io import depth_to_uint16

IMAGES = "depth_selection/test_depth_prediction_anonymous/image"
# (file, height, width, focal): two raw-size frames (the KB crop cuts rows 23: and cols 13:1229)
# and one at the benchmark's own 352×1216, where the crop is the whole frame.
FRAMES = (("0000000000.png", 375, 1242, 721.5377), ("0000000001.png", 375, 1242, 500.0),
          ("0000000002.png", 352, 1216, 707.0493))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """A benchmark-layout folder, its list and a tiny KITTI run folder.

    List: 'image_path focal' lines, and one upstream-style 3-column line whose depth column names
    an existing depth PNG (which must be ignored: the dataset has no ground truth)."""
    root = tmp_path_factory.mktemp("kitti_benchmark")
    for index, (name, height, width, _) in enumerate(FRAMES):
        write_random_rgb(str(root / IMAGES / name), height, width, seed=index)
    write_random_depth(str(root / "gt" / "0000000002.png"), 352, 1216, 256.0, 80.0, seed=9)
    lines = [f"{IMAGES}/{name} {focal}" for name, _, _, focal in FRAMES[:2]]
    lines.append(f"{IMAGES}/{FRAMES[2][0]} gt/0000000002.png {FRAMES[2][3]}")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path_factory.mktemp("models") / "bts_tiny_kitti"
    save_run_folder(run, dataset="kitti", seed=1)
    return root, run


def _crop(depth, height, width):
    """The KB crop of a full-frame prediction pasted back by predict_image."""
    top, left = height - 352, (width - 1216) // 2
    return depth[top:top + 352, left:left + 1216]


def test_benchmark_list_writes_upstream_pngs_of_the_prediction_and_scores_nothing(
        benchmark, tmp_path, capsys, monkeypatch):
    root, run = benchmark

    def no_metrics(*_, **__):
        raise AssertionError("kitti_benchmark has no ground truth: nothing may be scored")

    monkeypatch.setattr(bts_predict, "score_prediction", no_metrics)
    monkeypatch.setattr(metrics, "average_metrics", no_metrics)
    out = tmp_path / "result"
    rc = bts_test.main(["--dataset", "kitti_benchmark", "--checkpoint_path", str(run),
                        "--data_path", str(root), "--gt_path", str(root),
                        "--filenames_file", str(root / "test.txt"), "--output_directory", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert printed.count("no metrics are computed") == 1
    assert "GT files missing" not in printed and "silog" not in printed
    # Upstream names (the image's file name, no drive prefix), raw PNGs only by default.
    assert sorted(os.listdir(out)) == ["raw"]
    assert sorted(os.listdir(out / "raw")) == [name for name, *_ in FRAMES]

    # The one predict path, called directly on the same weights, gives the same values.
    model, _ = bts_predict.load_model(str(run), BtsConfig.for_dataset("kitti"),
                                      model_ops=bts_trainer.resolve_model_ops("auto"))  # as bts_test
    predictor = bts_predict.DepthPredictor(model, "kitti", do_kb_crop=True)
    for name, height, width, focal in FRAMES:
        with Image.open(out / "raw" / name) as png:
            stored = np.asarray(png)
        assert stored.dtype == np.uint16 and stored.shape == (352, 1216)  # the crop, as upstream
        rgb = np.asarray(Image.open(root / IMAGES / name).convert("RGB"))
        expected = _crop(predictor.predict_image(rgb, focal), height, width)
        assert expected.min() > 0  # all predicted: no pasted zeros inside the crop
        np.testing.assert_array_equal(stored, depth_to_uint16(expected, 256.0))
        np.testing.assert_array_equal(stored, np.floor(expected * np.float32(256)))
    # The listed focal was used: the KITTI model scales its depth by focal / 715.0873, so the
    # 500 px frame differs from its prediction at the dataset's default 721.5377 px.
    name, height, width, focal = FRAMES[1]
    rgb = np.asarray(Image.open(root / IMAGES / name).convert("RGB"))
    with Image.open(out / "raw" / name) as png:
        stored = np.asarray(png).astype(np.float64)
    default = depth_to_uint16(_crop(predictor.predict_image(rgb, None), height, width), 256.0)
    ratio = np.median(stored / np.maximum(default, 1))
    assert ratio == pytest.approx(500.0 / 721.5377, rel=2e-3)


def test_benchmark_lists_parse_image_and_focal_lines():
    assert bts_test.output_name("a/image/0000000005.jpg",
                                parse_args(("model", "data", "eval", "test"),
                                           ["--dataset", "kitti_benchmark"], test_datasets=True)
                                ) == "0000000005"  # upstream: .jpg -> .png, no drive prefix
    sample = bts_dataloader.parse_filenames_line("image/0000000000.png 721.5377", 3, "t.txt",
                                                 "/data", "/gt", without_gt=True)
    assert (sample.rgb_path, sample.depth_path, sample.focal) == (
        "/data/image/0000000000.png", None, 721.5377)
    with pytest.raises(bts_dataloader.DataError, match=r"t\.txt line 4: expected 2 columns "
                                                       r"'rgb_path focal'"):
        bts_dataloader.parse_filenames_line("a.png b.png c.png 721", 4, "t.txt", without_gt=True)
    with pytest.raises(bts_dataloader.DataError, match="expected 3 columns"):  # other lists: 3
        bts_dataloader.parse_filenames_line("a.png 721.5377", 1, "t.txt")


def _one_line_error(call, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_training_and_scoring_refuse_the_benchmark_in_one_line(benchmark, capsys):
    root, run = benchmark
    line = _one_line_error(lambda: bts_main.parse_train_args(
        ["--dataset", "kitti_benchmark", "--filenames_file", str(root / "test.txt")]), capsys)
    assert line.startswith("bts_main.py: error: --dataset kitti_benchmark is for bts_test.py only")
    assert "use --dataset kitti" in line
    line = _one_line_error(lambda: bts_test.main(
        ["--dataset", "kitti_benchmark", "--checkpoint_path", str(run), "--filenames_file",
         str(root / "test.txt"), "--metrics_csv", "m.csv"]), capsys)
    assert line == ("bts_test.py: error: --metrics_csv: --dataset kitti_benchmark has no ground "
                    "truth, so no metrics")

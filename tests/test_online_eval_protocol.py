# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``--online_eval_protocol``: offline (default, the published numbers' protocol: the KB-crop
prediction pasted into the full frame, Garg fractions of the full frame) versus official_online
(upstream bts_main.py's online_eval: ground truth cut to the 352×1216 KB crop, Garg fractions of
the crop), on a prediction/ground-truth pair whose metrics are computed by hand.

The pair: a 375×1242 KITTI frame whose ground truth is 40 m everywhere except row 371, 20 m, and
a prediction of 40 m on the whole KB crop (rows 23-374, columns 13-1228). The full frame's Garg
rows are [int(0.40810811·375), int(0.99189189·375)) = 153-370: row 371 is out, the prediction is
perfect. The crop's are [int(0.40810811·352), int(0.99189189·352)) = 143-348 of the crop, i.e.
frame rows 166-371: 206 rows, one of them (row 371) wrong by a factor 2 across every column.
"""
import json
import math

import numpy as np
import pytest
from PIL import Image

import bts_main
import bts_test
from bts_trainer import Trainer
from conftest import write_random_rgb
from tiny_run import TINY
from utils import metrics
from utils.arguments import build_parser, train_config
from utils.configs import ConfigError, EvalConfig

HEIGHT, WIDTH, BAD_ROW = 375, 1242, 371
GOOD_M, BAD_M = 40.0, 20.0
P = 1 / 206  # the share of the crop's Garg pixels on row 371
OFFICIAL_ONLINE = {  # every valid pixel: g = 40 (p = 40) or, a share P of them, g = 20 (ratio 2)
    "abs_rel": P * 1.0, "sq_rel": P * 20.0 ** 2 / 20.0, "rms": 20.0 * math.sqrt(P),
    "log_rms": math.log(2) * math.sqrt(P), "log10": P * math.log10(2),
    "silog": 100 * math.log(2) * math.sqrt(P - P ** 2), "d1": 1 - P, "d2": 1 - P, "d3": 1 - P,
}
PERFECT = {"abs_rel": 0.0, "sq_rel": 0.0, "rms": 0.0, "log_rms": 0.0, "log10": 0.0, "silog": 0.0,
           "d1": 1.0, "d2": 1.0, "d3": 1.0}
# The tiny model with its get_depth kernel zeroed predicts 80·σ(0) = 40 m × focal / 715.0873:
# at this focal 40.001953 m, 10240.5 on the ×256 PNG grid, i.e. exactly 40 m once quantised.
FOCAL = 715.0873 * 10240.5 / 10240


def _ground_truth():
    gt = np.full((HEIGHT, WIDTH), GOOD_M, np.float32)
    gt[BAD_ROW] = BAD_M
    return gt


def _assert_metrics(got, expected):
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_the_two_protocols_on_a_hand_computed_pair():
    gt, pred = _ground_truth(), np.full((352, 1216), GOOD_M, np.float32)
    assert (int(0.40810811 * 352), int(0.99189189 * 352)) == (143, 349)  # crop rows, 206 of them
    assert int(0.99189189 * HEIGHT) == BAD_ROW  # the full frame's Garg rows stop before it
    common = dict(min_depth=1e-3, max_depth=80.0, dataset="kitti", garg_crop=True, do_kb_crop=True)
    _assert_metrics(metrics.evaluate_image(gt, pred, **common), PERFECT)
    _assert_metrics(metrics.evaluate_image(gt, pred, **common, protocol="official_online"),
                    OFFICIAL_ONLINE)
    # Without the KB crop (full-frame prediction) and on NYU the protocols are the same.
    full = np.full((HEIGHT, WIDTH), GOOD_M, np.float32)
    kitti = dict(common, do_kb_crop=False)
    assert (metrics.evaluate_image(gt, full, **kitti)
            == metrics.evaluate_image(gt, full, **kitti, protocol="official_online"))
    nyu_gt = np.random.default_rng(0).uniform(0.5, 9.0, (480, 640)).astype(np.float32)
    nyu = dict(min_depth=1e-3, max_depth=10.0, dataset="nyu", eigen_crop=True)
    assert (metrics.evaluate_image(nyu_gt, nyu_gt[::-1], **nyu)
            == metrics.evaluate_image(nyu_gt, nyu_gt[::-1], **nyu, protocol="official_online"))
    with pytest.raises(ConfigError) as error:
        EvalConfig("kitti", 1e-3, 80.0, protocol="online")
    assert error.value.as_flag_error() == ("--online_eval_protocol 'online' is unknown; expected "
                                           "one of offline, official_online")


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """The pair's frame in a KITTI-layout folder and a list naming it (training and validation)."""
    root = tmp_path_factory.mktemp("kitti_protocol")
    drive = "2011_09_26_drive_0002_sync"
    rgb = f"2011_09_26/{drive}/image_02/data/0000000005.png"
    depth = f"{drive}/proj_depth/groundtruth/image_02/0000000005.png"
    write_random_rgb(str(root / rgb), HEIGHT, WIDTH, seed=4)
    (root / depth).parent.mkdir(parents=True)
    Image.fromarray(np.round(_ground_truth() * 256).astype(np.uint16)).save(root / depth)
    (root / "list.txt").write_text(f"{rgb} {depth} {FOCAL:.6f}\n")
    return root


def _validate(frame, logs, protocol):
    """The trainer's validation, configured from parsed bts_main.py flags, of the constant model."""
    flags = ["--dataset", "kitti", *TINY, "--data_path", str(frame), "--gt_path", str(frame),
             "--filenames_file", str(frame / "list.txt"), "--do_kb_crop", "--garg_crop",
             "--do_online_eval", "--filenames_file_eval", str(frame / "list.txt"),
             "--log_directory", str(logs), "--model_name", protocol, "--seed", "0"]
    if protocol != "offline":  # the default
        flags += ["--online_eval_protocol", protocol]
    config = train_config(bts_main.parse_train_args(flags))
    assert config.evaluation.protocol == protocol
    trainer = Trainer(config, evaluate_fn=bts_main.make_evaluate_fn(config))
    kernel = trainer.model.get_layer("get_depth").kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
    return trainer.maybe_evaluate(), logs / protocol


def test_trainer_validation_follows_the_protocol_flag(frame, tmp_path, capsys):
    offline, _ = _validate(frame, tmp_path, "offline")
    _assert_metrics(offline, PERFECT)
    online, run = _validate(frame, tmp_path, "official_online")
    _assert_metrics(online, OFFICIAL_ONLINE)
    # best/ holds the weights the chosen protocol ranked, and says which protocol that was.
    record = json.loads((run / "best" / "best_metrics.json").read_text())["silog"]
    assert record["protocol"] == "official_online" and record["metrics"] == online
    # bts_test.py follows the flag too: the run's best weights give the numbers it logged.
    capsys.readouterr()
    assert bts_test.main(["--dataset", "kitti", "--data_path", str(frame), "--gt_path", str(frame),
                          "--filenames_file", str(frame / "list.txt"), "--do_kb_crop",
                          "--garg_crop", "--checkpoint_path", str(run / "best"),
                          "--online_eval_protocol", "official_online"]) == 0
    printed = capsys.readouterr().out
    assert "official online protocol (upstream bts_main.py online_eval)" in printed
    assert metrics.format_result_table(online) in printed


def test_help_names_the_protocol_that_picks_best():
    text = build_parser(bts_main.TRAIN_GROUPS).format_help()
    flat = " ".join(text.split())
    assert "--online_eval_protocol {offline,official_online}" in flat
    assert "which weights --best_metric keeps in best/" in flat
    assert "NYU, and KITTI without --do_kb_crop: both identical" in flat

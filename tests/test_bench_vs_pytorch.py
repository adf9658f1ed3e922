# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""benchmarks/bench_vs_pytorch.py: both programs in their own worker, calls interleaved, ratios.

The official repository cannot be downloaded here, so the official side is a stand-in checkout
with the official module names and call signatures (``pytorch/bts.py``: ``BtsModel(params)``,
``forward(image, focal)`` → tuple ending in depth, ``silog_loss(variance_focus)``;
``pytorch/bts_dataloader.py``: ``BtsDataLoader(args, 'train').data``). Needs torch (the
optional-torch group of requirements-dev.txt).
"""
import json
import textwrap

import pytest

from benchmarks import bench_vs_pytorch

pytest.importorskip("torch")

STAND_IN_BTS = textwrap.dedent('''
    import torch
    import torch.nn as nn


    class silog_loss(nn.Module):
        def __init__(self, variance_focus):
            super().__init__()
            self.variance_focus = variance_focus

        def forward(self, depth_est, depth_gt, mask):
            d = torch.log(depth_est[mask]) - torch.log(depth_gt[mask])
            return torch.sqrt((d ** 2).mean() - self.variance_focus * d.mean() ** 2) * 10.0


    class BtsModel(nn.Module):
        def __init__(self, params):
            super().__init__()
            self.max_depth = params.max_depth
            self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.decoder = nn.Sequential(nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid())

        def forward(self, x, focal):
            depth = self.decoder(self.encoder(x)) * self.max_depth + 1e-3
            return depth, depth
''')

STAND_IN_LOADER = textwrap.dedent('''
    import torch


    class BtsDataLoader:
        def __init__(self, args, mode):
            lines = open(args.filenames_file).read().split("\\n")
            count = len([line for line in lines if line.strip()])
            shape = (args.batch_size, 3, args.input_height, args.input_width)
            self.data = [{"image": torch.zeros(shape)} for _ in range(count // args.batch_size)]
''')


# Checks what the benchmark hands the official bts_test.py: its flags and a loadable checkpoint.
STAND_IN_TEST = textwrap.dedent('''
    import argparse, os, sys
    import torch
    parser = argparse.ArgumentParser()
    for flag in ("model_name", "encoder", "data_path", "filenames_file", "input_height",
                 "input_width", "max_depth", "checkpoint_path", "dataset", "bts_size"):
        parser.add_argument("--" + flag, required=True)
    args = parser.parse_args()
    state = torch.load(args.checkpoint_path)["model"]
    assert all(key.startswith("module.") for key in state), list(state)
    assert os.path.isfile(os.path.join(os.path.dirname(args.checkpoint_path), args.model_name + ".py"))
    lines = [line for line in open(args.filenames_file) if line.strip()]
    assert all(os.path.isfile(os.path.join(args.data_path, line.split()[0])) for line in lines)
    os.makedirs("result_" + args.model_name + "/raw")
''')


@pytest.fixture()
def stand_in_checkout(tmp_path):
    folder = tmp_path / "official" / "pytorch"
    folder.mkdir(parents=True)
    (folder / "bts.py").write_text(STAND_IN_BTS)
    (folder / "bts_dataloader.py").write_text(STAND_IN_LOADER)
    (folder / "bts_test.py").write_text(STAND_IN_TEST)
    return folder.parent


@pytest.mark.slow
def test_quick_run_interleaves_both_programs_and_reports_their_ratio(stand_in_checkout, tmp_path,
                                                                      capsys):
    output = tmp_path / "vs.json"
    cases = ["quick_forward_64x96_fp32", "quick_train_64x96_b2_fp32"]
    assert bench_vs_pytorch.main(["--official_src", str(stand_in_checkout), "--quick", "--cases",
                                  *cases, "--repeats", "3", "--warmup", "1", "--pipeline_rounds", "1",
                                  "--test_images", "3", "--test_batch_size", "2",
                                  "--bench_output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["quick"] is True and payload["environment"]["cpu"]
    assert [r["name"] for r in payload["model"]] == cases
    for record in payload["model"]:
        ours, official = record["ours"], record["official"]
        for side in (ours, official):
            assert len(side["times_s"]) == 3
            assert 0 < side["min_s"] <= side["median_s"] <= side["max_s"]
            assert side["peak_rss_mib"] > 50 and side["first_call_s"] > 0
        # official / ours per repeat pair; the median pair's ratio and the spread
        ratios = sorted(o / u for u, o in zip(ours["times_s"], official["times_s"]))
        assert record["ratio_median"] == pytest.approx(ratios[1])
        assert (record["ratio_min"], record["ratio_max"]) == pytest.approx((ratios[0], ratios[-1]))
        # interleaved: ours, official, ours, official, ... (each call starts after the other's)
        starts = [t for pair in zip(ours["started"], official["started"]) for t in pair]
        assert starts == sorted(starts)
    # each case in fresh worker processes, so a case's peak RSS is its own
    for side in ("ours", "official"):
        pids = [record[side]["pid"] for record in payload["model"]]
        assert len(set(pids)) == len(pids)
    pipeline = payload["pipeline"]
    assert pipeline["official_workers"] == 2 and pipeline["ours_samples_per_s"][0] > 0
    assert pipeline["ratio_median"] == pytest.approx(
        pipeline["ours_samples_per_s"][0] / pipeline["official_samples_per_s"][0])
    # bts_test.py end to end: ours really ran (3 images, batches of 2), the official one was called
    test = payload["test"]
    assert (test["images"], test["ours_batch_size"]) == (3, 2)
    assert test["ours_images_per_s"][0] == pytest.approx(3 / test["ours_seconds"][0])
    assert test["ratio_median"] == pytest.approx(test["official_seconds"][0] / test["ours_seconds"][0])
    report = capsys.readouterr().out
    assert all(f"| {name} |" in report for name in cases)
    assert "NYU training pipeline" in report and "bts_test.py end to end (3 NYU images" in report


def test_bf16_training_is_left_out_by_default_only_without_bf16_hardware():
    amd = {"cpu": "AMD EPYC", "cores": 2, "features": ["avx2", "fma"]}
    spr = {"cpu": "Intel Xeon", "cores": 2, "features": ["avx2", "avx512f", "amx_bf16"]}
    names = lambda facts: [c.name for c in bench_vs_pytorch.default_cases(False, facts)]  # noqa: E731
    assert "train_416x544_b2_bf16" not in names(amd)
    assert "train_416x544_b2_bf16" in names(spr)
    assert {"forward_480x640_fp32", "forward_352x1216_bf16", "train_416x544_b2_fp32"} <= set(names(amd))
    chosen = bench_vs_pytorch.select_cases(["train_416x544_b2_bf16"], False, amd)
    assert [c.name for c in chosen] == ["train_416x544_b2_bf16"]  # named: run anyway


def test_a_folder_without_the_official_model_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_vs_pytorch.main(["--official_src", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--official_src {tmp_path}: no pytorch/bts.py there" in err
    with pytest.raises(SystemExit):
        bench_vs_pytorch.main([])
    assert "--official_src is required" in capsys.readouterr().err

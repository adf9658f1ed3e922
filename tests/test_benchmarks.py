# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark scripts: --quick runs produce valid JSON with consistent statistics."""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest

from benchmarks import bench_model, common, run_all

QUICK_CASES = ["quick_forward_64x96_fp32", "quick_train_64x96_b2_bf16"]


def _check_timing(record: dict) -> None:
    assert 0 < record["min_s"] <= record["median_s"] <= record["max_s"]
    assert record["median_s"] == pytest.approx(float(np.median(record["times_s"])))
    assert record["images_per_s"] == pytest.approx(record["batch"] / record["median_s"])
    assert record["peak_rss_mib"] > 100  # TF alone holds far more than 100 MiB
    assert record["cpu_median_s"] > 0


def test_quick_model_benchmark_writes_valid_json_and_profile(tmp_path, capsys):
    output, profile = tmp_path / "model.json", tmp_path / "profile"
    assert bench_model.main(["--quick", "--cases", *QUICK_CASES, "--repeats", "3", "--warmup", "1",
                             "--bench_output", str(output), "--profile_dir", str(profile)]) == 0
    payload = json.loads(output.read_text())
    assert payload["quick"] is True and payload["environment"]["tensorflow"]
    assert [r["name"] for r in payload["model"]] == QUICK_CASES
    forward, train = payload["model"]
    assert (forward["kind"], forward["precision"], forward["batch"]) == ("forward", "fp32", 1)
    assert (train["kind"], train["precision"], train["batch"]) == ("train", "bf16", 2)
    assert forward["encoder"] == train["encoder"] == "densenet_tiny"
    for record in payload["model"]:
        _check_timing(record)
        assert len(record["times_s"]) == 3
        # one TensorBoard trace (.xplane.pb) per case
        assert glob.glob(os.path.join(record["profile_dir"], "plugins", "profile", "*", "*.xplane.pb"))
        # the op-time summary read back from that trace: real op types, shares of all op time
        ops = {row["op"]: row for row in record["op_time"]}
        # Convolution time is found whatever the kernel is called (Conv2D, _FusedConv2D, oneDNN's
        # _MklNativeConv2D...): which names appear depends on the CPU.
        assert any("conv2d" in op.lower() and row["ms"] > 0 for op, row in ops.items()), list(ops)
        assert all(0 < row["share"] <= 1 and row["calls"] > 0 for row in ops.values())
        assert sum(row["share"] for row in ops.values()) <= 1 + 1e-9
        assert [row["ms"] for row in record["op_time"]] == sorted(
            (row["ms"] for row in record["op_time"]), reverse=True)
    table = capsys.readouterr().out
    assert all(f"| {name} |" in table for name in QUICK_CASES)
    assert f"{QUICK_CASES[0]}: time per op type" in table


def test_unknown_case_is_a_one_line_error():
    with pytest.raises(SystemExit, match="forward_1x1_fp32 unknown; valid: forward_480x640_fp32"):
        bench_model.select_cases(["forward_1x1_fp32"], quick=False)


def test_case_tables_cover_the_issue_sizes():
    cases = bench_model.select_cases(None, quick=False)
    assert [case.name for case in cases] == [
        "forward_480x640_fp32", "forward_480x640_bf16", "forward_352x1216_fp32",
        "forward_352x1216_bf16", "train_416x544_b2_fp32", "train_416x544_b2_bf16",
        "resnet50_bts_forward_480x640_fp32", "resnet50_bts_train_416x544_b2_fp32",
        "resnext101_bts_forward_480x640_fp32", "resnext101_bts_train_416x544_b2_fp32"]
    by_name = {case.name: case for case in cases}
    train = by_name["resnext101_bts_train_416x544_b2_fp32"]
    assert (train.kind, train.height, train.width, train.batch, train.precision) == (
        "train", 416, 544, 2, "fp32")
    # The rows build the encoder they name, at the official nf 512; the others DenseNet-161.
    assert {name: common.model_config(case.dataset, False, case.encoder).encoder
            for name, case in by_name.items() if "_bts_" in name} == {
        "resnet50_bts_forward_480x640_fp32": "resnet50_bts", "resnet50_bts_train_416x544_b2_fp32": "resnet50_bts",
        "resnext101_bts_forward_480x640_fp32": "resnext101_bts",
        "resnext101_bts_train_416x544_b2_fp32": "resnext101_bts"}
    assert common.model_config("nyu", False, "resnext101_bts").bts_size == 512
    assert common.model_config(by_name["forward_480x640_fp32"].dataset, False,
                               by_name["forward_480x640_fp32"].encoder).encoder == "densenet161_bts"
    # selectable by name, in the order given, like the DenseNet-161 rows
    chosen = bench_model.select_cases(["resnext101_bts_forward_480x640_fp32", "forward_480x640_fp32"],
                                      quick=False)
    assert [case.encoder for case in chosen] == ["resnext101_bts", ""]


def test_an_encoder_row_times_the_encoder_it_names():
    # The resnet50_bts forward row at a small size: the record names the encoder built and the
    # model it timed has resnet50_bts BTS's learnable parameter count (tests/test_official_encoders.py).
    case = dataclasses.replace(bench_model.select_cases(["resnet50_bts_forward_480x640_fp32"], False)[0],
                               height=64, width=96)
    model = common.build_model(case, quick=False)
    assert common.model_config(case.dataset, False, case.encoder).encoder == "resnet50_bts"
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 47_481_968
    record = bench_model.run_case(case, warmup=1, repeats=1)
    assert record["encoder"] == "resnet50_bts" and record["name"] == "resnet50_bts_forward_480x640_fp32"
    _check_timing(record)


def test_peak_rss_follows_a_large_allocation_and_resets():
    assert bench_model.reset_peak_rss()  # Linux: /proc/self/clear_refs
    before = bench_model.peak_rss_mib()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    grown = bench_model.peak_rss_mib()
    del block
    assert grown - before > 250
    bench_model.reset_peak_rss()
    assert bench_model.peak_rss_mib() < grown - 250


def test_quick_run_all_writes_one_json_with_every_section(tmp_path, monkeypatch):
    # The model section is covered above; keep this run to the pipeline and bts_test.py.
    monkeypatch.setattr(run_all.bench_model, "run_model_benchmarks", lambda args: [])
    output = tmp_path / "all.json"
    assert run_all.main(["--quick", "--bench_output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert set(payload) == {"environment", "quick", "model", "dataloader", "end_to_end"}
    for source in ("files", "tfrecords"):
        rate = payload["dataloader"][source]["samples_per_s"]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
        assert len(payload["dataloader"][source]["per_epoch"]) == run_all.QUICK_SIZES["dataloader_epochs"]
    e2e = payload["end_to_end"]
    assert e2e["images"] == run_all.QUICK_SIZES["test_images"]
    assert 0 < e2e["model_s_per_image"]["min"] <= e2e["model_s_per_image"]["median"]
    assert e2e["end_to_end_images_per_s"] == pytest.approx(e2e["images"] / e2e["wall_s"])


def test_gpu_check_refuses_without_gpu_and_its_workload_runs_on_cpu(capsys):
    from benchmarks import gpu_check

    assert gpu_check.main(["--quick"]) == 1
    assert "sees no GPU" in capsys.readouterr().err
    names = [case.name for case in gpu_check.gpu_cases(quick=False)]
    assert "gpu_forward_480x640_b8_fp16" in names and "gpu_train_416x544_b16_bf16" in names
    run = gpu_check.nyu_test_workload("fp32", quick=True, num_images=4)
    assert run["images"] == 4 and run["images_per_s"] == pytest.approx(4 / run["seconds"])


def test_quick_bf16_depth_benchmark_compares_both_precisions_on_the_same_frames(tmp_path, capsys):
    from benchmarks import bench_bf16_depth

    output = tmp_path / "bf16.json"
    assert bench_bf16_depth.main(["--quick", "--bench_output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["quick"] is True and payload["frames"] == len(payload["per_frame"]) == 2
    assert payload["auto"]["resolved"] in ("none", "bf16") and payload["auto"]["reason"]
    # bf16 really ran (the depth moved) and stayed close: 8 mantissa bits, tiny random model
    assert 0 < payload["mean_abs_m"] <= payload["max_abs_m"] < 0.5
    assert payload["max_abs_m"] == max(f["max_abs_m"] for f in payload["per_frame"])
    for name, change in payload["metrics_change"].items():
        assert change == pytest.approx(payload["metrics_bf16"][name] - payload["metrics_fp32"][name])
        assert abs(change) < 0.05 * max(1.0, abs(payload["metrics_fp32"][name]))
    shown = capsys.readouterr().out
    assert "bf16 vs fp32 depth, 2 frames" in shown and shown.count("silog, abs_rel") == 2


@pytest.mark.slow
def test_quick_lever_run_compares_each_lever_with_the_same_run_baseline(tmp_path, capsys):
    from benchmarks import bench_levers

    output = tmp_path / "levers.json"
    assert bench_levers.main(["--quick", "--levers", "keras_bn", "onednn_off",
                              "--bench_output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert list(payload["results"]) == ["baseline", "keras_bn", "onednn_off"]  # baseline added
    baseline = {r["name"]: r["median_s"] for r in payload["results"]["baseline"]}
    assert set(baseline) == {"quick_forward_64x96_fp32", "quick_train_64x96_b2_fp32"}
    rows = payload["comparison"]
    assert {(r["lever"], r["case"]) for r in rows} >= {("keras_bn", "quick_train_64x96_b2_fp32"),
                                                       ("onednn_off", "quick_forward_64x96_fp32")}
    for row in rows:
        assert row["vs_baseline"] == pytest.approx(row["median_s"] / baseline[row["case"]])
    assert "| keras_bn | quick_train_64x96_b2_fp32 |" in capsys.readouterr().out


def test_lever_children_get_the_lever_and_nothing_else():
    from benchmarks import bench_levers

    levers = {lever.name: lever for lever in bench_levers.LEVERS}
    xla = bench_levers.child_command(levers["xla"], "out.json", warmup=1)
    # Against the standard graph unless the lever chooses ops itself.
    assert xla[-3:] == ["--jit_compile", "--model_ops", "standard"] and "--keras_bn" not in xla
    matmul = bench_levers.child_command(levers["conv1x1_matmul"], "out.json", warmup=1)
    assert matmul[-2:] == ["--model_ops", "conv1x1=matmul"] and "standard" not in matmul
    keras_bn = bench_levers.child_command(bench_levers.quick_variant(levers["keras_bn"]), "o", 1)
    assert "--keras_bn" in keras_bn and "--quick" in keras_bn
    assert "quick_train_64x96_b2_fp32" in keras_bn and "--jit_compile" not in keras_bn
    assert dict(levers["onednn_on"].env) == {"TF_ENABLE_ONEDNN_OPTS": "1"}

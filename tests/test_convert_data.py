# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts_convert_data: sharding round trip, parallel == serial, missing files, atomic re-runs."""
import os
import uuid

import pytest
import tensorflow as tf

import bts_convert_data
import bts_dataloader as dl
from bts_dataloader import DataError


@pytest.fixture(scope="module")
def samples(kitti_data):
    return dl.read_filenames_file(kitti_data["train_filenames"], kitti_data["data_path"],
                                  kitti_data["gt_path"])


def read_records(files):
    data = tf.data.TFRecordDataset(list(files)).map(lambda r: tf.io.parse_single_example(r, dl.FEATURES))
    return list(data.as_numpy_iterator())


def read_bytes(path):
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def test_round_trip_every_line_once_in_round_robin_shards(samples, tmp_path):
    prefix = str(tmp_path / "out" / "kitti-train")
    report = bts_convert_data.convert(samples, prefix, num_shards=3, num_workers=1)
    assert report.shards == [f"{prefix}-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert report.written == 7 and not report.missing and not report.invalid
    for shard, path in enumerate(report.shards):
        assert [int(r["index"]) for r in read_records([path])] == list(range(shard, 7, 3))
    records = read_records(report.shards)
    assert sorted(int(r["index"]) for r in records) == list(range(7))
    for record in records:  # the files' bytes, unchanged
        sample = samples[int(record["index"])]
        assert record["image"] == read_bytes(sample.rgb_path)
        assert record["depth"] == read_bytes(sample.depth_path)
        assert record["focal"] == pytest.approx(sample.focal)
        assert record["line"].decode() == sample.line
        assert record["source"].decode().endswith(f"line {sample.line_number}")
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp-" in f]


def test_lines_without_ground_truth_are_kept_with_has_depth_false(kitti_data, tmp_path):
    test_samples = dl.read_filenames_file(kitti_data["test_filenames"], kitti_data["data_path_eval"],
                                          kitti_data["gt_path_eval"])
    assert any(s.depth_path is None for s in test_samples)
    report = bts_convert_data.convert(test_samples, str(tmp_path / "t"), num_shards=2, num_workers=1)
    by_index = {int(r["index"]): r for r in read_records(report.shards)}
    for index, sample in enumerate(test_samples):
        assert bool(by_index[index]["has_depth"]) == (sample.depth_path is not None)


@pytest.mark.slow
def test_parallel_run_writes_the_same_shards_as_serial_run(samples, tmp_path):
    serial = bts_convert_data.convert(samples, str(tmp_path / "serial" / "p"), 4, num_workers=1)
    parallel = bts_convert_data.convert(samples, str(tmp_path / "parallel" / "p"), 4, num_workers=2)
    assert parallel.written == serial.written == 7
    for a, b in zip(serial.shards, parallel.shards):
        assert read_bytes(a) == read_bytes(b)


def test_missing_files_are_skipped_and_reported_or_fatal_with_strict(samples, tmp_path):
    broken = list(samples)
    broken[2] = dl.Sample(str(tmp_path / "gone.png"), samples[2].depth_path, samples[2].focal,
                          samples[2].line_number, samples[2].line, samples[2].source)
    report = bts_convert_data.convert(broken, str(tmp_path / "a" / "p"), 2, num_workers=1)
    assert report.written == 6 and len(report.missing) == 1
    assert f"line {samples[2].line_number}" in report.missing[0] and "gone.png" in report.missing[0]
    assert 2 not in [int(r["index"]) for r in read_records(report.shards)]
    with pytest.raises(DataError, match=r"missing file: .* line 3: .*gone.png"):
        bts_convert_data.convert(broken, str(tmp_path / "b" / "p"), 2, num_workers=1, strict=True)


def test_unreadable_files_are_reported_with_their_line(samples, tmp_path):
    bad = tmp_path / "eight_bit.png"
    from PIL import Image
    Image.new("L", (40, 24)).save(bad)
    broken = list(samples)
    broken[0] = dl.Sample(samples[0].rgb_path, str(bad), samples[0].focal, 1, samples[0].line, "l.txt")
    report = bts_convert_data.convert(broken, str(tmp_path / "p"), 1, num_workers=1)
    assert report.written == 6 and len(report.invalid) == 1
    assert report.invalid[0].startswith("l.txt line 1: ") and "16-bit" in report.invalid[0]


def test_rerun_removes_temp_files_and_stale_shards(samples, tmp_path):
    prefix = str(tmp_path / "kitti")
    bts_convert_data.convert(samples, prefix, num_shards=2, num_workers=1)
    leftover = tmp_path / ".kitti-00000-of-00004.tfrecord.tmp-deadbeef"
    leftover.write_bytes(b"half a shard")
    bts_convert_data.convert(samples, prefix, num_shards=4, num_workers=1)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"kitti-0000{i}-of-00004.tfrecord" for i in range(4)] + ["kitti.manifest.json"]
    assert len(dl.find_shards(prefix)) == 4


def test_cli_with_argument_file_writes_to_ram_filesystem(kitti_data, tmp_path, capsys):
    prefix = f"ram://convert/{uuid.uuid4().hex}/eigen"
    args_file = tmp_path / "arguments_convert.txt"
    args_file.write_text(f"--dataset kitti\n--data_path {kitti_data['data_path']}\n"
                         f"--gt_path {kitti_data['gt_path']}\n"
                         f"--filenames_file {kitti_data['train_filenames']}\n"
                         f"--tfrecord_path {prefix}\n--num_shards 2\n")
    report = bts_convert_data.main([str(args_file), "--num_workers", "1"])
    assert report.written == 7
    assert "wrote 7 records from 7 lines to 2 shards" in capsys.readouterr().out
    assert len(dl.find_shards(prefix)) == 2


def test_cli_requires_output_prefix(kitti_data):
    with pytest.raises(SystemExit):
        bts_convert_data.main(["--filenames_file", kitti_data["train_filenames"]])


def test_shipped_argument_files_parse(monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from utils.arguments import parse_args
    for name, dataset in (("arguments_convert_nyu.txt", "nyu"), ("arguments_convert_eigen.txt", "kitti")):
        args = parse_args(groups=("model", "data", "convert"), argv=[os.path.join(root, name)])
        assert args.dataset == dataset and args.tfrecord_path and args.filenames_file
        assert args.num_shards >= 1


def test_manifest_holds_each_shards_record_count_and_size(samples, tmp_path):
    import json

    prefix = str(tmp_path / "kitti")
    report = bts_convert_data.convert(samples, prefix, num_shards=3, num_workers=1)
    with open(dl.manifest_path(prefix)) as handle:
        manifest = json.load(handle)
    assert manifest["records"] == 7 and manifest["lines"] == 7
    for path in report.shards:
        entry = manifest["shards"][os.path.basename(path)]
        assert entry["records"] == len(read_records([path]))
        assert entry["bytes"] == os.path.getsize(path)
    shards = dl.open_shards(prefix)
    assert len(shards) == 7 and shards.files == tuple(report.shards)

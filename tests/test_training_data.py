# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Training data through the CLI: TFRecord shards really read (exact resume, bad shards), and a bad
training sample stopping the run with one line naming the list file and line."""
import glob
import hashlib
import logging
import os
import re
import shutil
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bts_convert_data
import bts_main
from tiny_run import TINY

try:  # Optuna's log handler binds to sys.stderr when first imported: the session's, not a closed capsys's
    import optuna  # noqa: F401
except ImportError:  # the tuner is optional (requirements-tune.txt)
    pass


@pytest.fixture(scope="module")
def nyu(synthetic_dataset, tmp_path_factory):
    """6 rendered NYU frames (96x128, 2 scenes; the counts below rely on 6), their list, and 2
    shards made by the converter CLI. Tests that break frames copy them first."""
    paths = synthetic_dataset("nyu", 6, 0, 96, 128, seed=1)
    prefix = str(tmp_path_factory.mktemp("nyu_shards") / "nyu-train")
    report = bts_convert_data.main(["--dataset", "nyu", "--data_path", paths["data_path"],
                                    "--gt_path", paths["gt_path"],
                                    "--filenames_file", paths["train_filenames"],
                                    "--tfrecord_path", prefix, "--num_shards", "2",
                                    "--num_workers", "1"])
    assert report.written == 6
    return {**paths, "prefix": prefix}


def _argv(log_dir, *extra):
    return ["--dataset", "nyu", *TINY,
            "--input_height", "64", "--input_width", "96", "--batch_size", "2", "--seed", "3",
            "--log_directory", str(log_dir), "--model_name", "run", "--log_freq", "1000",
            "--save_freq", "1000", "--adam_eps", "1e-3", *map(str, extra)]


def _files_argv(data, *extra):
    return ["--data_path", data["data_path"], "--gt_path", data["gt_path"],
            "--filenames_file", data["train_filenames"], *extra]


def _error_line(capsys) -> str:
    """The single 'bts_main.py: error:' line; no traceback anywhere."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("bts_main.py: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _model_weights(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key.startswith("model/")}


def _copy_shards(data, folder, manifest=True):
    os.makedirs(folder)
    for path in glob.glob(data["prefix"] + "*"):
        if manifest or not path.endswith(".manifest.json"):
            shutil.copy(path, folder)
    return os.path.join(folder, "nyu-train")


def _checkpoint_files(run_dir):
    """{name: sha256} of the checkpoints (ckpt-*, their state file, temp folders) and model.keras."""
    names = [n for n in os.listdir(run_dir)
             if n.startswith("ckpt-") or n in ("checkpoint", "model.keras")]
    return {n: hashlib.sha256(open(os.path.join(run_dir, n), "rb").read()).hexdigest()
            if os.path.isfile(os.path.join(run_dir, n)) else "dir" for n in names}


# ------------------------------------------------------------------ training from shards
def test_trains_from_shards_without_list_or_image_files(nyu, tmp_path, capsys):
    empty = tmp_path / "no_images"
    empty.mkdir()
    # No --filenames_file, and --data_path an empty folder: only the shards can feed this run.
    code = bts_main.main(_argv(tmp_path, "--tfrecord_path", nyu["prefix"], "--num_epochs", "1",
                               "--data_path", empty, "--gt_path", empty))
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "run"
    # 6 records / batch 2 = 3 steps per epoch, counted from the converter's manifest.
    assert os.path.exists(run / "ckpt-3.index") and os.path.exists(run / "model.keras")
    assert "finished at step 3" in capsys.readouterr().out


def test_trains_from_shards_on_a_filesystem_url(nyu, tmp_path, capsys):
    """ram:// stands in for gs://: shards, manifest and counts all go through tf.io.gfile."""
    prefix = f"ram://shards/{uuid.uuid4().hex}/nyu-train"
    bts_convert_data.main(["--dataset", "nyu", "--data_path", nyu["data_path"], "--gt_path",
                           nyu["gt_path"], "--filenames_file", nyu["train_filenames"],
                           "--tfrecord_path", prefix, "--num_shards", "3", "--num_workers", "1"])
    assert tf.io.gfile.exists(f"{prefix}.manifest.json")
    code = bts_main.main(_argv(tmp_path, "--tfrecord_path", prefix, "--num_epochs", "1"))
    assert code == 0, capsys.readouterr().err
    assert "finished at step 3" in capsys.readouterr().out


def test_shards_without_manifest_are_counted(nyu, tmp_path, capsys):
    prefix = _copy_shards(nyu, tmp_path / "shards", manifest=False)
    code = bts_main.main(_argv(tmp_path, "--tfrecord_path", prefix, "--num_epochs", "1"))
    assert code == 0, capsys.readouterr().err
    assert "finished at step 3" in capsys.readouterr().out


def test_shards_straight_run_equals_interrupted_and_resumed_run(nyu, tmp_path, caplog):
    import bts_trainer as trainer_lib
    from utils.arguments import train_config

    # batch 1: 6 steps per epoch, so the resume skips 3 batches mid-epoch and then crosses an epoch.
    argv = ["--tfrecord_path", nyu["prefix"], "--num_steps", "8", "--batch_size", "1",
            "--do_random_rotate"]
    assert bts_main.main(_argv(tmp_path / "straight", *argv)) == 0
    first = trainer_lib.Trainer(train_config(bts_main.parse_train_args(_argv(tmp_path / "resumed", *argv))))
    first.train(stop_at=3)  # an interruption after step 3 (what Ctrl-C does: save, stop)
    with caplog.at_level(logging.INFO, logger="bts.train"):
        assert bts_main.main(_argv(tmp_path / "resumed", *argv)) == 0
    assert "ckpt-3 at step 3" in caplog.text  # really resumed, not trained again from step 0
    straight = _model_weights(str(tmp_path / "straight" / "run" / "ckpt-8"))
    resumed = _model_weights(str(tmp_path / "resumed" / "run" / "ckpt-8"))
    assert straight.keys() == resumed.keys() and straight
    for key in straight:
        np.testing.assert_allclose(straight[key], resumed[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_pattern_matching_no_shard_is_one_line_and_never_trains_from_files(nyu, tmp_path, capsys):
    missing = str(tmp_path / "nowhere" / "nyu-train")
    code = bts_main.main(_argv(tmp_path, *_files_argv(nyu, "--tfrecord_path", missing,
                                                      "--num_steps", "1")))
    assert code == 1
    line = _error_line(capsys)
    assert f"--tfrecord_path {missing}: no TFRecord shards found" in line, line
    assert not os.path.exists(tmp_path / "run" / "ckpt-1.index")


@pytest.mark.parametrize("damage", ["truncated", "truncated, no manifest", "corrupt record"])
def test_damaged_shard_is_one_line_naming_the_shard(nyu, tmp_path, capsys, damage):
    prefix = _copy_shards(nyu, tmp_path / "shards", manifest=damage != "truncated, no manifest")
    shard = f"{prefix}-00001-of-00002.tfrecord"
    data = bytearray(open(shard, "rb").read())
    if damage == "corrupt record":  # same size, so only the record checksum can tell
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) - 1000]
    open(shard, "wb").write(bytes(data))
    code = bts_main.main(_argv(tmp_path, "--tfrecord_path", prefix, "--num_epochs", "1"))
    assert code == 1
    line = _error_line(capsys)
    assert f"TFRecord shard {shard}" in line and "convert it again" in line, line
    assert not os.path.exists(tmp_path / "run" / "model.keras")


def test_missing_shard_of_a_prefix_is_one_line(nyu, tmp_path, capsys):
    prefix = _copy_shards(nyu, tmp_path / "shards")
    os.remove(f"{prefix}-00000-of-00002.tfrecord")
    assert bts_main.main(_argv(tmp_path, "--tfrecord_path", prefix, "--num_epochs", "1")) == 1
    line = _error_line(capsys)
    assert f"1 of 2 shards found, {prefix}-00000-of-00002.tfrecord is missing" in line, line


def test_validation_split_with_shards_is_a_one_line_error(nyu, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bts_main.main(_argv(tmp_path, *_files_argv(nyu, "--tfrecord_path", nyu["prefix"],
                                                   "--validation_split", "0.3")))
    assert exit_info.value.code == 2
    assert "--validation_split holds out scenes of --filenames_file" in capsys.readouterr().err


def test_shards_train_with_online_eval_from_the_eval_list(nyu, tmp_path, capsys):
    code = bts_main.main(_argv(tmp_path, "--tfrecord_path", nyu["prefix"], "--num_steps", "2",
                               "--do_online_eval", "--filenames_file_eval", nyu["train_filenames"],
                               "--data_path_eval", nyu["data_path"], "--gt_path_eval",
                               nyu["gt_path"], "--eval_freq", "2", "--save_freq", "2"))
    assert code == 0, capsys.readouterr().err
    assert os.path.exists(tmp_path / "run" / "best" / "best_metrics.json")


# ------------------------------------------------------------------ bad training samples
@pytest.fixture(scope="module")
def trained(nyu, tmp_path_factory):
    """A run folder with ckpt-2 from an 18-line list (the 6 frames three times)."""
    root = tmp_path_factory.mktemp("trained")
    lines = open(nyu["train_filenames"]).read().split("\n")[:6] * 3
    listing = root / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    argv = _argv(root, "--data_path", nyu["data_path"], "--gt_path", nyu["gt_path"],
                 "--filenames_file", listing, "--num_steps", "2", "--save_freq", "2")
    assert bts_main.main(argv) == 0
    return {"lines": lines, "run": root / "run"}


def _break(kind, data_root, line):
    """Damage the file(s) of one list line in a copy of the data; returns (path, expected text)."""
    rgb, depth = (os.path.join(data_root, column.lstrip("/")) for column in line.split()[:2])
    if kind == "missing image":
        os.remove(rgb)
        return rgb, "file not found"
    if kind == "truncated jpeg":
        data = open(rgb, "rb").read()
        open(rgb, "wb").write(data[: len(data) // 2])
        return rgb, "unreadable or corrupt image"
    if kind == "text file as png":
        open(depth, "w").write("this is a text file\n")
        return depth, "depth is not a PNG file"
    if kind == "8-bit depth png":
        Image.fromarray(np.full((96, 128), 40, np.uint8)).save(depth)
        return depth, "not 16-bit single-channel"
    if kind == "sizes differ":
        Image.fromarray(np.full((80, 128), 2000, np.uint16)).save(depth)
        return depth, "different sizes"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing image", "truncated jpeg", "text file as png",
                                  "8-bit depth png", "sizes differ"])
def test_bad_training_sample_stops_with_one_line_and_keeps_checkpoints(nyu, trained, tmp_path,
                                                                       capsys, kind):
    data_root = tmp_path / "data"
    shutil.copytree(nyu["data_path"], data_root)
    # Line 17 gets its own copy of the 5th frame (lines 5 and 11 keep theirs): only it is bad.
    lines = list(trained["lines"])
    lines[16] = lines[16].replace("rgb_", "bad_rgb_").replace("sync_depth_", "bad_depth_")
    for column in lines[16].split()[:2]:
        shutil.copy(data_root / column.lstrip("/").replace("bad_rgb_", "rgb_")
                    .replace("bad_depth_", "sync_depth_"), data_root / column.lstrip("/"))
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    path, expected = _break(kind, str(data_root), lines[16])
    shutil.copytree(trained["run"], tmp_path / "run")
    before = _checkpoint_files(tmp_path / "run")
    code = bts_main.main(_argv(tmp_path, "--data_path", data_root, "--gt_path", data_root,
                               "--filenames_file", listing, "--num_steps", "40"))
    assert code == 1
    line = _error_line(capsys)
    assert f"{listing} line 17" in line and path in line and expected in line, line
    # It resumed from ckpt-2 and stopped within the epoch: checkpoints and model as they were.
    assert _checkpoint_files(tmp_path / "run") == before


# ------------------------------------------------------------------ bts_tune.py
def _tune_argv(tmp_path, listing, data_root, *extra):
    return ["--dataset", "nyu", *TINY,
            "--data_path", str(data_root), "--gt_path", str(data_root), "--filenames_file",
            str(listing), "--input_height", "64", "--input_width", "96", "--num_steps", "30",
            "--batch_size", "2", "--eval_freq", "1000", "--log_freq", "1000", "--save_freq", "1000",
            "--seed", "7", "--validation_split", "0.5", "--log_directory", str(tmp_path / "runs"),
            "--study_name", "s", "--storage", f"sqlite:///{tmp_path / 'tune.db'}", "--n_trials", "1",
            *map(str, extra)]


def test_tune_rejects_shards_in_one_line(nyu, tmp_path, capsys):
    import bts_tune

    with pytest.raises(SystemExit) as exit_info:
        bts_tune.main(_tune_argv(tmp_path, nyu["train_filenames"], nyu["data_path"],
                                 "--tfrecord_path", nyu["prefix"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bts_tune.py: error: --tfrecord_path: trials hold out" in err


@pytest.mark.parametrize("kind", ["missing image", "8-bit depth png"])
def test_tune_bad_training_sample_is_one_line(nyu, tmp_path, capsys, kind):
    import bts_tune

    data_root = tmp_path / "data"
    shutil.copytree(nyu["data_path"], data_root)
    lines = open(nyu["train_filenames"]).read().split("\n")[:6]
    # One bad frame in each scene: whichever side of the split it lands on, it is read.
    paths, (expected, _) = zip(*(_break(kind, str(data_root), lines[i]) for i in (0, 5)))
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    space = tmp_path / "space.json"  # batch 1: the few training frames make whole steps
    space.write_text('{"batch_size": {"choices": [1]}, "gradient_accumulation_steps": null}')
    code = bts_tune.main(_tune_argv(tmp_path, listing, data_root, "--search_space", space))
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("bts_tune.py: error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert re.search(rf"{re.escape(str(listing))} line [16]\b", errors[0]), errors[0]
    assert any(path in errors[0] for path in paths), errors[0]

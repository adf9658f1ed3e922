# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Outputs are all-or-nothing; write and checkpoint faults are one line naming the file.

Every test runs the command a user types (``bts_test.main``, ``bts_main.main``,
``bts_convert_data.main``) and checks the exit code, the single error line (no traceback) and
what is left on disk: no partial output folder, no temporary folder, earlier results and
checkpoints intact. A full disk is a real tmpfs where the tests may mount one (root), else the
writes into the folder fail exactly as TensorFlow reports a full disk.
"""
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

import bts_convert_data
import bts_main
import bts_model
import bts_test
from tools import eval_with_pngs
from utils import image_io
import bts_trainer as trainer_lib
from utils.arguments import model_config, parse_args
from conftest import write_random_depth, write_random_rgb
from tiny_run import TINY, train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_SPACE = "No space left on device"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    args = parse_args(groups=("model",), argv=TINY + ["--dataset", "nyu"])
    path = str(tmp_path_factory.mktemp("models") / "nyu.weights.h5")
    bts_model.build_bts_model(model_config(args)).save_weights(path)
    return path


def _nyu_list(root, count=6, broken_line=None):
    """A NYU-layout test list of ``count`` 64×96 frames with GT; ``broken_line``'s JPEG is garbage.
    Written per test into its tmp_path: these tests break or overwrite files."""
    lines = []
    for i in range(1, count + 1):
        scene = "bathroom" if i % 2 else "kitchen"
        rgb = root / scene / f"rgb_{i:05d}.jpg"
        write_random_rgb(str(rgb), 64, 96, seed=i)
        write_random_depth(str(root / scene / f"sync_depth_{i:05d}.png"), 64, 96, 1000.0, 10.0, seed=10 + i)
        if i == broken_line:
            rgb.write_bytes(b"\xff\xd8\xff not really a jpeg")
        lines.append(f"{scene}/rgb_{i:05d}.jpg {scene}/sync_depth_{i:05d}.png 518.8579")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def _eval_argv(data, weights, out, *extra):
    return TINY + ["--mode", "test", "--dataset", "nyu", "--data_path", str(data), "--gt_path",
                   str(data), "--filenames_file", str(data / "list.txt"), "--checkpoint_path",
                   weights, "--output_directory", str(out), "--save_png", "--save_npy", *extra]


def _error_lines(capsys, prefix):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith(prefix)]


def _staging_left(folder):
    return glob.glob(os.path.join(str(folder), "**", "*partial-*"), recursive=True) + \
        glob.glob(os.path.join(str(folder), "**", ".*partial-*"), recursive=True)


def _tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {os.path.relpath(os.path.join(r, f), folder): open(os.path.join(r, f), "rb").read()
            for r, _, files in os.walk(folder) for f in files}


class SmallDisk:
    """A folder on a small disk that ``fill()`` makes full.

    Where the test may mount (root), a real tmpfs; else writes under the folder raise what TF
    raises on a full disk (``ResourceExhaustedError '<path>; No space left on device'``): image
    writes past ``size`` bytes, and checkpoint saves (after leaving TF's ``ckpt-N_temp/``) once full.
    """

    def __init__(self, path, size, monkeypatch):
        self.path, self.size, self.full, self.used = path, size, False, 0
        path.mkdir()
        self.mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True).returncode == 0
        if not self.mounted:
            self._simulate(monkeypatch)

    def fill(self):
        """No more space from now on (a margin of 1 MiB on a real tmpfs)."""
        self.full = True
        if self.mounted:
            stats = os.statvfs(self.path)
            used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
            subprocess.run(["mount", "-o", f"remount,size={used + (1 << 20)}", str(self.path)],
                           check=True)

    def _inside(self, path):
        return os.path.abspath(str(path)).startswith(str(self.path) + os.sep)

    def _simulate(self, monkeypatch):
        write_bytes, save = image_io.atomic_write_bytes, tf.train.CheckpointManager.save

        def limited_write(path, data):
            if self._inside(path):
                self.used += len(data)
                if self.full or self.used > self.size:
                    raise tf.errors.ResourceExhaustedError(None, None, f"{path}; {NO_SPACE}")
            write_bytes(path, data)

        def limited_save(manager, checkpoint_number=None, **kwargs):
            if self.full and self._inside(manager.directory):
                temp = os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp")
                os.makedirs(temp, exist_ok=True)
                raise tf.errors.ResourceExhaustedError(None, None, (
                    f"{temp}/part-00000-of-00001.data-00000-of-00001.tempstate1; {NO_SPACE} "
                    "[Op:SaveV2]"))
            return save(manager, checkpoint_number=checkpoint_number, **kwargs)

        monkeypatch.setattr(image_io, "atomic_write_bytes", limited_write)
        monkeypatch.setattr(tf.train.CheckpointManager, "save", limited_save)

    def close(self):
        if self.mounted:
            # Lazy: a TF file writer of the failed run may still hold a file open there.
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    disks = []

    def make(size):
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size, monkeypatch))
        return disks[-1]

    yield make
    for disk in disks:
        disk.close()


# ------------------------------------------------------------------ bts_test.py
def test_failed_evaluation_leaves_no_predictions_and_no_metrics(tmp_path, weights, capsys):
    data = _nyu_list(tmp_path / "nyu", broken_line=5)
    out, table = tmp_path / "out", tmp_path / "metrics.csv"
    rc = bts_test.main(_eval_argv(data, weights, out, "--metrics_csv", str(table)))
    lines = _error_lines(capsys, "bts_test.py: error:")
    assert rc == 1 and len(lines) == 1 and "rgb_00005.jpg" in lines[0], lines
    # The four images before the bad one were predicted, but nothing of the run is left.
    assert not out.exists() and not table.exists() and not _staging_left(tmp_path)


def test_rerun_into_earlier_results_is_refused_unless_overwrite(tmp_path, weights, capsys):
    data = _nyu_list(tmp_path / "nyu")
    out, table = tmp_path / "out", tmp_path / "metrics.csv"
    argv = _eval_argv(data, weights, out, "--metrics_csv", str(table))
    assert bts_test.main(argv) == 0
    names = sorted(os.listdir(out / "raw"))
    assert len(names) == 6
    shutil.copy(out / "raw" / names[0], out / "raw" / "stale_rgb_00099.png")  # an earlier run's
    (out / "notes.txt").write_text("mine")
    before, csv_before = _tree(out), table.read_bytes()
    capsys.readouterr()

    assert bts_test.main(argv) == 1
    lines = _error_lines(capsys, "bts_test.py: error:")
    assert len(lines) == 1 and f"output folder {str(out)!r} already holds results" in lines[0]
    assert "--overwrite" in lines[0]
    assert _tree(out) == before and table.read_bytes() == csv_before  # untouched

    assert bts_test.main(_eval_argv(data, weights, tmp_path / "out2", "--metrics_csv",
                                    str(table))) == 1
    lines = _error_lines(capsys, "bts_test.py: error:")
    assert len(lines) == 1 and f"--metrics_csv {str(table)!r} already exists" in lines[0]
    assert not (tmp_path / "out2").exists()

    table.write_text("old")
    assert bts_test.main(argv + ["--overwrite"]) == 0
    # The written kinds are replaced as a whole (no stale file of the earlier run); others stay.
    assert sorted(os.listdir(out / "raw")) == names and sorted(os.listdir(out / "npy")) == \
        sorted(n.replace(".png", ".npy") for n in names)
    assert (out / "notes.txt").read_text() == "mine"
    assert table.read_text().startswith("name,") and not _staging_left(tmp_path)


def test_failed_overwrite_keeps_the_earlier_results(tmp_path, weights, capsys):
    data = _nyu_list(tmp_path / "nyu")
    out = tmp_path / "out"
    assert bts_test.main(_eval_argv(data, weights, out)) == 0
    before = _tree(out)
    (data / "kitchen" / "rgb_00004.jpg").write_bytes(b"\xff\xd8\xff truncated")
    capsys.readouterr()
    assert bts_test.main(_eval_argv(data, weights, out, "--overwrite")) == 1
    lines = _error_lines(capsys, "bts_test.py: error:")
    assert len(lines) == 1 and "rgb_00004.jpg" in lines[0]
    assert _tree(out) == before and not _staging_left(tmp_path)


def test_full_disk_while_predicting_names_the_file_and_the_cause(tmp_path, weights, small_disk,
                                                                 capsys):
    photos = tmp_path / "photos"
    for i in range(4):  # 64×96 float32 .npy: 24.7 kB each, the 40 kB disk holds one
        write_random_rgb(str(photos / f"p{i}.png"), 64, 96, seed=i)
    disk = small_disk(40 * 1024)
    rc = bts_test.main(TINY + ["--dataset", "nyu", "--checkpoint_path", weights, "--image_path",
                               str(photos), "--save_npy", "--output_directory",
                               str(disk.path / "out")])
    lines = _error_lines(capsys, "bts_test.py: error:")
    assert rc == 1 and len(lines) == 1, lines
    assert f"cannot write {disk.path / 'out' / 'npy'}" in lines[0] and NO_SPACE in lines[0]
    assert "data pipeline" not in lines[0]
    assert os.listdir(disk.path) == []  # the staged predictions were removed


def test_eval_with_pngs_refuses_an_existing_metrics_csv_unless_overwrite(tmp_path, weights,
                                                                        capsys):
    data = _nyu_list(tmp_path / "nyu", count=2)
    assert bts_test.main(_eval_argv(data, weights, tmp_path / "out")) == 0
    table = tmp_path / "pngs.csv"
    argv = ["--pred_path", str(tmp_path / "out" / "raw"), "--gt_path", str(data), "--dataset",
            "nyu", "--metrics_csv", str(table)]
    assert eval_with_pngs.main(argv) == 0
    table.write_text("earlier")
    capsys.readouterr()
    assert eval_with_pngs.main(argv) == 1
    lines = _error_lines(capsys, "eval_with_pngs.py: error:")
    assert len(lines) == 1 and f"--metrics_csv {str(table)!r} already exists" in lines[0]
    assert table.read_text() == "earlier"
    assert eval_with_pngs.main(argv + ["--overwrite"]) == 0
    assert table.read_text().startswith("name,")


def test_shipped_test_arguments_with_the_demo_flags_rerun(tmp_path, weights, synthetic_dataset, capsys):
    """demo.sh's evaluation (arguments_test_synthetic.txt with demo.sh's own output flags) runs
    again into the folder of its first run, as a rerun of ./demo.sh does."""
    demo = open(os.path.join(ROOT, "demo.sh")).read()
    flags = "--save_png --save_cmap --save_point_cloud --overwrite"
    assert flags in demo
    data = synthetic_dataset("nyu", 1, 2, 144, 192, seed=2)  # demo.sh's frame size, 2 test frames
    argv = [os.path.join(ROOT, "arguments_test_synthetic.txt"), *TINY, "--checkpoint_path",
            weights, "--data_path", data["data_path_eval"], "--gt_path", data["gt_path_eval"],
            "--filenames_file", data["test_filenames"], "--output_directory",
            str(tmp_path / "result"), *flags.split()]
    for _ in range(2):
        assert bts_test.main(argv) == 0
    assert "Evaluated 2 images" in capsys.readouterr().out
    for kind in ("raw", "cmap", "ply"):
        assert len(os.listdir(tmp_path / "result" / kind)) == 2


# ------------------------------------------------------------------ training run folder
_train_argv = train_argv


@pytest.fixture(scope="module")
def trained_run(plane_data_480x640, tmp_path_factory):
    """A run folder after one step: ckpt-1 and model.keras."""
    log_dir = tmp_path_factory.mktemp("trained")
    argv = _train_argv(plane_data_480x640, log_dir, "--num_steps", "1", "--save_freq", "1")
    assert bts_main.main(argv) == 0
    return log_dir / "run"


def _copy_run(trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "logs" / "run")
    return tmp_path / "logs" / "run"


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def test_unwritable_log_directory_is_one_line_before_any_work(plane_data_480x640, tmp_path,
                                                               monkeypatch, capsys):
    blocker = tmp_path / "a_file"  # a folder under a file: unwritable even for root
    blocker.write_text("x")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the run folder was checked")

    monkeypatch.setattr(trainer_lib.bts_model, "build_bts_model", no_model)
    rc = bts_main.main(_train_argv(plane_data_480x640, blocker / "logs", "--num_steps", "1"))
    lines = _error_lines(capsys, "bts_main.py: error:")
    assert rc == 1 and len(lines) == 1, lines
    assert f"--log_directory run folder {str(blocker / 'logs' / 'run')!r} is not writable" in lines[0]
    assert blocker.read_text() == "x"


def test_stale_temporary_checkpoint_folders_are_removed_at_start_up(trained_run, plane_data_480x640,
                                                                    tmp_path):
    run = _copy_run(trained_run, tmp_path)
    stale = [run / "ckpt-2_temp", run / f"checkpoint.tmp{'0' * 31}f",  # TF's names
             run / ".tmp-0a1b2c3d-model.keras", run / "best" / ".tmp-0a1b2c3d-best.weights.h5"]
    (run / "ckpt-2_temp").mkdir()
    (run / "ckpt-2_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate7").write_bytes(b"x")
    for path in stale[1:]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    kept = [run / "ckpt-notes_temp", run / "notes.tmp"]  # not a temporary name of a save
    for path in kept:
        path.write_text("mine")
    assert bts_main.main(_train_argv(plane_data_480x640, run.parent, "--num_steps", "1")) == 0
    assert [p for p in stale if p.exists()] == [] and all(p.read_text() == "mine" for p in kept)
    assert tf.train.latest_checkpoint(str(run)).endswith("ckpt-1")


def test_full_disk_during_a_save_keeps_the_earlier_checkpoints(plane_data_480x640, tmp_path,
                                                               small_disk, monkeypatch, capsys):
    disk = small_disk(64 << 20)
    original = trainer_lib.Trainer.save_checkpoint

    def save_then_fill(trainer):
        path = original(trainer)
        disk.fill()  # ckpt-1 is written; the disk is full from now on
        return path

    monkeypatch.setattr(trainer_lib.Trainer, "save_checkpoint", save_then_fill)
    rc = bts_main.main(_train_argv(plane_data_480x640, disk.path, "--num_steps", "2",
                                   "--save_freq", "1"))
    lines = _error_lines(capsys, "bts_main.py: error:")
    run = disk.path / "run"
    assert rc == 1 and len(lines) == 1, lines
    assert f"cannot write {run / 'ckpt-2'}: {NO_SPACE}" in lines[0]
    assert f"last good: {run / 'ckpt-1'}" in lines[0]
    assert not (run / "ckpt-2_temp").exists() and not (run / "model.keras").exists()
    latest = tf.train.latest_checkpoint(str(run))
    assert latest == str(run / "ckpt-1")
    reader = tf.train.load_checkpoint(latest)  # every tensor of ckpt-1 still reads back
    assert all(np.all(np.isfinite(reader.get_tensor(name))) for name, dtype in
               reader.get_variable_to_dtype_map().items() if dtype.is_floating)


@pytest.mark.parametrize("case", ["resume", "checkpoint_path", "keras"])
def test_truncated_checkpoint_is_one_line_naming_it(trained_run, plane_data_480x640, tmp_path, capsys,
                                                    case):
    source = _copy_run(trained_run, tmp_path)
    if case == "keras":
        damaged = source / "model.keras"
        _truncate(damaged)
    else:
        damaged = source / "ckpt-1"
        _truncate(str(damaged) + ".data-00000-of-00001")
    if case == "resume":  # the run folder's latest checkpoint is the resume source
        argv = _train_argv(plane_data_480x640, source.parent, "--num_steps", "2")
        run = source
    else:
        argv = _train_argv(plane_data_480x640, tmp_path, "--num_steps", "2", "--model_name",
                           "fresh", "--checkpoint_path", damaged)
        run = tmp_path / "fresh"
    rc = bts_main.main(argv)
    lines = _error_lines(capsys, "bts_main.py: error:")
    assert rc == 1 and len(lines) == 1, lines
    assert f"checkpoint {str(damaged)!r} cannot be read: it is truncated or damaged" in lines[0]
    assert not (run / "ckpt-2.index").exists() and not (tmp_path / "fresh" / "model.keras").exists()


# ------------------------------------------------------------------ bts_convert_data.py
def test_converter_on_an_unwritable_output_is_one_line_before_any_work(tmp_path, kitti_data):
    data = kitti_data
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as stopped:
        bts_convert_data.main(["--dataset", "kitti", "--data_path", data["data_path"],
                               "--gt_path", data["gt_path"], "--filenames_file",
                               data["train_filenames"], "--tfrecord_path",
                               str(blocker / "shards" / "kitti"), "--num_workers", "1"])
    message = str(stopped.value.code)
    assert message.count("\n") == 0 and "Traceback" not in message
    assert f"--tfrecord_path folder {str(blocker / 'shards')!r} is not writable" in message
    assert blocker.read_text() == "x"

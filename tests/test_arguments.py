# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The shared argument parser: argument files, overrides, comments, errors, dataset defaults."""
import os
import subprocess
import sys

import pytest

from utils.arguments import GROUPS as GROUPS_TABLE
from utils.arguments import NUMERIC_FLAGS, build_parser, parse_args, read_argument_file, write_argument_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GROUPS = ("model", "data", "train", "eval")


def _write(tmp_path, text, name="args.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_flags_after_the_argument_file_override_it(tmp_path):
    path = _write(tmp_path, "--batch_size 4\n--dataset nyu\n--learning_rate 1e-4\n")
    args = parse_args(GROUPS, [path, "--batch_size", "2"])
    assert args.batch_size == 2 and args.learning_rate == pytest.approx(1e-4)


def test_comments_blank_lines_and_several_tokens_per_line(tmp_path):
    path = _write(tmp_path, "# a comment\n\n--model_name run1   --batch_size 8  # trailing\n--do_random_rotate\n")
    args = parse_args(GROUPS, [path])
    assert (args.model_name, args.batch_size, args.do_random_rotate) == ("run1", 8, True)


def test_at_file_syntax_works_and_later_flags_win(tmp_path):
    path = _write(tmp_path, "--num_epochs 7 # comment\n")
    assert parse_args(GROUPS, ["@" + path]).num_epochs == 7
    assert parse_args(GROUPS, ["@" + path, "--num_epochs", "3"]).num_epochs == 3


def test_unknown_flag_is_one_line_error_naming_closest_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        parse_args(GROUPS, ["--batch_sise", "2"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--batch_sise" in err and "did you mean --batch_size" in err


def test_unknown_flag_inside_argument_file_is_reported(tmp_path, capsys):
    path = _write(tmp_path, "--learning_rte 1e-4\n")
    with pytest.raises(SystemExit):
        parse_args(GROUPS, [path])
    assert "did you mean --learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["first argument", "@file", "@file inside an argument file"])
def test_missing_argument_file_is_a_clear_error(tmp_path, capsys, how):
    missing = str(tmp_path / "nope.txt")
    argv = {"first argument": [missing], "@file": ["@" + missing],
            "@file inside an argument file": [_write(tmp_path, f"--batch_size 2 @{missing}\n")]}[how]
    expected = f"error: cannot read argument file {missing!r}: No such file or directory"
    assert _parse_error(argv, capsys) == expected


def test_dataset_defaults_fill_unset_values_only():
    nyu = parse_args(GROUPS, ["--dataset", "nyu"])
    kitti = parse_args(GROUPS, ["--dataset", "kitti", "--max_depth", "50"])
    assert (nyu.max_depth, nyu.degree, nyu.max_depth_eval) == (10.0, 2.5, 10.0)
    assert (kitti.max_depth, kitti.degree, kitti.max_depth_eval) == (50.0, 1.0, 80.0)
    assert (nyu.input_height, nyu.input_width) == (416, 544)
    assert parse_args(GROUPS, ["--mode", "test", "--dataset", "kitti"]).input_width == 1216


def test_input_size_must_be_a_multiple_of_32(capsys):
    with pytest.raises(SystemExit):
        parse_args(GROUPS, ["--input_height", "100"])
    assert "--input_height 100: must be a positive multiple of 32" in capsys.readouterr().err


def test_written_argument_file_replays_to_the_same_values(tmp_path):
    args = parse_args(GROUPS, ["--model_name", "my run", "--batch_size", "3", "--do_kb_crop",
                               "--dataset", "kitti"])
    path = str(tmp_path / "resolved.txt")
    write_argument_file(args, path)
    replay = parse_args(GROUPS, [path])
    assert vars(replay) == vars(args)
    assert read_argument_file(path)[0] != "#"


@pytest.mark.parametrize("name", ["arguments_train_nyu.txt", "arguments_train_eigen.txt",
                                  "arguments_train_synthetic.txt", "arguments_test_nyu.txt",
                                  "arguments_test_eigen.txt", "arguments_test_synthetic.txt"])
def test_shipped_argument_files_parse(name):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    groups = ("model", "data", "train", "distribute", "eval", "test")
    args = parse_args(groups, [os.path.join(root, name)])
    assert args.dataset in ("nyu", "kitti")


# ------------------------------------------------------------------ numeric ranges, @file cycles
ALL_GROUPS = tuple(GROUPS_TABLE)


def _parse_error(argv, capsys, groups=ALL_GROUPS, parse=None):
    """The single stderr line of a refused parse, from ``error:`` on (exit code 2, no traceback)."""
    with pytest.raises(SystemExit) as excinfo:
        (parse or (lambda a: parse_args(groups, a)))(argv)
    err = capsys.readouterr().err
    assert excinfo.value.code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()[err.index("error: "):]


def test_every_numeric_flag_has_a_range():
    actions = build_parser(ALL_GROUPS)._actions
    numeric = {action.dest for action in actions if action.type in (int, float)}
    assert numeric == set(NUMERIC_FLAGS)


@pytest.mark.parametrize("flag, value, valid", [
    ("batch_size", "0", "an integer >= 1"), ("num_epochs", "-1", "an integer >= 1"),
    ("num_epochs", "0", "an integer >= 1"), ("num_steps", "-1", "an integer >= 0"),
    ("log_freq", "0", "an integer >= 1"), ("save_freq", "0", "an integer >= 1"),
    ("eval_freq", "0", "an integer >= 1"), ("keep_checkpoints", "0", "an integer >= 1"),
    ("gradient_accumulation_steps", "0", "an integer >= 1"),
    ("max_depth", "-1", "a finite number > 0"), ("max_depth", "0", "a finite number > 0"),
    ("max_depth", "nan", "a finite number > 0"), ("max_depth", "inf", "a finite number > 0"),
    ("learning_rate", "0", "a finite number > 0"), ("learning_rate", "inf", "a finite number > 0"),
    ("end_learning_rate", "nan", "a finite number"), ("adam_eps", "0", "a finite number > 0"),
    ("weight_decay", "-0.1", "a finite number >= 0"), ("variance_focus", "1.5", "a number in [0, 1]"),
    ("degree", "-1", "a number in [0, 180]"), ("validation_split", "1", "a number in [0, 1)"),
    ("validation_split", "-0.1", "a number in [0, 1)"), ("min_depth_eval", "0", "a finite number > 0"),
    ("bts_size", "64", "an integer >= 128"), ("input_height", "100", "a positive multiple of 32"),
    ("input_width", "0", "a positive multiple of 32"), ("num_threads", "-2", "an integer >= -1"),
    ("seed", "-1", "an integer in [0, 2147483647]"), ("num_gpus", "0", "an integer >= 1"),
    ("num_cpu_devices", "0", "an integer >= 1"), ("focal", "0", "a finite number > 0"),
    ("fx", "-1", "a finite number > 0"), ("fy", "0", "a finite number > 0"),
    ("cx", "nan", "a finite number"), ("num_shards", "0", "an integer >= 1"),
    ("num_workers", "-1", "an integer >= 0"), ("port", "70000", "an integer in [0, 65535]"),
    ("port", "-1", "an integer in [0, 65535]"), ("parity_images", "0", "an integer >= 1"),
    ("repeats", "0", "an integer >= 1"), ("warmup", "0", "an integer >= 1"),
    ("n_trials", "0", "an integer >= 1"), ("num_train", "0", "an integer >= 1"),
    ("num_test", "-1", "an integer >= 0"), ("height", "0", "an integer >= 1"),
    ("width", "-5", "an integer >= 1"),
])
def test_out_of_range_numeric_flag_is_one_line_error(capsys, flag, value, valid):
    line = _parse_error([f"--{flag}", value], capsys)
    assert line.startswith(f"error: --{flag} {value}: must be {valid}"), line


def test_eval_depth_range_must_be_increasing(capsys):
    line = _parse_error(["--dataset", "nyu", "--min_depth_eval", "20"], capsys)
    assert line == "error: --max_depth_eval 10: must be a finite number > --min_depth_eval (20.0)"


def test_range_boundaries_and_dataset_defaults_are_accepted():
    args = parse_args(ALL_GROUPS, [
        "--num_steps", "0", "--num_threads", "0", "--weight_decay", "0", "--variance_focus", "1",
        "--num_workers", "0", "--port", "0", "--num_test", "0", "--degree", "0", "--seed", "0",
        "--end_learning_rate", "-1", "--validation_split", "0", "--bts_size", "128", "--cx", "-3"])
    assert (args.num_steps, args.port, args.end_learning_rate) == (0, 0, -1.0)
    assert parse_args(ALL_GROUPS, ["--num_threads", "-1", "--variance_focus", "0"]).num_threads == -1
    kitti = parse_args(ALL_GROUPS, ["--dataset", "kitti"])  # None defaults come from the table
    assert (kitti.max_depth, kitti.max_depth_eval, kitti.focal, kitti.height) == (80.0, 80.0, None, None)


@pytest.mark.parametrize("flags", [["--max_depth", "-1"], ["--num_epochs", "-1"], ["--batch_size", "0"],
                                   ["--save_freq", "0"], ["--log_freq", "0"], ["--eval_freq", "0"]])
def test_training_refuses_bad_numbers_before_making_a_run_folder(tmp_path, capsys, flags):
    import bts_main

    argv = ["--filenames_file", str(tmp_path / "train.txt"), "--log_directory", str(tmp_path),
            "--model_name", "run", *flags]
    line = _parse_error(argv, capsys, parse=bts_main.main)
    assert line.startswith(f"error: {flags[0]} {flags[1]}: must be "), line
    assert os.listdir(tmp_path) == []


def test_bad_number_from_the_command_line_has_no_traceback(tmp_path):
    argv = [sys.executable, os.path.join(ROOT, "bts_main.py"), "--filenames_file", str(tmp_path / "t.txt"),
            "--log_directory", str(tmp_path), "--model_name", "run", "--batch_size", "0"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "bts_main.py: error: --batch_size 0: must be an integer >= 1\n"
    assert os.listdir(tmp_path) == []


def test_argument_file_including_itself_is_one_line_error(tmp_path, capsys):
    path = str(tmp_path / "self.txt")
    _write(tmp_path, f"--batch_size 2\n@{path}\n", name="self.txt")
    expected = f"error: argument file {path} includes itself ({path} -> {path})"
    assert _parse_error(["@" + path], capsys) == expected
    assert _parse_error([path], capsys) == expected  # the first-argument argument file rule


def test_argument_files_including_each_other_is_one_line_error(tmp_path, capsys):
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    _write(tmp_path, f"--batch_size 2 @{b}\n", name="a.txt")
    _write(tmp_path, f"# back to a\n@{a}\n", name="b.txt")
    assert _parse_error([a], capsys) == f"error: argument file {a} includes itself ({a} -> {b} -> {a})"
    assert _parse_error(["--num_epochs", "2", "@" + b], capsys) == (
        f"error: argument file {b} includes itself ({b} -> {a} -> {b})")


def test_one_argument_file_included_twice_is_not_a_cycle(tmp_path):
    common = _write(tmp_path, "--batch_size 3\n", name="common.txt")
    top = _write(tmp_path, f"@{common} --num_epochs 2 @{common}\n", name="top.txt")
    args = parse_args(GROUPS, [top])
    assert (args.batch_size, args.num_epochs) == (3, 2)

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The shared argument parser: argument files, overrides, comments, errors, dataset defaults."""
import pytest

from utils.arguments import parse_args, read_argument_file, write_argument_file

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


def test_missing_argument_file_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="cannot read argument file"):
        parse_args(GROUPS, [str(tmp_path / "nope.txt")])


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
    assert "--input_height 100 must be a positive multiple of 32" in capsys.readouterr().err


def test_written_argument_file_replays_to_the_same_values(tmp_path):
    args = parse_args(GROUPS, ["--model_name", "my run", "--batch_size", "3", "--do_kb_crop",
                               "--dataset", "kitti"])
    path = str(tmp_path / "resolved.txt")
    write_argument_file(args, path)
    replay = parse_args(GROUPS, [path])
    assert vars(replay) == vars(args)
    assert read_argument_file(path)[0] != "#"


@pytest.mark.parametrize("name", ["arguments_train_nyu.txt", "arguments_train_eigen.txt",
                                  "arguments_test_nyu.txt", "arguments_test_eigen.txt"])
def test_shipped_argument_files_parse(name):
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    groups = ("model", "data", "train", "distribute", "eval", "test")
    args = parse_args(groups, [os.path.join(root, name)])
    assert args.dataset in ("nyu", "kitti")

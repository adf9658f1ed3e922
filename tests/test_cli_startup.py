# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Quiet and quick start-up: cheap checks before TensorFlow, full --help, hidden TF chatter.

Every test runs the real CLI in a fresh interpreter (``sys.executable``) through a small runner
that reports, after the script exits, whether ``tensorflow`` was imported and the log level the
script left in the environment.
"""
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

from utils.quiet import filter_chatter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs a script (path) or module ('-m:NAME') as __main__, then prints one marker line.
RUNNER = """
import os, runpy, sys
sys.path.insert(0, os.getcwd())
target, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    if target.startswith("-m:"):
        sys.argv[0] = target[3:]
        runpy.run_module(target[3:], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("\\nSTARTUP tensorflow=%s level=%s" % ("tensorflow" in sys.modules,
                                           os.environ.get("TF_CPP_MIN_LOG_LEVEL")), flush=True)
sys.exit(code)
"""
CHATTER = ("oneDNN custom operations", "This TensorFlow binary is optimized", "cpu_feature_guard",
           "absl::InitializeLog")
SCRIPTS = ["bts_main.py", "bts_test.py", "bts_convert_data.py", "bts_tune.py", "bts_demo.py",
           "bts_export.py", "-m:tools.eval_with_pngs", "-m:tools.convert_pytorch_checkpoint",
           "-m:tools.convert_torchvision_imagenet", "-m:tools.synthetic_data"]
OPTIONAL = {"bts_tune.py": ("optuna",), "bts_demo.py": ("flask", "skimage")}


def run_cli(target, *args, env=None, timeout=120):
    """(exit code, stdout without the marker, stderr, tensorflow imported?, log level, seconds)."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update({"PYTHONPATH": ROOT, "COLUMNS": "200", **(env or {})})
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, target, *map(str, args)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    stdout, marker = done.stdout.rsplit("\nSTARTUP ", 1)
    found = re.fullmatch(r"tensorflow=(True|False) level=(\S+)\n", marker)
    assert found, done.stdout + done.stderr
    return done.returncode, stdout, done.stderr, found.group(1) == "True", found.group(2), seconds


def _tiny_image(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG not decoded before the model loads")
    return path


# ------------------------------------------------------------------ cheap checks come first
def test_missing_image_path_is_one_line_within_seconds_without_tensorflow(tmp_path):
    checkpoint = tmp_path / "model.keras"
    checkpoint.write_bytes(b"never read: the image check comes first")
    rc, _, err, imported, _, seconds = run_cli("bts_test.py", "--dataset", "nyu", "--checkpoint_path",
                                               checkpoint, "--image_path", "missing.jpg", "--save_png")
    assert rc == 1 and err == "bts_test.py: error: --image_path 'missing.jpg' does not exist\n", err
    assert not imported and seconds < 10


def test_output_folder_under_a_file_is_one_line_within_seconds_without_tensorflow(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, _, err, imported, _, seconds = run_cli(
        "bts_test.py", "--dataset", "nyu", "--checkpoint_path", tmp_path, "--image_path",
        _tiny_image(tmp_path), "--save_png", "--output_directory", blocker / "out")
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"bts_test.py: error: --output_directory {str(blocker / 'out')!r} is not "
                          f"writable: {blocker} is a file, not a folder"), err
    assert not imported and seconds < 10 and blocker.read_text() == "x"


@pytest.mark.parametrize("target, args, expected", [
    ("bts_test.py", ["--image_path", "IMG"], "bts_test.py: error: --checkpoint_path is required"),
    ("bts_test.py", ["--checkpoint_path", "TMP/no.keras", "--image_path", "IMG"],
     "bts_test.py: error: --checkpoint_path 'TMP/no.keras' does not exist"),
    ("bts_test.py", ["--checkpoint_path", "TMP", "--filenames_file", "TMP/none.txt"],
     "bts_test.py: error: --filenames_file 'TMP/none.txt' does not exist"),
    ("bts_main.py", ["--filenames_file", "IMG", "--data_path", "TMP/nowhere"],
     "bts_main.py: error: --data_path 'TMP/nowhere' does not exist"),
    ("bts_convert_data.py", ["--filenames_file", "TMP", "--tfrecord_path", "TMP/out/x"],
     "error: --filenames_file 'TMP' is a folder; expected a file"),
    ("bts_export.py", ["--export_dir", "IMG/out"], "error: --export_dir 'IMG/out' is not writable"),
    ("-m:tools.eval_with_pngs", ["--pred_path", "TMP/raw", "--gt_path", "TMP"],
     "eval_with_pngs.py: error: --pred_path 'TMP/raw' does not exist"),
])
def test_bad_paths_of_each_script_fail_before_tensorflow_starts(tmp_path, target, args, expected):
    image = str(_tiny_image(tmp_path))
    args = [a.replace("TMP", str(tmp_path)).replace("IMG", image) for a in args]
    rc, _, err, imported, _, _ = run_cli(target, *args)
    expected = expected.replace("TMP", str(tmp_path)).replace("IMG", image)
    assert rc == 1 and err.splitlines()[-1].startswith(expected), err
    assert "Traceback" not in err and not imported


def test_unknown_encoder_is_a_flag_error_before_any_model_code():
    rc, _, err, imported, _, _ = run_cli("bts_export.py", "--export_dir", "x", "--encoder", "resnet18")
    assert rc == 2 and not imported
    assert re.fullmatch(r"bts_export.py: error: --encoder 'resnet18' is unknown; valid encoders: "
                        r"densenet161_bts, .*convnext_tiny\n", err), err


# ------------------------------------------------------------------ --help
def _help_entries(text):
    """(invocation, help text) of each option in an argparse --help."""
    entries, current = [], None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = re.split(r"\s{2,}", line.strip(), maxsplit=1) + [""]
            entries.append(current)
        elif current is not None and line.startswith("    ") and line.strip():
            current[1] = f"{current[1]} {line.strip()}".strip()
        else:
            current = None
    return [(invocation, help_text) for invocation, help_text, *_ in entries]


@pytest.mark.parametrize("target", SCRIPTS)
def test_help_gives_every_option_a_help_text_and_every_value_a_default(target):
    for module in OPTIONAL.get(target, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    rc, out, err, imported, _, seconds = run_cli(target, "--help")
    assert rc == 0 and not imported and seconds < 10, err
    entries = _help_entries(out)
    assert len(entries) > 5 and any(i == "--verbose" for i, _ in entries), out
    for invocation, help_text in entries:
        assert help_text, f"{target}: {invocation} has no help text"
        takes_value = any(not token.startswith("-") for token in invocation.replace(",", "").split())
        if takes_value:
            assert "default" in help_text, f"{target}: {invocation} shows no default: {help_text!r}"


def test_encoder_help_tells_the_official_encoders_from_the_keras_backbones():
    from utils.encoders import ENCODERS, OFFICIAL_ENCODERS

    entries = dict(_help_entries(run_cli("bts_test.py", "--help")[1]))
    text = entries["--encoder ENCODER"]
    official, keras_part = text.split("; keras.applications backbones")
    keras_part, smoke = keras_part.split("; smoke-test encoder")

    def listed(part):  # the names after the group's colon
        return [name.strip() for name in part.split(":", 1)[1].split("(docs")[0].split(",")]

    assert official.startswith("official BTS encoders (torchvision-exact")
    assert listed(official) == list(OFFICIAL_ENCODERS) == [
        "densenet161_bts", "densenet121_bts", "resnet50_bts", "resnet101_bts", "resnext50_bts",
        "resnext101_bts", "mobilenetv2_bts"]
    assert "not the official models" in keras_part
    assert listed(keras_part) == [n for n in ENCODERS if n not in OFFICIAL_ENCODERS and n != "densenet_tiny"]
    assert "resnet50" in listed(keras_part) and "resnet50_bts" not in listed(keras_part)
    assert listed(smoke) == ["densenet_tiny"] and text.endswith("(default: densenet161_bts)")


def test_training_help_shows_the_recipe_defaults():
    entries = dict(_help_entries(run_cli("bts_main.py", "--help")[1]))
    assert entries["--num_epochs NUM_EPOCHS"].endswith("(default: 50)")
    assert entries["--learning_rate LEARNING_RATE"].endswith("(default: 0.0001)")
    assert entries["--adam_eps ADAM_EPS"].endswith("(default: 1e-06)")
    assert entries["--tpu_zone TPU_ZONE"].startswith("GCP zone")


# ------------------------------------------------------------------ quiet by default
def test_log_level_defaults_to_quiet_and_verbose_or_the_users_variable_wins(tmp_path):
    args = ["--checkpoint_path", tmp_path, "--image_path", "missing.jpg"]  # fails before TF
    assert run_cli("bts_test.py", *args)[4] == "2"
    assert run_cli("bts_test.py", *args, "--verbose")[4] == "0"
    assert run_cli("bts_test.py", *args, env={"TF_CPP_MIN_LOG_LEVEL": "1"})[4] == "1"


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    bad_list = tmp_path / "list.txt"
    bad_list.write_text("only_two columns\n")  # read after TF started: a one-line DataError
    args = ["--filenames_file", bad_list, "--tfrecord_path", tmp_path / "out" / "x"]
    rc, _, quiet_err, imported, _, _ = run_cli("bts_convert_data.py", *args)
    assert rc == 1 and imported, quiet_err
    assert not [line for line in quiet_err.splitlines() if any(c in line for c in CHATTER)], quiet_err
    assert quiet_err.splitlines()[-1].startswith(f"error: {bad_list} line 1: expected 3 columns")
    rc, _, verbose_err, _, _, _ = run_cli("bts_convert_data.py", *args, "--verbose")
    # --verbose shows what this CPU's TF prints (the oneDNN notice on Intel, maybe nothing on
    # AMD); the quiet run differs from it by exactly those lines.
    assert rc == 1 and filter_chatter(verbose_err, 2) == quiet_err, verbose_err


def test_chatter_filter_drops_tf_start_up_lines_and_keeps_everything_else():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796184870.372814    4224 port.cc:153] oneDNN custom operations are on.\n"
            "I0000 00:00:1796184870.512331    4224 cpu_feature_guard.cc:227] This TensorFlow binary\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow\n"
            "2026-01-30 22:44:42.456316: W tensorflow/core/platform/x.cc:7] a C++ warning\n"
            "E0000 00:00:1796184870.6    4224 cuda_dnn.cc:8] a C++ error\n"
            "/x/y.py:3: UserWarning: our own warning\n"
            "To enable the following instructions: a line of our own\n")
    assert filter_chatter(text, 2) == ("E0000 00:00:1796184870.6    4224 cuda_dnn.cc:8] a C++ error\n"
                                       "/x/y.py:3: UserWarning: our own warning\n"
                                       "To enable the following instructions: a line of our own\n")
    assert filter_chatter(text, 1).count("\n") == 4  # the C++ warning stays too
    assert filter_chatter(text, 0) == text

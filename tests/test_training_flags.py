# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Training flags that must do what they say: mirrored on CPU, --num_gpus, --num_cpu_devices,
--eval_summary_directory, online eval on any frame size, and a lost multi-worker peer."""
import csv
import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import bts_main
import bts_trainer as trainer_lib
from tiny_run import TINY, train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_SIZE = (70, 100)  # neither side a multiple of 32: online eval must pad as bts_test.py does


@pytest.fixture(scope="module")
def eval_frames(plane_frames):
    """conftest's tilted-plane frames at EVAL_SIZE, listed in their train.txt: the online
    evaluation list (the training frames are plane_data_480x640)."""
    return plane_frames(*EVAL_SIZE, stripe=16)


_argv = train_argv


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT, **extra}


def _run(script, argv, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, argv)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def _error_lines(stderr, prog="bts_main.py"):
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]


# ------------------------------------------------------------------ strategy flags
@pytest.mark.parametrize("flags, expected", [
    (["--distribution_strategy", "mirrored"],
     "--distribution_strategy mirrored: no GPU and only one CPU device"),
    (["--num_gpus", "64"], "--num_gpus 64: only"),
    (["--distribution_strategy", "mirrored", "--num_gpus", "64"], "--num_gpus 64: only"),
    # --num_cpu_devices 0 is refused by the parser (tests/test_arguments.py, exit code 2)
])
def test_strategy_flags_that_cannot_be_honoured_are_one_line_errors(plane_data_480x640, tmp_path,
                                                                    capsys, flags, expected):
    if tf.config.list_physical_devices("GPU") and "--num_gpus" not in flags:
        pytest.skip("a visible GPU makes mirrored valid")
    rc = bts_main.main(_argv(plane_data_480x640, tmp_path, "--num_steps", "1", *flags))
    lines = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(lines) == 1 and expected in lines[0], lines
    if "mirrored: no GPU" in expected:
        assert "--num_cpu_devices N" in lines[0]  # says how to get logical devices
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written


def test_online_eval_without_an_evaluation_list_is_one_line(plane_data_480x640, tmp_path, capsys):
    rc = bts_main.main(_argv(plane_data_480x640, tmp_path, "--num_steps", "1", "--do_online_eval"))
    lines = _error_lines(capsys.readouterr().err)
    assert rc == 1 and lines == ["bts_main.py: error: --do_online_eval needs --filenames_file_eval "
                                 "or --validation_split"], lines
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("strategy", ["mirrored", "auto"])
def test_num_cpu_devices_trains_that_many_replicas_on_cpu(plane_data_480x640, tmp_path, strategy):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("with a GPU, mirrored uses the GPUs")
    out = _run("bts_main.py", _argv(plane_data_480x640, tmp_path, "--num_steps", "2",
                                    "--num_cpu_devices", "2", "--distribution_strategy", strategy))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 replica(s)" in out.stderr and "finished at step 2" in out.stdout
    assert os.path.exists(tmp_path / "run" / "ckpt-2.index")


# ------------------------------------------------------------------ online evaluation
@pytest.fixture(scope="module")
def eval_run(plane_data_480x640, eval_frames, tmp_path_factory):
    """Two training steps with online eval of the 70x100 frames at step 2, eval summaries apart."""
    logs = tmp_path_factory.mktemp("flags_eval")
    out = _run("bts_main.py", _argv(
        plane_data_480x640, logs, "--num_steps", "2", "--do_online_eval", "--eval_freq", "2",
        "--filenames_file_eval", eval_frames / "train.txt", "--data_path_eval", eval_frames,
        "--gt_path_eval", eval_frames, "--eval_summary_directory", logs / "evals"))
    return logs, out


def _scalars(folder):
    """{tag: {step: value}} from the TensorBoard event files in ``folder``."""
    found = {}
    for path in glob.glob(os.path.join(folder, "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


def test_online_eval_scalars_go_to_eval_summary_directory(eval_run):
    logs, out = eval_run
    assert out.returncode == 0, out.stderr[-3000:]
    evals = _scalars(logs / "evals" / "run")  # {eval_summary_directory}/{model_name}
    assert {f"eval/{name}" for name in ("silog", "abs_rel", "rms", "d1")} <= set(evals)
    assert 2 in evals["eval/silog"]
    run_tags = set()
    for path in glob.glob(str(logs / "run" / "summaries" / "events.*")):
        run_tags |= {v.tag for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value}
    assert not {t for t in run_tags if t.startswith("eval/")}  # not written twice


def test_online_eval_on_frames_not_multiple_of_32_matches_bts_test(eval_run, eval_frames, tmp_path):
    logs, out = eval_run
    assert out.returncode == 0, out.stderr[-3000:]
    online = {tag[len("eval/"):]: steps[2] for tag, steps in _scalars(logs / "evals" / "run").items()}
    assert all(np.isfinite(value) for value in online.values()) and online["silog"] > 0
    # bts_test.py on the final model (the weights of step 2) pads the same frames the same way; it
    # scores the mm-quantised depth PNG values, hence the small tolerance.
    table = tmp_path / "metrics.csv"
    # --mixed_precision none: validation is float32 (auto picks bf16 on AMX machines)
    test = _run("bts_test.py", ["--dataset", "nyu", *TINY, "--mixed_precision", "none",
                                "--checkpoint_path", logs / "run" / "model.keras",
                                "--data_path", eval_frames, "--gt_path", eval_frames,
                                "--filenames_file", eval_frames / "train.txt", "--metrics_csv", table])
    assert test.returncode == 0, test.stderr[-3000:]
    with open(table) as handle:
        mean = next(row for row in csv.DictReader(handle) if row["name"] == "mean")
    for name, value in online.items():
        assert value == pytest.approx(float(mean[name]), rel=1e-3, abs=2e-3), name


# ------------------------------------------------------------------ a lost multi-worker peer
# Messages TF 2.21 gives the survivor: peer killed (heartbeats stop), and chief killed (refused).
HEARTBEAT_LOST = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/"
    "task:0/device:CPU:0}} Collective ops is aborted by: Error reported from /job:worker/task:1: "
    "The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n"
    "The tasks have crashed. [Op:CollectiveReduceV2] name: ")
CONNECTION_REFUSED = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/"
    "task:1/device:CPU:0}} Collective ops is aborted by: failed to connect to all addresses; last "
    "error: UNKNOWN: ipv4:127.0.0.1:41255: Failed to connect to remote host: Connection refused\n"
    "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while "
    "calling /tensorflow.WorkerService/CompleteInstance: [Op:CollectiveReduceV2] name: ")


@pytest.mark.parametrize("me, text, lost", [
    (0, HEARTBEAT_LOST, "worker 1 (127.0.0.1:41256)"),
    (1, CONNECTION_REFUSED, "worker 0 (127.0.0.1:41255)"),
])
def test_lost_worker_message_names_the_dead_peer(monkeypatch, tmp_path, me, text, lost):
    cluster = {"worker": ["127.0.0.1:41255", "127.0.0.1:41256"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": me}}))
    err = tf.errors.UnavailableError(None, None, text)
    message = trainer_lib.lost_worker_message(err, str(tmp_path), "python bts_main.py args.txt")
    assert f"lost contact with {lost} of" in message and "\n" not in message
    assert "rerun the same command on every worker (python bts_main.py args.txt)" in message
    monkeypatch.delenv("TF_CONFIG")
    assert trainer_lib.lost_worker_message(err, str(tmp_path), "x") is None  # not a cluster


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_killing_a_worker_stops_the_other_with_one_line(plane_data_480x640, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    argv = _argv(plane_data_480x640, tmp_path, "--num_steps", "1000", "--save_freq", "2")
    procs = []
    for index in range(2):
        env = _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "bts_main.py"), *argv],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not os.path.exists(tmp_path / "run" / "ckpt-2.index"):
            assert procs[0].poll() is None, procs[0].communicate()
            time.sleep(0.5)
        assert os.path.exists(tmp_path / "run" / "ckpt-2.index"), "training never reached step 2"
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        _, err = procs[0].communicate(timeout=120)  # TF notices the missed heartbeats in seconds
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert procs[0].returncode == 1
    lines = _error_lines(err)
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err[-3000:]
    assert f"lost contact with worker 1 ({cluster['worker'][1]})" in lines[0]
    assert "rerun the same command on every worker" in lines[0] and "resumes from" in lines[0]


# ------------------------------------------------------------------ the initial-weights notice
@pytest.mark.parametrize("encoder, way, not_meant", [
    ("densenet121_bts", "run ./init_densenet_161.sh densenet121 to fetch them into "
                        "./models/densenet121_imagenet/weights.h5", "densenet161"),
    ("mobilenetv2", "pass --pretrained_model imagenet to download keras.applications' mobilenetv2 "
                    "weights", "init_densenet_161.sh"),
])
def test_missing_imagenet_weights_notice_names_how_to_get_them_for_that_encoder(
        plane_data_120x160, tmp_path, monkeypatch, caplog, encoder, way, not_meant):
    from bts_main import parse_train_args
    from utils.arguments import train_config

    monkeypatch.chdir(tmp_path)  # no ./models/ here: the default weights file is absent
    argv = _argv(plane_data_120x160, tmp_path / "logs", "--num_steps", "1", "--encoder", encoder,
                 "--bts_size", "128")
    trainer = trainer_lib.Trainer(train_config(parse_train_args(argv)))  # what bts_main.main builds
    with caplog.at_level(logging.INFO, logger="bts.train"):
        assert trainer.restore_or_init() == "random initialisation"
    notices = [r for r in caplog.records if "random initialisation" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING, caplog.text
    assert way in notices[0].getMessage() and not_meant not in notices[0].getMessage(), notices[0].getMessage()


def test_an_encoder_without_imagenet_weights_says_so_instead_of_pointing_at_a_script(
        plane_data_120x160, tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="bts.train"):
        assert bts_main.main(_argv(plane_data_120x160, tmp_path, "--num_steps", "1")) == 0
    notices = [r for r in caplog.records if "ImageNet" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in notices] == [
        (logging.INFO, "densenet_tiny has no ImageNet weights anywhere: it always starts from random "
                       "initialisation")], caplog.text

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Training: recipe (freezing, decay groups, schedule), learning, exact resume, NaN stop, logs."""
import glob
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import bts_losses
import bts_model
from bts_main import parse_train_args
import bts_trainer as trainer_lib
from utils.arguments import frozen_first_blocks, train_config
from tiny_run import train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_argv = train_argv


def _trainer(data, log_dir, *extra, **kwargs):
    return trainer_lib.Trainer(train_config(parse_train_args(_argv(data, log_dir, *extra))), **kwargs)


# ------------------------------------------------------------------ recipe pieces
def test_polynomial_schedule_at_start_middle_and_end():
    config = train_config(parse_train_args(["--filenames_file", "x", "--learning_rate", "1e-4"]))
    assert config.final_learning_rate == pytest.approx(1e-5)  # --end_learning_rate -1: 0.1 x lr
    schedule = trainer_lib.learning_rate_schedule(config.learning_rate, config.final_learning_rate,
                                                  total_steps=100)
    expected = lambda step: (1e-4 - 1e-5) * (1 - step / 100) ** 0.9 + 1e-5  # noqa: E731
    for step in (0, 50, 100, 150):
        assert float(schedule(step)) == pytest.approx(expected(min(step, 100)), rel=1e-5)
    assert float(schedule(100)) == pytest.approx(1e-5)


def test_default_freezing_is_stem_conv_and_encoder_bn_affine(tiny_config):
    model = bts_model.build_bts_model(tiny_config)
    args = parse_train_args(["--filenames_file", "x", "--fix_first_conv_blocks"])
    frozen = set(trainer_lib.apply_freezing(model, args.encoder, frozen_first_blocks(args)))
    trainable = {v.path for v in model.trainable_variables}
    assert "encoder.conv0/kernel" in frozen and "encoder.norm5/gamma" in frozen
    assert "encoder.denseblock1.denselayer1.conv2/kernel" in frozen
    assert "encoder.denseblock2.denselayer1.conv1/kernel" in trainable
    assert "bn5/gamma" in trainable and not frozen & trainable
    bn = model.get_layer("encoder.norm0")
    assert bn.trainable  # still batch statistics in training, as PT


def test_weight_decay_applies_to_encoder_only(tiny_config):
    model = bts_model.build_bts_model(tiny_config)
    args = parse_train_args(["--filenames_file", "x", "--weight_decay", "0.5",
                             "--learning_rate", "0.1", "--end_learning_rate", "0.1"])
    trainer_lib.apply_freezing(model, args.encoder, frozen_first_blocks(args))
    optimizer = trainer_lib.make_optimizer(train_config(args), model, total_steps=10)
    encoder_var = model.get_layer("encoder.denseblock1.denselayer1.conv1").kernel
    decoder_var = model.get_layer("conv5").kernel
    before = {v.path: v.numpy().copy() for v in (encoder_var, decoder_var)}
    zeros = [tf.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables))
    np.testing.assert_allclose(encoder_var.numpy(), before[encoder_var.path] * (1 - 0.1 * 0.5), rtol=1e-5)
    np.testing.assert_array_equal(decoder_var.numpy(), before[decoder_var.path])


def test_validation_split_holds_out_whole_scenes(plane_data_480x640):
    args = parse_train_args(_argv(plane_data_480x640, "/tmp/unused", "--validation_split", "0.34"))
    train, val = trainer_lib.select_samples(train_config(args))
    train_scenes = {trainer_lib.scene_of(s, "nyu") for s in train}
    val_scenes = {trainer_lib.scene_of(s, "nyu") for s in val}
    assert len(val_scenes) == 1 and not train_scenes & val_scenes and len(train) + len(val) == 6


# ------------------------------------------------------------------ learning and resume
def test_loss_falls_when_overfitting_and_frozen_weights_do_not_change(plane_data_480x640, tmp_path):
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_steps", "90", "--learning_rate", "1e-3")
    frozen = {v.path: v.numpy().copy() for v in trainer.model.weights if v.path in trainer.frozen}
    losses = []
    trainer.report = None
    original = trainer.steps.train_step

    def recording_step(batch):
        loss, finite, outputs = original(batch)
        losses.append(float(loss))
        return loss, finite, outputs

    trainer.steps.train_step = recording_step
    trainer.train()
    # Random crops/colour (and each CPU's kernels) make single steps noisy: compare the mean of
    # the last third with the first steps, a margin any machine's rounding leaves intact.
    third = len(losses) // 3
    assert np.mean(losses[-third:]) < 0.7 * np.mean(losses[:10]), losses
    for variable in trainer.model.weights:
        if variable.path in frozen:
            np.testing.assert_array_equal(variable.numpy(), frozen[variable.path], variable.path)


def test_straight_run_equals_interrupted_and_resumed_run(plane_data_480x640, tmp_path):
    straight = _trainer(plane_data_480x640, tmp_path / "a", "--num_steps", "6", "--do_random_rotate")
    straight.train()
    first = _trainer(plane_data_480x640, tmp_path / "b", "--num_steps", "6", "--do_random_rotate")
    first.train(stop_at=3)
    resumed = _trainer(plane_data_480x640, tmp_path / "b", "--num_steps", "6", "--do_random_rotate")
    assert "resumed" in resumed.restore_or_init() and resumed.step == 3
    resumed.train()
    assert resumed.step == 6
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


def test_nan_loss_stops_with_message_and_writes_no_checkpoint(plane_data_480x640, tmp_path):
    def nan_after_two(stats, variance_focus):
        loss = bts_losses.silog_from_statistics(stats, variance_focus)
        return tf.where(holder[0].iterations >= 2, tf.constant(float("nan")), loss)

    holder = []
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_steps", "6", "--save_freq", "1", loss_fn=nan_after_two)
    holder.append(trainer.optimizer)
    with pytest.raises(trainer_lib.TrainingError, match=r"loss became nan at step 3.*ckpt-2"):
        trainer.train()
    names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "run" / "ckpt-*.index")))
    assert names == ["ckpt-1.index", "ckpt-2.index"]


def test_tensorboard_events_hold_scalars_and_depth_images(plane_data_480x640, tmp_path):
    _trainer(plane_data_480x640, tmp_path, "--num_steps", "2", "--log_freq", "1").train()
    tags = set()
    for path in glob.glob(str(tmp_path / "run" / "summaries" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
                if value.tag == "depth_est":
                    image = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy()
                    assert image.shape == (64, 96, 3)
    assert {"silog_loss", "learning_rate", "image", "depth_gt", "depth_est",
            "lpg8x8", "lpg4x4", "lpg2x2", "reduc1x1"} <= tags


def test_gradient_accumulation_runs_and_counts_optimizer_steps(plane_data_480x640, tmp_path):
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_steps", "2", "--batch_size", "1",
                       "--gradient_accumulation_steps", "2")
    result = trainer.train()
    assert trainer.step == 2 and np.isfinite(result["loss"])
    assert trainer.steps_per_epoch == 3  # 6 samples / (1 × 2)


def test_official_step_counts_keep_the_last_partial_batch():
    # PT's DataLoader: ⌈N/B⌉ steps per epoch. NYU's 24,231 samples and KITTI Eigen's 23,158 at batch 4.
    assert trainer_lib.steps_per_epoch(24231, 4) * 50 == 302_900
    assert trainer_lib.steps_per_epoch(23158, 4) * 50 == 289_500
    assert trainer_lib.last_batch_policy(replicas=1, accumulation=1) == "keep"
    assert trainer_lib.last_batch_policy(replicas=2, accumulation=1) == "fill"


def _numbered_list(data, tmp_path):
    """The data's train.txt with focal 500 + line index, so a batch tells which lines it holds."""
    lines = (data / "train.txt").read_text().split("\n")
    numbered = [" ".join(line.split()[:2] + [str(500 + i)]) for i, line in enumerate(filter(None, lines))]
    (tmp_path / "numbered.txt").write_text("\n".join(numbered) + "\n")
    return ["--filenames_file", tmp_path / "numbered.txt"]


def _epoch_batches(trainer):
    """Train one epoch and record the list lines of every step's batch."""
    seen, original = [], trainer.steps.train_step

    def recording_step(batch):
        seen.append(sorted(int(round(f)) - 500 for f in batch["focal"].numpy()))
        return original(batch)

    trainer.steps.train_step = recording_step
    trainer.train()
    return seen


def test_one_device_epoch_ends_with_the_partial_batch(plane_data_480x640, tmp_path):
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_epochs", "1", "--batch_size", "4",
                       *_numbered_list(plane_data_480x640, tmp_path))
    assert trainer.steps_per_epoch == 2 and trainer.total_steps == 2  # ⌈6/4⌉
    batches = _epoch_batches(trainer)
    assert [len(b) for b in batches] == [4, 2]
    assert sorted(sum(batches, [])) == list(range(6))  # every sample once, as PT


def test_accumulation_fills_the_last_batch_with_the_epochs_first_samples(plane_data_480x640, tmp_path):
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_epochs", "1", "--batch_size", "2",
                       "--gradient_accumulation_steps", "2", *_numbered_list(plane_data_480x640, tmp_path))
    assert trainer.steps_per_epoch == 2  # ⌈6/4⌉: PT's count, whole micro-batches
    batches = _epoch_batches(trainer)
    assert [len(b) for b in batches] == [4, 4]
    flat = sum(batches, [])
    assert set(flat) == set(range(6)) and len(flat) == 8  # two of the first batch seen again


# ------------------------------------------------------------------ processes
def _run_main(argv, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bts_main.py"), *argv], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_kill_9_then_rerun_continues_from_saved_step(plane_data_480x640, tmp_path):
    argv = _argv(plane_data_480x640, tmp_path, "--num_steps", "40", "--save_freq", "2")
    proc = _run_main(argv)
    deadline = time.time() + 240
    while time.time() < deadline and not glob.glob(str(tmp_path / "run" / "ckpt-4.index")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = max(int(p.rsplit("-", 1)[1].split(".")[0]) for p in glob.glob(str(tmp_path / "run" / "ckpt-*.index")))
    assert saved >= 4
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / f"ckpt-{saved}"))
    iterations = [k for k in reader.get_variable_to_shape_map() if k.endswith("_iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    assert int(reader.get_tensor(iterations[0])) == saved
    rerun = _run_main(argv[:argv.index("--num_steps")] + ["--num_steps", str(saved + 2)] +
                      argv[argv.index("--num_steps") + 2:])
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"at step {saved}" in out and f"finished at step {saved + 2}" in out


MIRRORED_SCRIPT = r"""
import sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import bts_losses
from bts_main import parse_train_args
import bts_trainer as T
from utils.arguments import train_config

def trainer(choice):
    argv = sys.argv[1:] + ["--distribution_strategy", choice, "--model_name", choice]
    t = T.Trainer(train_config(parse_train_args(argv)))
    t.restore_or_init()
    return t

# One device, by hand: each replica's shard forwarded on its own (BN batch statistics are per
# replica, as in PT's DDP), the silog statistics pooled over the global batch.
single = trainer("default")
batch = next(iter(T.epoch_dataset(single.config.data, single.train_samples, 0, 0, 3, single.samples_per_step)))
stats = 0
for i in range(2):
    depth = single.model({"image": batch["image"][i:i + 1], "focal": batch["focal"][i:i + 1]}, training=True)
    stats += bts_losses.silog_statistics(depth, batch["depth"][i:i + 1], 0.1)
reference = float(bts_losses.silog_from_statistics(stats))
mirrored = trainer("mirrored")
dist = next(iter(mirrored.strategy.experimental_distribute_dataset(
    T.epoch_dataset(mirrored.config.data, mirrored.train_samples, 0, 0, 3, mirrored.samples_per_step))))
loss = float(mirrored.steps.train_step(dist)[0])
print("LOSSES", reference, loss, mirrored.strategy.num_replicas_in_sync)
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_single_device_first_loss(plane_data_480x640, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, str(script), *_argv(plane_data_480x640, tmp_path, "--num_steps", "1")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    line = [row for row in out.stdout.splitlines() if row.startswith("LOSSES")]
    assert line, out.stdout + out.stderr
    single, mirrored, replicas = line[0].split()[1:]
    assert int(replicas) == 2
    assert float(mirrored) == pytest.approx(float(single), rel=1e-4)


@pytest.mark.slow
def test_two_process_multi_worker_run_trains(plane_data_480x640, tmp_path):
    import json
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT,
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bts_main.py"),
             *_argv(plane_data_480x640, tmp_path, "--num_steps", "3", "--save_freq", "3")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
    finals = [row for out in outputs for row in out.splitlines() if row.startswith("finished at step 3")]
    assert len(finals) == 2 and finals[0] == finals[1]  # same loss on both workers
    assert os.path.exists(tmp_path / "run" / "ckpt-3.index")


@pytest.mark.parametrize("policy", ["bf16", "fp16"])
def test_mixed_precision_step_keeps_loss_and_depth_in_float32(plane_data_480x640, tmp_path, policy):
    trainer = _trainer(plane_data_480x640, tmp_path, "--num_steps", "1", "--mixed_precision", policy)
    try:
        assert trainer.model.output.dtype == "float32"
        assert trainer.model.get_layer("conv5").compute_dtype == {"bf16": "bfloat16", "fp16": "float16"}[policy]
        assert trainer.model.get_layer("lpg8x8").compute_dtype == "float32"
        result = trainer.train()
        assert np.isfinite(result["loss"]) and trainer.step == 1
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_before_exiting(plane_data_480x640, tmp_path):
    proc = _run_main(_argv(plane_data_480x640, tmp_path, "--num_steps", "400"))
    deadline = time.time() + 240
    summaries = tmp_path / "run" / "arguments.txt"
    while time.time() < deadline and not summaries.exists():
        time.sleep(0.5)
    time.sleep(8)  # inside the training loop by now
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out and glob.glob(str(tmp_path / "run" / "ckpt-*.index"))

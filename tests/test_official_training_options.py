# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Official training options of PT ``bts_main.py``: ``--use_right`` (KITTI right camera) and
``--bn_no_track_stats`` (every BN in inference mode while training), through the flags."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bts_dataloader as dl
import bts_main
import bts_model
import bts_trainer as trainer_lib
from bts_main import parse_train_args
from tiny_run import train_argv
from tools import synthetic_data as sd
from utils.arguments import train_config
from utils.configs import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVE = "2011_09_26_drive_0001_sync"
FRAMES = 16  # the frame index in 4 bits of the image (see stereo_list)
SIZE = (32, 64)  # frames of the crop size: no random offset, so the image's bands stay in place
LEFT_DEPTH_M, RIGHT_DEPTH_M = 10.0, 40.0  # + the frame index: the GT tells camera and frame
LOW, HIGH = 30, 220  # channel levels, far apart enough to survive the colour augmentation


def test_help_shows_both_flags_in_the_training_group():
    out = subprocess.run([sys.executable, "bts_main.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    training = out.stdout.split("\ntraining:\n")[1].split("\n\n")[0]
    assert "--use_right" in training and "--bn_no_track_stats" in training


# ------------------------------------------------------------------ --use_right
@pytest.fixture(scope="module")
def stereo_list(tmp_path_factory):
    """KITTI-layout frames whose image and GT say which camera and frame they are: image_02 /
    image_03 PNGs of two bands of rows (top: red LOW left / HIGH right, green and blue bits 0-1
    of the frame; bottom: red, green bits 2-3) and their GT (LEFT/RIGHT_DEPTH_M + frame), listed
    as 5-column lines (upstream's --use_right form)."""
    root = tmp_path_factory.mktemp("stereo")
    gt_root = root / "data_depth_annotated"
    lines = []
    for i in range(FRAMES):
        name = f"{i:010d}.png"
        columns = []
        for camera, depth_m in (("image_02", LEFT_DEPTH_M), ("image_03", RIGHT_DEPTH_M)):
            rgb_rel = f"2011_09_26/{DRIVE}/{camera}/data/{name}"
            gt_rel = f"{DRIVE}/proj_depth/groundtruth/{camera}/{name}"
            bits = [camera == "image_03", i & 1, i & 2, i & 4, i & 8, False]
            image = np.repeat(np.where(np.reshape(bits, (2, 1, 3)), HIGH, LOW).astype(np.uint8),
                              SIZE[0] // 2, 0).repeat(SIZE[1], 1)
            for path in (root / rgb_rel, gt_root / gt_rel):
                path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / rgb_rel)
            Image.fromarray(np.full(SIZE, (depth_m + i) * 256, np.uint16)).save(gt_root / gt_rel)
            columns.append((rgb_rel, gt_rel))
        lines.append(f"{columns[0][0]} {columns[0][1]} 721.5377 {columns[1][0]} {columns[1][1]}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "left_only.txt").write_text("\n".join(" ".join(line.split()[:3]) for line in lines) + "\n")
    return root


def _kitti_argv(root, log_dir, *extra, filenames="train.txt"):
    return train_argv(root, log_dir, "--dataset", "kitti", "--filenames_file", root / filenames,
                      "--gt_path", root / "data_depth_annotated", "--input_height", SIZE[0],
                      "--input_width", SIZE[1], "--batch_size", 4, *extra)


def _record_batches(trainer):
    """Replace the compiled step by one that records the batch and advances the step count
    (the data path is under test, not the model)."""
    seen = []

    def recording_step(batch):
        seen.append({k: batch[k].numpy() for k in ("image", "depth")})
        trainer_lib.inner_optimizer(trainer.optimizer).iterations.assign_add(1)
        zeros = tf.zeros_like(batch["depth"])
        maps = ("depth", "depth_8x8_scaled", "depth_4x4_scaled", "depth_2x2_scaled", "reduc1x1")
        return tf.constant(1.0), tf.constant(True), {key: zeros for key in maps}

    trainer.steps.train_step = recording_step
    return seen


def _camera_and_frame(image, depth, normalization):
    """(right camera?, frame) told by the image's channels and, separately, by its GT."""
    middle = dl.normalize_image(tf.fill([1, 1, 3], 0.5), normalization).numpy()[0, 0]
    bands = image.reshape(2, -1, 3).mean(1) > middle  # (2, 3): the two bands' channels
    bits = bands.reshape(-1)[:5].astype(int)
    depth_m = float(np.median(depth))
    from_depth = (depth_m >= RIGHT_DEPTH_M, int(round(depth_m - (RIGHT_DEPTH_M if depth_m >= RIGHT_DEPTH_M
                                                                 else LEFT_DEPTH_M))))
    return (bool(bits[0]), int(bits[1:] @ [1, 2, 4, 8])), from_depth


def test_use_right_reads_each_camera_about_half_the_time_with_its_own_gt(stereo_list, tmp_path):
    epochs = 3
    config = train_config(parse_train_args(_kitti_argv(stereo_list, tmp_path, "--use_right",
                                                       "--num_epochs", epochs)))
    assert config.data.use_right and config.dataset == "kitti"
    trainer = trainer_lib.Trainer(config)
    seen = _record_batches(trainer)
    trainer.train()
    told = [_camera_and_frame(image, depth, config.data.normalization)
            for batch in seen for image, depth in zip(batch["image"], batch["depth"])]
    assert len(told) == epochs * FRAMES
    assert all(by_image == by_depth for by_image, by_depth in told), told  # each image with its own GT
    cameras = [camera for (camera, _), _ in told]
    assert 0.3 < np.mean(cameras) < 0.7  # PT: random() > 0.5
    per_epoch = [told[e * FRAMES:(e + 1) * FRAMES] for e in range(epochs)]
    assert all(sorted(frame for (_, frame), _ in epoch) == list(range(FRAMES)) for epoch in per_epoch)
    # The choice is the pure function of (seed, epoch, line) a resumed epoch recomputes.
    data_seed = int(trainer.state.data_seed.numpy())
    for epoch, epoch_told in enumerate(per_epoch):
        chosen = dl.choose_cameras(trainer.train_samples, dl.epoch_seed(data_seed, epoch, True))
        expected = {i: "/image_03/" in s.rgb_path and "/image_03/" in s.depth_path
                    for i, s in enumerate(chosen)}
        assert {frame: camera for (camera, frame), _ in epoch_told} == expected


def test_without_use_right_only_the_left_camera_is_read(stereo_list, tmp_path):
    config = train_config(parse_train_args(_kitti_argv(stereo_list, tmp_path, "--num_epochs", 2)))
    assert not config.data.use_right
    trainer = trainer_lib.Trainer(config)
    seen = _record_batches(trainer)
    trainer.train()
    told = [_camera_and_frame(i, d, config.data.normalization) for b in seen for i, d in zip(b["image"], b["depth"])]
    assert len(told) == 2 * FRAMES and all(a == b and not a[0] for a, b in told)


def test_use_right_with_a_three_column_line_is_one_line_naming_it(stereo_list, tmp_path, capsys):
    argv = _kitti_argv(stereo_list, tmp_path, "--use_right", "--num_steps", 1, filenames="left_only.txt")
    assert bts_main.main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    listed = stereo_list / "left_only.txt"
    assert len(lines) == 1 and lines[0].startswith(f"bts_main.py: error: {listed} line 1: --use_right "
                                                   "needs the right camera's"), lines


def test_use_right_is_refused_for_nyu(plane_data_120x160, tmp_path):
    with pytest.raises(ConfigError) as info:
        train_config(parse_train_args(train_argv(plane_data_120x160, tmp_path, "--use_right")))
    assert info.value.as_flag_error().startswith("--use_right reads KITTI's right camera")


def test_synthetic_kitti_writes_the_right_camera_with_its_own_ground_truth(tmp_path):
    height, width, seed = 60, 200, 1
    paths = sd.generate_dataset("kitti", str(tmp_path), 2, 1, height, width, seed=seed)
    line = open(paths["train_filenames"]).read().splitlines()[0].split()
    assert len(line) == 5 and [c.replace("image_02", "image_03") for c in line[:2]] == line[3:]
    assert len(open(paths["test_filenames"]).read().splitlines()[0].split()) == 3  # as upstream's
    sample = dl.read_filenames_file(paths["train_filenames"], paths["data_path"], paths["gt_path"])[0]
    date = line[0].split("/")[0]
    left = sd.render_frame("kitti", height, width, (seed, 3, 0), sd.KITTI_FOCALS[date])
    right = sd.render_frame("kitti", height, width, (seed, 3, 0), sd.KITTI_FOCALS[date],
                            baseline=sd.KITTI_BASELINE_M)
    np.testing.assert_array_equal(np.asarray(Image.open(sample.right_rgb_path)), right["rgb"])
    gt = np.asarray(Image.open(sample.right_depth_path)) / 256.0
    valid = gt > 0
    assert valid.mean() > 0.05
    np.testing.assert_allclose(gt[valid], right["depth"][valid], atol=0.5 / 256 + 1e-6)
    # A rectified pair: a left pixel of depth d is seen f·b/d pixels further left in the right image.
    rows, cols = np.nonzero(left["depth"] > 0)
    d = left["depth"][rows, cols]
    target = np.round(cols - left["scene"].focal * sd.KITTI_BASELINE_M / d).astype(int)
    inside = target >= 0
    matched = right["depth"][rows[inside], target[inside]]
    assert np.median(np.abs(matched - d[inside]) / d[inside]) < 0.01


# ------------------------------------------------------------------ --bn_no_track_stats
def _bn_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _snapshot(model):
    return {layer.name: [v.numpy().copy() for v in (layer.moving_mean, layer.moving_variance,
                                                   layer.gamma, layer.beta)]
            for layer in _bn_layers(model)}


def _first_batch(trainer):
    trainer.restore_or_init()
    return next(iter(trainer_lib.epoch_batches(trainer.strategy, trainer_lib.epoch_dataset(
        trainer.config.data, trainer.train_samples, 0, 0, int(trainer.state.data_seed.numpy()),
        trainer.samples_per_step))))


def _one_step(trainer):
    """One real (compiled) training step; returns (BN state before, after, step outputs,
    inference outputs of the batch's last micro-batch with the weights before the step)."""
    batch = _first_batch(trainer)
    micro = trainer.config.data.batch_size
    last = {k: batch[k][-micro:] for k in ("image", "focal")}
    before = _snapshot(trainer.model)
    inference = trainer.steps.maps_model(last, training=False)["depth"].numpy()
    _, finite, outputs = trainer.steps.train_step(batch)
    assert bool(finite)
    return before, _snapshot(trainer.model), outputs["depth"].numpy(), inference


@pytest.mark.parametrize("accumulation", [1, 2])
def test_bn_no_track_stats_keeps_moving_statistics_and_trains_decoder_gamma_beta(
        plane_data_120x160, tmp_path, accumulation):
    config = train_config(parse_train_args(train_argv(
        plane_data_120x160, tmp_path, "--bn_no_track_stats", "--num_steps", 1,
        "--gradient_accumulation_steps", accumulation)))
    assert config.bn_no_track_stats
    trainer = trainer_lib.Trainer(config)
    bns = _bn_layers(trainer.model)
    assert bns and all(isinstance(b, bts_model.BatchNorm) and b.use_moving_statistics for b in bns)
    before, after, outputs, inference = _one_step(trainer)
    for name in before:  # every BN, encoder and decoder (ASPP's nested ones too)
        for index in (0, 1):
            np.testing.assert_array_equal(after[name][index], before[name][index], err_msg=name)
    np.testing.assert_allclose(outputs, inference, rtol=1e-5, atol=1e-5)  # = an inference forward
    decoder = [name for name in before if not name.startswith(bts_model.ENCODER_PREFIX)]
    encoder = [name for name in before if name.startswith(bts_model.ENCODER_PREFIX)]
    assert decoder and encoder
    assert all(not np.array_equal(after[n][2], before[n][2]) and not np.array_equal(after[n][3], before[n][3])
               for n in decoder)  # decoder γ/β still learn
    assert all(np.array_equal(after[n][2], before[n][2]) for n in encoder)  # frozen by the recipe


def test_without_the_flag_training_moves_the_moving_statistics(plane_data_120x160, tmp_path):
    trainer = trainer_lib.Trainer(train_config(parse_train_args(train_argv(
        plane_data_120x160, tmp_path, "--num_steps", 1))))
    assert not any(b.use_moving_statistics for b in _bn_layers(trainer.model))
    batch = _first_batch(trainer)
    before = _snapshot(trainer.model)
    inference = trainer.steps.maps_model(batch, training=False)["depth"].numpy()
    _, _, outputs = trainer.steps.compute_gradients(batch)  # the step's forward and backward, eagerly
    after = _snapshot(trainer.model)
    for name in before:  # every BN: batch statistics, moving averages updated (PT train mode)
        assert not np.array_equal(after[name][0], before[name][0]), name
        assert not np.array_equal(after[name][1], before[name][1]), name
    assert not np.allclose(outputs["depth"].numpy(), inference, rtol=1e-3)


def test_keras_batch_normalization_layers_switch_only_when_their_gamma_beta_are_frozen():
    inputs = keras.Input((4, 4, 2))
    stock = keras.layers.BatchNormalization(name="stock")
    ours = bts_model.BatchNorm(name="ours")
    model = keras.Model(inputs, ours(stock(inputs)))
    with pytest.raises(ConfigError) as info:
        trainer_lib.use_moving_statistics(model)
    assert info.value.field == "bn_no_track_stats" and "stock" in str(info.value)
    for variable in (stock.gamma, stock.beta):  # as apply_freezing leaves an encoder BN
        variable.trainable = False
    assert sorted(trainer_lib.use_moving_statistics(model)) == ["ours", "stock"]
    assert ours.use_moving_statistics and not stock.trainable
    assert [v.name for v in model.trainable_variables] == ["gamma", "beta"]  # ours' γ/β still train
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 4, 4, 2)).astype(np.float32)
    stats = [v.numpy().copy() for v in model.non_trainable_variables]
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-6, atol=1e-6)
    for now, then in zip(model.non_trainable_variables, stats):
        np.testing.assert_array_equal(now.numpy(), then)


MIRRORED_SCRIPT = """
import sys, numpy as np
from bts_main import parse_train_args
import bts_trainer as T
from utils.arguments import train_config
t = T.Trainer(train_config(parse_train_args(sys.argv[1:])))
moving = [v for v in t.model.non_trainable_variables if "moving" in v.path]
decoder_gamma = [v for v in t.model.trainable_variables if v.path.endswith("gamma")]
t.restore_or_init()
before = [v.numpy().copy() for v in moving + decoder_gamma]
t.train()
after = [v.numpy() for v in moving + decoder_gamma]
kept = all(np.array_equal(a, b) for a, b in zip(after[:len(moving)], before[:len(moving)]))
learnt = all(not np.array_equal(a, b) for a, b in zip(after[len(moving):], before[len(moving):]))
print("RESULT", t.strategy.num_replicas_in_sync, kept, learnt)
"""


@pytest.mark.slow
def test_bn_no_track_stats_under_a_mirrored_strategy(plane_data_120x160, tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("with a GPU, mirrored uses the GPUs")
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    argv = train_argv(plane_data_120x160, tmp_path, "--bn_no_track_stats", "--num_steps", 1,
                      "--distribution_strategy", "mirrored", "--num_cpu_devices", 2,
                      "--gradient_accumulation_steps", 2)
    out = subprocess.run([sys.executable, str(script), *map(str, argv)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT,
                                                      "TF_CPP_MIN_LOG_LEVEL": "2"})
    result = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert result == [["2", "True", "True"]], out.stdout + out.stderr[-3000:]

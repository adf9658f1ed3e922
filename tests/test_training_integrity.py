# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Training results that cannot lie: complete restores, self-described preprocessing, a NaN stop
that fires on a diverging run, --seed that fixes the initial weights, exact gradient accumulation.

Each test goes through the path a user takes: ``bts_main.main`` to train, ``bts_test.main`` with
``--checkpoint_path`` set to what training wrote.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bts_main
import bts_model
import bts_test
from bts_main import parse_train_args
import bts_trainer as trainer_lib
from bts_predict import DepthPredictor
from conftest import tiny_model_config
from tiny_run import TINY, train_argv
from utils import checkpoints
from utils.arguments import argument_file_text, model_config, train_config
from utils.configs import MODEL_CONFIG_NAME, BtsConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two noise photos of 70×100 (not a multiple of 32, so the padded path is used too)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (70, 100, 3), np.uint8)).save(folder / f"{name}.png")
    return folder


_train_argv = train_argv


def _predict_npy(photos, checkpoint, out, *extra):
    """Depth maps that ``bts_test.py --image_path`` writes for ``checkpoint``."""
    rc = bts_test.main(["--dataset", "nyu", *TINY, "--checkpoint_path", str(checkpoint),
                        "--image_path", str(photos), "--save_npy",
                        "--output_directory", str(out), *extra])
    assert rc == 0
    return {os.path.basename(p): np.load(p) for p in sorted(glob.glob(f"{out}/**/*.npy", recursive=True))}


def _one_error_line(capsys, prefix):
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    lines = [line for line in err if line.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0]


TRAINED = ("--num_steps", "4", "--save_freq", "2", "--eval_freq", "2", "--keep_checkpoints", "5",
           "--validation_split", "0.34", "--learning_rate", "1e-3")


@pytest.fixture(scope="module")
def trained_run(plane_data_120x160, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("runs")
    rc = bts_main.main(_train_argv(plane_data_120x160, log_dir, *TRAINED))
    assert rc == 0
    return log_dir / "run"


# ------------------------------------------------------------------ item 1: complete restores
def test_every_form_of_one_runs_checkpoint_gives_identical_depth(photos, trained_run, tmp_path):
    reference = _predict_npy(photos, trained_run / "model.keras", tmp_path / "keras")
    assert reference
    for form in (trained_run, trained_run / "ckpt-4"):
        depth = _predict_npy(photos, form, tmp_path / os.path.basename(str(form)))
        assert depth.keys() == reference.keys()
        for name in reference:
            np.testing.assert_allclose(depth[name], reference[name], atol=1e-5, rtol=0,
                                       err_msg=f"{form}: {name}")
    # best/ holds the weights of the step it names, which ckpt-<step> holds too
    record = json.loads((trained_run / "best" / "best_metrics.json").read_text())
    step = record["silog"]["step"]
    best = _predict_npy(photos, trained_run / "best", tmp_path / "best")
    if step == 4:
        same_as = reference
    else:
        assert step == 2, record  # evaluated at 0 (baseline), 2 and 4; the baseline is random
        same_as = _predict_npy(photos, trained_run / "ckpt-2", tmp_path / "ckpt2")
    for name in same_as:
        np.testing.assert_allclose(best[name], same_as[name], atol=1e-5, rtol=0, err_msg=name)


def test_checkpoint_missing_model_variables_is_a_one_line_error(photos, tmp_path, capsys):
    model = bts_model.build_bts_model(tiny_model_config())
    # a checkpoint that holds only the encoder's first layers
    partial = tf.train.Checkpoint(model=tf.train.Checkpoint(
        **{f"layer{i}": layer for i, layer in enumerate(model.layers[:12])}))
    partial.write(str(tmp_path / "partial" / "ckpt-7"))
    rc = bts_test.main(["--dataset", "nyu", *TINY, "--checkpoint_path", str(tmp_path / "partial" / "ckpt-7"),
                        "--image_path", str(photos), "--save_npy",
                        "--output_directory", str(tmp_path / "out")])
    assert rc == 1
    line = _one_error_line(capsys, "bts_test.py: error:")
    assert "ckpt-7" in line and "not in it" in line, line
    assert not glob.glob(str(tmp_path / "out" / "**" / "*.npy"), recursive=True)


# ------------------------------------------------------------------ self-describing checkpoints
def test_run_folder_and_best_carry_the_model_config_the_flags_describe(plane_data_120x160,
                                                                       trained_run):
    args = parse_train_args(_train_argv(plane_data_120x160, trained_run.parent, *TRAINED))
    expected = model_config(args)
    assert expected.encoder == "densenet_tiny" and expected.bts_size == 128 and expected.max_depth == 10
    saved = trained_run / MODEL_CONFIG_NAME
    assert saved.exists() and (trained_run / "ckpt-4.index").exists()
    assert BtsConfig.from_json(saved.read_text()) == expected
    # every form a user passes as --checkpoint_path finds it: ckpt-N, the folder, model.keras, best/
    assert (trained_run / "best" / MODEL_CONFIG_NAME).exists()
    for form in ("ckpt-2", "ckpt-4", "", "model.keras", "best"):
        assert checkpoints.read_model_config(str(trained_run / form)) == expected, form
    assert bts_model.model_config_of(keras.saving.load_model(str(trained_run / "model.keras"))) == expected
    # arguments.txt is the script's rendering of its flags and replays to them
    assert (trained_run / "arguments.txt").read_text() == argument_file_text(args)
    assert vars(parse_train_args([str(trained_run / "arguments.txt")])) == vars(args)


@pytest.mark.parametrize("flag, value, saved", [("--encoder", "mobilenetv2", "encoder densenet_tiny"),
                                                ("--bts_size", "256", "bts_size 128"),
                                                ("--max_depth", "20", "max_depth 10")])
def test_resuming_with_another_model_is_one_line(plane_data_120x160, trained_run, tmp_path, capsys,
                                                 flag, value, saved):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(os.listdir(run))
    assert bts_main.main(_train_argv(plane_data_120x160, tmp_path, *TRAINED, flag, value)) == 1
    line = _one_error_line(capsys, "bts_main.py: error:")
    assert line == (f"bts_main.py: error: {flag} {value} does not match the run folder's {saved} "
                    f"({run / MODEL_CONFIG_NAME})"), line
    assert sorted(os.listdir(run)) == before


def test_a_run_folder_without_model_config_resumes_and_gains_one(plane_data_120x160, trained_run,
                                                                   tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    os.remove(run / MODEL_CONFIG_NAME)  # as folders written before bts_config.json existed
    argv = _train_argv(plane_data_120x160, tmp_path, *TRAINED)
    argv[argv.index("--num_steps") + 1] = "5"
    assert bts_main.main(argv) == 0
    assert (run / "ckpt-5.index").exists()
    assert checkpoints.read_model_config(str(run / "ckpt-5")) == model_config(parse_train_args(argv))


def _folder_bytes(folder):
    return {os.path.relpath(p, folder): open(p, "rb").read()
            for p in sorted(glob.glob(f"{folder}/**/*", recursive=True)) if os.path.isfile(p)}


def test_rerunning_a_finished_run_says_nothing_left_and_changes_nothing(photos, plane_data_120x160,
                                                                         trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _folder_bytes(run)
    argv = _train_argv(plane_data_120x160, tmp_path, *TRAINED)  # the command that trained it
    capsys.readouterr()
    assert bts_main.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"bts_main.py: run folder {run} already finished at step 4 of 4: nothing left to "
                   "train (pass a larger --num_epochs/--num_steps to continue, or --retrain to start "
                   "over)"], out
    assert _folder_bytes(run) == before  # no step, no evaluation, no rewritten file
    # a run killed after its last checkpoint but before model.keras: the rerun writes it
    os.remove(run / "model.keras")
    assert bts_main.main(argv) == 0
    assert "nothing left to train" in capsys.readouterr().out
    written = _predict_npy(photos, run / "model.keras", tmp_path / "keras")
    for name, depth in _predict_npy(photos, run / "ckpt-4", tmp_path / "ckpt").items():
        np.testing.assert_allclose(written[name], depth, atol=1e-5, rtol=0, err_msg=name)


# ------------------------------------------------------------------ item 4: preprocessing travels
def test_keras_file_carries_its_preprocessing_and_rejects_a_conflicting_encoder(
        photos, trained_run, tmp_path, capsys):
    model = keras.saving.load_model(str(trained_run / "model.keras"), compile=False)
    # A predictor told the wrong encoder still normalises as the model was trained.
    predictor = DepthPredictor(model, "nyu", encoder="resnet50")
    assert predictor.preprocessing == bts_model.encoder_spec("densenet_tiny").preprocessing
    assert predictor.preprocessing != bts_model.encoder_spec("resnet50").preprocessing
    rc = bts_test.main(["--dataset", "nyu", "--encoder", "resnet50", "--bts_size", "128",
                        "--checkpoint_path", str(trained_run / "model.keras"),
                        "--image_path", str(photos), "--save_npy",
                        "--output_directory", str(tmp_path / "out")])
    assert rc == 1
    line = _one_error_line(capsys, "bts_test.py: error:")
    assert "densenet_tiny" in line and "--encoder is resnet50" in line, line


# ------------------------------------------------------------------ items 5, 7: initialisation
_WEIGHTS_DIGEST = """
import hashlib, sys
from bts_main import parse_train_args
from bts_trainer import Trainer
from utils.arguments import train_config
trainer = Trainer(train_config(parse_train_args(sys.argv[1:])))
trainer.restore_or_init()
digest = hashlib.sha256()
for variable in trainer.model.weights:
    digest.update(variable.path.encode()); digest.update(variable.numpy().tobytes())
print("DIGEST", digest.hexdigest())
"""


def test_seed_reproduces_initial_weights_in_separate_processes(plane_data_120x160, tmp_path):
    def digest(seed):
        argv = _train_argv(plane_data_120x160, tmp_path / f"s{seed}", "--num_steps", "1")
        argv[argv.index("--seed") + 1] = str(seed)
        out = subprocess.run([sys.executable, "-c", _WEIGHTS_DIGEST, *argv],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONHASHSEED": "random", "PYTHONPATH": ROOT})
        assert out.returncode == 0, out.stderr[-2000:]
        return next(line for line in out.stdout.splitlines() if line.startswith("DIGEST"))

    first, second, other = digest(3), digest(3), digest(4)
    assert first == second
    assert first != other


def test_same_shaped_kernels_start_with_independent_values():
    keras.utils.set_random_seed(5)
    model = bts_model.build_bts_model(tiny_model_config())
    kernels = [w.numpy() for w in model.weights if w.path.endswith(".conv2/kernel")]
    assert len(kernels) == 4 and len({k.shape for k in kernels}) == 1
    for i in range(len(kernels)):
        for j in range(i + 1, len(kernels)):
            assert not np.allclose(kernels[i], kernels[j]), (i, j)
    # and their spread is torchvision's kaiming_normal_ (std = √(2 / fan_in))
    fan_in = np.prod(kernels[0].shape[:3])
    assert np.std(np.concatenate([k.ravel() for k in kernels])) == pytest.approx(
        np.sqrt(2.0 / fan_in), rel=0.15)


# ------------------------------------------------------------------ item 3: NaN stop
def test_diverging_run_stops_at_the_step_and_never_writes_non_finite_weights(plane_data_120x160,
                                                                              tmp_path, capsys):
    rc = bts_main.main(_train_argv(plane_data_120x160, tmp_path, "--num_steps", "40", "--save_freq",
                                   "1", "--learning_rate", "1e3", "--keep_checkpoints", "100"))
    assert rc == 1
    line = _one_error_line(capsys, "bts_main.py: error:")
    assert "at step" in line and "Last good checkpoint" in line, line
    run = tmp_path / "run"
    assert not (run / "model.keras").exists()
    checkpoints = sorted(glob.glob(str(run / "ckpt-*.index")))
    for index in checkpoints:
        reader = tf.train.load_checkpoint(index[: -len(".index")])
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating:
                assert np.all(np.isfinite(reader.get_tensor(name))), (index, name)
    if checkpoints:
        last = max(int(p.rsplit("-", 1)[1].split(".")[0]) for p in checkpoints)
        assert f"ckpt-{last}" in line, line


# ------------------------------------------------------------------ item 6: exact accumulation
@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_accumulated_micro_batches_give_the_large_batch_loss_and_gradient(plane_data_120x160,
                                                                          tmp_path, jit_compile):
    def steps_for(accumulation):
        args = parse_train_args(_train_argv(plane_data_120x160, tmp_path,
                                            "--gradient_accumulation_steps", accumulation,
                                            "--num_steps", "1"))
        keras.utils.set_random_seed(1)
        model = bts_model.build_bts_model(tiny_model_config("nyu"))
        # BN in inference mode (nested ones too): micro-batches then see the same network.
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        optimizer = keras.optimizers.SGD(0.0)
        optimizer.build(model.trainable_variables)
        return model, trainer_lib.StepFunctions(tf.distribute.get_strategy(), model, optimizer,
                                                train_config(args))

    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (4, 64, 96, 1)).astype(np.float32)
    depth[:, :8] = 0.0  # invalid pixels, unevenly spread over the micro-batches
    depth[1, :, :40] = 0.0
    batch = {"image": tf.constant(rng.normal(size=(4, 64, 96, 3)).astype(np.float32)),
             "depth": tf.constant(depth), "focal": tf.constant([518.8579] * 4)}
    results = []
    for accumulation in (1, 4):
        model, steps = steps_for(accumulation)
        fn = tf.function(steps.compute_gradients, jit_compile=True) if jit_compile else steps.compute_gradients
        loss, grads, _ = fn(batch)
        results.append((float(loss), [g.numpy() for g in grads]))
    (loss_big, grads_big), (loss_acc, grads_acc) = results
    assert loss_acc == pytest.approx(loss_big, rel=1e-4)  # float32 sums in another order
    for big, acc, variable in zip(grads_big, grads_acc, model.trainable_variables):
        scale = max(np.abs(big).max(), 1e-8)
        np.testing.assert_allclose(acc / scale, big / scale, atol=2e-4, err_msg=variable.path)

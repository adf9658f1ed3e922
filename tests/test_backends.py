# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts_model.py and bts_losses.py run on Keras's JAX backend (for GPU machines without TF).

The JAX side runs in a child process: Keras picks its backend once, at import.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX_CHILD = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
import bts_model
from benchmarks import common, gpu_check_jax
from bts_losses import silog_loss

work = sys.argv[1]
config = common.model_config("kitti", quick=True)  # the tests' tiny model: the weights must fit
model = bts_model.build_bts_model(config)
model.load_weights(os.path.join(work, "tf.weights.h5"))
data = np.load(os.path.join(work, "inputs.npz"))
depth = model({"image": data["image"], "focal": data["focal"]}, training=False)
loss = silog_loss(depth, data["gt"], 1.0)
# Two training steps on one batch through the benchmark's jitted step (same weights).
step = gpu_check_jax.make_train_step(model, "fp32", 1.0)
batch = {"image": data["image"], "focal": data["focal"], "depth": data["gt"]}
losses = [float(step(batch)) for _ in range(3)]
np.save(os.path.join(work, "jax_depth.npy"), np.asarray(depth))
print(json.dumps({"backend": bts_model.keras.backend.backend(), "loss": float(loss),
                  "train_losses": losses}))
"""


@pytest.mark.slow
def test_jax_backend_reproduces_tensorflow_depth_and_loss(tmp_path):
    import keras

    import bts_model
    from bts_losses import silog_loss

    model = bts_model.build_bts_model(tiny_model_config("kitti"))
    rng = np.random.default_rng(3)
    for layer in model.layers:  # non-trivial BN statistics, so inference BN is really exercised
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    model.save_weights(str(tmp_path / "tf.weights.h5"))
    image = rng.standard_normal((2, 64, 96, 3)).astype(np.float32)
    focal = np.array([721.5377, 707.0493], np.float32)  # KITTI: the focal scales the depth
    gt = rng.uniform(0.0, 80.0, (2, 64, 96, 1)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", image=image, focal=focal, gt=gt)
    tf_depth = np.asarray(model({"image": image, "focal": focal}, training=False))
    tf_loss = float(silog_loss(tf_depth, gt, 1.0))

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", JAX_CHILD, str(tmp_path)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    jax_depth = np.load(tmp_path / "jax_depth.npy")
    assert jax_depth.shape == tf_depth.shape == (2, 64, 96, 1)
    # float32 round-off across two backends' conv kernels: far below a millimetre at KITTI range
    np.testing.assert_allclose(jax_depth, tf_depth, rtol=1e-4, atol=1e-4)
    assert report["loss"] == pytest.approx(tf_loss, rel=1e-4)
    losses = report["train_losses"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # the jitted AdamW step learns


@pytest.mark.slow
def test_gpu_check_jax_quick_run_writes_the_workload_and_cases_in_order(tmp_path):
    output = tmp_path / "gpu_jax.json"
    cases = ["quick_gpu_forward_64x96_b8_fp32", "quick_gpu_forward_64x96_b1_bf16"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check_jax", "--quick",
         "--cases", *cases, "--repeats", "2", "--warmup", "1", "--bench_output", str(output)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(output.read_text())
    assert payload["environment"]["backend"] == "jax" and payload["environment"]["platform"] == "cpu"
    assert [r["name"] for r in payload["model"]] == cases  # the order given on the command line
    for record in payload["model"]:
        assert 0 < record["min_s"] <= record["median_s"] <= record["max_s"]
        assert record["images_per_s"] == pytest.approx(record["batch"] / record["median_s"])
    assert [w["precision"] for w in payload["nyu_test_workload"]] == ["fp32", "bf16"]
    for run in payload["nyu_test_workload"]:
        assert run["images"] == 16 and run["images_per_s"] == pytest.approx(16 / run["seconds"])
    assert "NYU test workload (16 images, fp32)" in result.stdout


def test_unknown_gpu_case_is_a_one_line_error():
    from benchmarks import common

    with pytest.raises(SystemExit, match="--cases gpu_forward_1x1 unknown; valid: gpu_forward_480x640"):
        common.select_gpu_cases(["gpu_forward_1x1"], quick=False)
    names = ["gpu_train_416x544_b16_bf16", "gpu_forward_480x640_b1_fp32"]
    assert [case.name for case in common.select_gpu_cases(names, quick=False)] == names


def test_atomic_writes_work_without_tensorflow(tmp_path, monkeypatch):
    from utils import io

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # "import tensorflow" now fails
    target = tmp_path / "sub" / "result.json"
    io.atomic_write_text(str(target), '{"ok": 1}')
    io.atomic_write_text(str(target), '{"ok": 2}')  # replaces
    assert json.loads(target.read_text()) == {"ok": 2}
    assert os.listdir(target.parent) == ["result.json"]  # no temporary file left behind

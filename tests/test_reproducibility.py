# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``--seed`` reproduces a training run exactly: two ``bts_main.py`` processes with the same seed
leave the same weights (model.keras, best/, the training checkpoint) and the same validation
metrics (log lines, TensorBoard scalars, best_metrics.json); another seed starts elsewhere."""
import glob
import io
import os
import re
import subprocess
import sys
import zipfile
from typing import Dict

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tiny_run import train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_LINE = re.compile(r"step (\d+) eval: (.*)")
STEPS = 4  # 6 training frames, batch 2: the run crosses an epoch boundary (a reshuffle)


def _start(data, eval_data: Dict[str, str], log_dir, seed: int) -> subprocess.Popen:
    """A tiny seeded run with rotation augmentation and validation at steps 0, 2 and 4."""
    argv = train_argv(data, log_dir, "--seed", seed, "--num_steps", STEPS, "--do_random_rotate",
                      "--do_online_eval", "--eval_freq", 2,
                      "--filenames_file_eval", eval_data["test_filenames"],
                      "--data_path_eval", eval_data["data_path_eval"],
                      "--gt_path_eval", eval_data["gt_path_eval"])
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bts_main.py"), *argv], cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _h5_arrays(handle: h5py.File) -> Dict[str, np.ndarray]:
    arrays = {}
    handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                      if isinstance(item, h5py.Dataset) else None)
    return arrays


def _saved_arrays(run) -> Dict[str, Dict[str, np.ndarray]]:
    """Every array the run folder saved: model.keras, the best weights and the last ckpt-N
    (model, optimizer slots, run state)."""
    with zipfile.ZipFile(run / "model.keras") as archive:
        final = _h5_arrays(h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r"))
    (best_file,) = glob.glob(str(run / "best" / "*.weights.h5"))
    best = _h5_arrays(h5py.File(best_file, "r"))
    reader = tf.train.load_checkpoint(str(run / f"ckpt-{STEPS}"))
    checkpoint = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                  if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}
    return {"model.keras": final, "best": best, f"ckpt-{STEPS}": checkpoint}


def _eval_scalars(run) -> Dict[str, Dict[int, float]]:
    """{tag: {step: value}} of the eval/* scalars in the run's TensorBoard files."""
    found: Dict[str, Dict[int, float]] = {}
    for path in glob.glob(str(run / "summaries" / "**" / "events.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("eval/"):
                    found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


@pytest.fixture(scope="module")
def seeded_runs(plane_frames, nyu_data, tmp_path_factory):
    """{name: (run folder, output)}: seed 5 twice and seed 6 once, three processes at a time."""
    data = plane_frames(120, 160, stripe=8)
    root = tmp_path_factory.mktemp("seeded_runs")
    runs = {"first": 5, "again": 5, "other": 6}
    procs = {name: _start(data, nyu_data, root / name, seed) for name, seed in runs.items()}
    outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {outputs[name][-3000:]}"
    return {name: (root / name / "run", outputs[name]) for name in runs}


def _eval_lines(output: str) -> Dict[int, str]:
    return {int(step): text for step, text in EVAL_LINE.findall(output)}


def test_same_seed_gives_identical_weights_in_another_process(seeded_runs):
    first, again = (_saved_arrays(seeded_runs[name][0]) for name in ("first", "again"))
    for kind, arrays in first.items():
        assert arrays and set(arrays) == set(again[kind]), kind
        differing = [name for name, value in arrays.items() if not np.array_equal(value, again[kind][name])]
        assert not differing, f"{kind}: {len(differing)} of {len(arrays)} arrays differ, e.g. {differing[:3]}"


def test_same_seed_gives_identical_validation_metrics(seeded_runs):
    (first, first_out), (again, again_out) = seeded_runs["first"], seeded_runs["again"]
    lines = _eval_lines(first_out)
    assert sorted(lines) == [0, 2, STEPS] and _eval_lines(again_out) == lines
    scalars = _eval_scalars(first)
    assert set(scalars["eval/abs_rel"]) == {0, 2, STEPS}
    assert _eval_scalars(again) == scalars  # exact floats, not the log's 4 decimals
    best = (first / "best" / "best_metrics.json").read_text()
    assert (again / "best" / "best_metrics.json").read_text() == best


def test_another_seed_starts_from_other_weights(seeded_runs):
    # Step 0 evaluates the initial weights, before any training step.
    first, other = (_eval_lines(seeded_runs[name][1])[0] for name in ("first", "other"))
    assert first != other
    first_final, other_final = (_saved_arrays(seeded_runs[name][0])["model.keras"] for name in ("first", "other"))
    kernels = [name for name, value in first_final.items() if value.ndim == 4]  # conv kernels
    assert kernels and all(not np.array_equal(first_final[name], other_final[name]) for name in kernels)

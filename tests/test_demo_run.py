# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""./demo.sh as a user runs it: its predictions on the held-out synthetic rooms look like depth.

The whole script runs in a copy of the repository (the project's .venv linked in), so the data
recipe, the argument files as shipped, the training, the evaluation and the real-photo branch
are what a user gets. Per held-out frame the prediction must correlate with the ground truth
(Pearson r >= 0.8 over valid pixels: the room's layout, not just its scale) and the set must
reach d1 >= 0.85. A tiny model stands in for the official one (BTS_MODELS_DIR), so the
real-photo branch runs without a download.
"""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from utils import image_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = "bts_nyu_v2_pytorch_densenet161"
MIN_PEARSON, MIN_D1 = 0.8, 0.85


def _repository_copy(dest: str) -> None:
    """The tracked files of the checkout (what a fresh clone has), plus the .venv link."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for rel in filter(None, listed.stdout.decode().split("\0")):
        source = os.path.join(ROOT, rel)
        if not os.path.isfile(source):  # deleted in the work tree
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)
    os.symlink(os.path.join(ROOT, ".venv"), os.path.join(dest, ".venv"))


def _stand_in_official_model(models_dir: str) -> None:
    import bts_model
    from conftest import tiny_model_config

    folder = os.path.join(models_dir, OFFICIAL)
    os.makedirs(folder)
    bts_model.build_bts_model(tiny_model_config("nyu")).save(os.path.join(folder, "model.keras"))


def _per_frame_scores(repo: str):
    """Pearson r and d1 of every test frame, from demo.sh's raw uint16 PNGs (mm)."""
    test_root = os.path.join(repo, "demo_data", "nyu", "official_splits", "test")
    lines = open(os.path.join(repo, "demo_data", "nyu", "nyudepthv2_test_files_with_gt.txt")).read().split()
    scores = {}
    for rgb_rel, gt_rel in zip(lines[0::3], lines[1::3]):
        scene, name = rgb_rel.split("/")
        gt = image_io.read_depth_png(os.path.join(test_root, gt_rel), 1000.0)
        pred = image_io.read_depth_png(
            os.path.join(repo, "result_bts_synthetic_nyu", "raw", f"{scene}_{name[:-4]}.png"), 1000.0)
        valid = (gt > 1e-3) & (pred > 0)
        ratio = np.maximum(pred[valid] / gt[valid], gt[valid] / pred[valid])
        scores[rgb_rel] = (float(np.corrcoef(pred[valid], gt[valid])[0, 1]), float(np.mean(ratio < 1.25)))
    return scores


@pytest.mark.slow  # the demo itself: a few minutes of training
def test_demo_predicts_the_layout_of_held_out_rooms_and_real_photos(tmp_path):
    repo, models = str(tmp_path / "repo"), str(tmp_path / "official_models")
    _repository_copy(repo)
    _stand_in_official_model(models)
    env = dict(os.environ, BTS_MODELS_DIR=models, PYTHON=sys.executable)
    result = subprocess.run(["./demo.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]

    scores = _per_frame_scores(repo)
    assert len(scores) == 8
    low = {frame: r for frame, (r, _) in scores.items() if r < MIN_PEARSON}
    assert not low, f"frames whose prediction does not follow the room's layout: {low}"
    assert np.mean([d1 for _, d1 in scores.values()]) >= MIN_D1, scores
    assert len(glob.glob(os.path.join(repo, "result_bts_synthetic_nyu", "cmap", "*.png"))) == 8
    assert len(glob.glob(os.path.join(repo, "result_bts_synthetic_nyu", "ply", "*.ply"))) == 8
    # Only what a user needs: one step checkpoint beside model.keras and best/.
    assert len(glob.glob(os.path.join(repo, "models", "bts_synthetic_nyu", "ckpt-*.index"))) == 1

    # The real-photo branch: every bundled photo predicted with the (stand-in) official model.
    photos = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(repo, "demo_data", "photos")))
    assert photos and "motorcycle" in photos
    for kind, extension in (("cmap", ".png"), ("ply", ".ply")):
        written = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(repo, "result_demo_photos", kind)))
        assert written == photos, (kind, written)
    assert "oneDNN custom operations" not in result.stderr  # quiet by default

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Shared test set-up: quiet TF, THE tiny model and THE synthetic datasets (one definition each).

pyproject.toml puts the repository root on sys.path and pytest puts tests/ there, so test modules
(and tests/tiny_run.py, the tiny CLI runs) import the constants and helpers below with
``from conftest import ...``; fixtures are requested by name as usual.

Dataset fixtures are session-scoped (built once per session, once per worker under xdist) and
READ-ONLY: a test that deletes, truncates or adds files copies the data into its ``tmp_path``.
"""
import os
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
from PIL import Image

from utils.configs import BtsConfig
from utils.encoders import DENSENET_CONFIGS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any test imports TensorFlow


@pytest.fixture(autouse=True)
def _auto_precision_is_float32(monkeypatch):
    """``--mixed_precision auto`` (bts_test.py's and the demo's default) resolves as on a CPU
    without AMX/AVX512-BF16 in every in-process test, whatever CPU runs the suite: numbers
    compared with float32 training or references stay float32 on AMX machines too.
    tests/test_mixed_precision_auto.py patches the same reader with the CPUs it checks."""
    from utils import precision

    monkeypatch.setattr(precision, "read_cpuinfo", lambda path=precision.CPUINFO_PATH: "")

# ------------------------------------------------------------------ the tiny model
# The registered smoke-test encoder (growth 8, 16 initial features, one layer per dense block,
# bottleneck 2: seconds to trace) with the smallest legal decoder width.
TINY_ENCODER = "densenet_tiny"
TINY_BTS_SIZE = 128
TINY_DENSENET = DENSENET_CONFIGS[TINY_ENCODER]  # its DenseNet shape, for converters and references
# As command-line flags: tiny_run.TINY.


def tiny_model_config(dataset: str = "nyu", **fields) -> BtsConfig:
    """The tiny model for ``dataset`` (its max depth and focal scaling); ``fields`` override."""
    return BtsConfig.for_dataset(dataset, **{"encoder": TINY_ENCODER, "bts_size": TINY_BTS_SIZE,
                                             **fields})


@pytest.fixture
def tiny_config() -> BtsConfig:
    """The tiny NYU model (max depth 10 m, no focal scaling)."""
    return tiny_model_config("nyu")


# ------------------------------------------------------------------ image and depth writers
def write_random_rgb(path, height: int, width: int, seed: int) -> None:
    """A uniform-noise uint8 RGB image (format from the extension), folders created."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)).save(path)


def write_random_depth(path, height: int, width: int, scale: float, max_m: float, seed: int,
                       density: float = 1.0) -> None:
    """A uint16 depth PNG (value = metres × ``scale``) uniform in [0, 1.1 × ``max_m``] m, so some
    pixels fall outside the evaluation range; a ``density`` share of pixels is set, the rest 0."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    depth_m = rng.uniform(0, max_m * 1.1, (height, width)) * (rng.random((height, width)) < density)
    Image.fromarray((depth_m * scale).astype(np.uint16)).save(path)


def _write_plane_frames(root: Path, height: int, width: int, stripe: int) -> None:
    """6 NYU-layout frames in 3 scenes (``scene_S/rgb_0000I.jpg``, ``sync_depth_0000I.png``) and
    ``train.txt``: a tilted plane, depth 1 + 6·row/height + 0.5·S + 0.3·I m, in an image that shows
    it (red falls with depth; ``stripe``-pixel stripes give texture; blue tells the scenes apart)."""
    lines = []
    yy, xx = np.mgrid[0:height, 0:width]
    for scene in range(3):
        os.makedirs(root / f"scene_{scene}")
        for index in range(2):
            depth = 1.0 + 6.0 * yy / height + 0.5 * scene + 0.3 * index
            rgb = np.stack([np.clip(255 - 30 * depth, 0, 255), (xx // stripe % 2) * 200,
                            (yy // stripe % 2) * 120 + 20 * scene], -1).astype(np.uint8)
            Image.fromarray(rgb).save(root / f"scene_{scene}/rgb_{index:05d}.jpg", quality=95)
            Image.fromarray((depth * 1000).astype(np.uint16)).save(
                root / f"scene_{scene}/sync_depth_{index:05d}.png")
            lines.append(f"/scene_{scene}/rgb_{index:05d}.jpg /scene_{scene}/sync_depth_{index:05d}.png"
                         " 518.8579")
    (root / "train.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ dataset factories
@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Callable[..., Dict[str, str]]:
    """``make(dataset, num_train, num_test, height, width, seed)``: tools.synthetic_data's
    rendered dataset (keys as ``generate_dataset`` returns them), written once per arguments."""
    from tools.synthetic_data import generate_dataset

    made: Dict[tuple, Dict[str, str]] = {}

    def make(dataset: str, num_train: int, num_test: int, height: int, width: int,
             seed: int) -> Dict[str, str]:
        key = (dataset, num_train, num_test, height, width, seed)
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{dataset}_{num_train}_{num_test}_{height}x{width}_s{seed}")
            made[key] = generate_dataset(dataset, str(folder), num_train, num_test, height, width, seed)
        return dict(made[key])

    return make


@pytest.fixture(scope="session")
def plane_frames(tmp_path_factory) -> Callable[..., Path]:
    """``make(height, width, stripe)``: the folder of :func:`_write_plane_frames`, written once
    per arguments. Frames whose depth a tiny model can learn in a few dozen steps."""
    made: Dict[tuple, Path] = {}

    def make(height: int, width: int, stripe: int) -> Path:
        if (height, width, stripe) not in made:
            root = tmp_path_factory.mktemp(f"plane_{height}x{width}")
            _write_plane_frames(root, height, width, stripe)
            made[height, width, stripe] = root
        return made[height, width, stripe]

    return make


# ------------------------------------------------------------------ the shared datasets
@pytest.fixture(scope="session")
def nyu_data(synthetic_dataset) -> Dict[str, str]:
    """Rendered NYU layout, 96×128: 5 training frames (batch 2 leaves a remainder), 3 test frames
    with GT, seed 3."""
    return synthetic_dataset("nyu", 5, 3, 96, 128, seed=3)


@pytest.fixture(scope="session")
def nyu_data_480x640(synthetic_dataset) -> Dict[str, str]:
    """Rendered NYU layout at full size (the NYU border and Eigen crops need the whole frame):
    8 training frames in 2 scenes, 2 test frames, seed 5."""
    return synthetic_dataset("nyu", 8, 2, 480, 640, seed=5)


@pytest.fixture(scope="session")
def kitti_data(synthetic_dataset) -> Dict[str, str]:
    """Rendered KITTI layout, 24×40: 7 training lines, 4 test lines (some without GT), seed 5."""
    return synthetic_dataset("kitti", 7, 4, 24, 40, seed=5)


@pytest.fixture(scope="session")
def plane_data_480x640(plane_frames) -> Path:
    """Tilted-plane NYU frames at full size (6 frames, 3 scenes, 16-px stripes): a folder with
    ``train.txt`` (paths relative to it), as ``tiny_run.train_argv`` expects."""
    return plane_frames(480, 640, stripe=16)


@pytest.fixture(scope="session")
def plane_data_120x160(plane_frames) -> Path:
    """The same tilted plane at 120×160 (8-px stripes): cheaper training runs."""
    return plane_frames(120, 160, stripe=8)


@pytest.fixture(scope="session")
def nyu_eval_list(tmp_path_factory) -> Path:
    """A NYU-layout test list ``list.txt`` (paths relative to the folder) of 64×96 noise frames:
    bathroom/rgb_00001, bathroom/rgb_00002, living_room/rgb_00003 with GT (mm, 0..11 m) and
    office/rgb_00004 without GT ("None")."""
    root = tmp_path_factory.mktemp("nyu_eval_list")
    lines = []
    for i, scene in enumerate(["bathroom", "bathroom", "living_room"], start=1):
        write_random_rgb(str(root / scene / f"rgb_{i:05d}.jpg"), 64, 96, seed=i)
        write_random_depth(str(root / scene / f"sync_depth_{i:05d}.png"), 64, 96, 1000.0, 10.0, seed=10 + i)
        lines.append(f"{scene}/rgb_{i:05d}.jpg {scene}/sync_depth_{i:05d}.png 518.8579")
    write_random_rgb(str(root / "office" / "rgb_00004.jpg"), 64, 96, seed=4)
    lines.append("office/rgb_00004.jpg None 518.8579")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root

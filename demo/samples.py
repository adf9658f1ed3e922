# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Sample photos for the demo page, read at run time from scikit-image's installed ``data`` module.

``python -m demo.samples --output DIR`` writes them as ``DIR/<name>.png`` (``./demo.sh`` predicts
them with the official model when it has been fetched).

Nothing is downloaded: these images ship inside the scikit-image wheel. The motorcycle comes with
its stereo disparity, so the demo can score a prediction on it against real ground truth. Names
are looked up in a fixed table, never used as paths, so ``../../etc/passwd`` is simply unknown.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from utils.image_io import encode_png
from utils.io import atomic_write_bytes


class Sample(NamedTuple):
    title: str
    loader: Callable[[], np.ndarray]


def _motorcycle_left() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]  # left view; the package also ships its disparity


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


SAMPLES: Dict[str, Sample] = {
    "motorcycle": Sample("Motorcycle (Middlebury stereo, indoor; with ground truth)",
                         _motorcycle_left),
    "coffee": Sample("Coffee cup (close-up)", _skimage("coffee")),
    "chelsea": Sample("Chelsea the cat", _skimage("chelsea")),
    "astronaut": Sample("Astronaut (portrait)", _skimage("astronaut")),
    "rocket": Sample("Rocket (outdoor)", _skimage("rocket")),
}


# Middlebury calibration of skimage's stereo_motorcycle (its docstring): depth = f·B / (d + doffs).
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_DOFFS_PX = 31.086


def motorcycle_depth_m() -> np.ndarray:
    """(500, 741) float32 ground-truth depth in metres of the left motorcycle view; 0 = unknown."""
    from skimage import data

    disparity = np.asarray(data.stereo_motorcycle()[2], dtype=np.float64)
    depth = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_M / (disparity + MOTORCYCLE_DOFFS_PX)
    return np.where(np.isfinite(disparity), depth, 0.0).astype(np.float32)  # +inf = occluded


GROUND_TRUTH: Dict[str, Callable[[], np.ndarray]] = {"motorcycle": motorcycle_depth_m}


@functools.lru_cache(maxsize=len(GROUND_TRUTH))
def sample_ground_truth(name: str) -> Optional[np.ndarray]:
    """Ground-truth depth (H, W) metres of a sample (0 = unknown), or None when it has none."""
    loader = GROUND_TRUTH.get(name)
    return None if loader is None else loader()


def sample_titles() -> Dict[str, str]:
    """name → title of every sample, in display order."""
    return {name: sample.title for name, sample in SAMPLES.items()}


@functools.lru_cache(maxsize=len(SAMPLES))
def sample_png(name: str) -> Optional[bytes]:
    """PNG bytes of sample ``name`` (uint8 RGB), or None for an unknown name."""
    sample = SAMPLES.get(name)
    if sample is None:
        return None
    return encode_png(np.asarray(sample.loader(), dtype=np.uint8), compress_level=6)


def write_samples(folder: str) -> List[str]:
    """Write every sample photo as ``folder/<name>.png``; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name in SAMPLES:
        path = os.path.join(folder, f"{name}.png")
        atomic_write_bytes(path, sample_png(name))
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m demo.samples", description="Write the demo's sample photos.")
    parser.add_argument("--output", required=True, help="folder to write <name>.png into")
    args = parser.parse_args(argv)
    from utils.quiet import quiet_tensorflow

    quiet_tensorflow()  # the image writers import TF
    for path in write_samples(args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

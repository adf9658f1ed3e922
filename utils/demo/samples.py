# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Sample photos for the demo page, read at run time from scikit-image's installed ``data`` module.

Nothing is downloaded: these images ship inside the scikit-image wheel. Names are looked up in a
fixed table, never used as paths, so a request for ``../../etc/passwd`` is simply unknown (404).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np

from utils.image_io import encode_png


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
    "motorcycle": Sample("Motorcycle (Middlebury stereo, indoor)", _motorcycle_left),
    "coffee": Sample("Coffee cup (close-up)", _skimage("coffee")),
    "chelsea": Sample("Chelsea the cat", _skimage("chelsea")),
    "astronaut": Sample("Astronaut (portrait)", _skimage("astronaut")),
    "rocket": Sample("Rocket (outdoor)", _skimage("rocket")),
}


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

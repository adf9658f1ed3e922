# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Shared test set-up: quiet TF, small model configurations (pyproject.toml puts the repo root on sys.path)."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any test imports TensorFlow


@pytest.fixture
def tiny_config():
    """A BtsConfig with a tiny DenseNet (fast to build and trace) and the smallest legal nf."""
    import bts_model

    return bts_model.BtsConfig(
        densenet=bts_model.DenseNetConfig(growth_rate=8, num_init_features=16,
                                          block_config=(1, 1, 1, 1), bn_size=2),
        bts_size=128,
    )

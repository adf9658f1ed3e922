# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Importing this module selects Keras 3's JAX backend: import it before anything imports Keras.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the variable must be set before
``benchmarks.common`` (which imports Keras through ``bts_model``) is imported.
"""
import os

os.environ["KERAS_BACKEND"] = "jax"

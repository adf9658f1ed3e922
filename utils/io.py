# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Atomic file writes through ``tf.io.gfile`` (local paths, ``gs://`` and ``ram://`` alike).

A crash never leaves a half-written file under the final name: data goes to a temporary name in
the same folder and is renamed into place.
"""
from __future__ import annotations

import os
import uuid
from typing import Callable


class _LocalFiles:
    """The part of ``tf.io.gfile`` used here, for local paths where TensorFlow is not installed
    (benchmarks/gpu_check_jax.py on JAX-only GPU machines)."""

    exists = staticmethod(os.path.exists)
    remove = staticmethod(os.remove)
    GFile = staticmethod(open)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def rename(source: str, target: str, overwrite: bool = False) -> None:
        os.replace(source, target)


def _gfile():
    try:
        import tensorflow as tf  # imported lazily: argument parsing must not pay for TF start-up
    except ImportError:
        return _LocalFiles
    return tf.io.gfile


def temporary_path(path: str) -> str:
    """A unique hidden sibling of ``path`` that keeps its suffix (Keras checks suffixes)."""
    folder, base = os.path.split(path)
    return os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{base}")


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file to ``path``; clean up on failure."""
    gfile = _gfile()
    folder = os.path.dirname(path)
    if folder:
        gfile.makedirs(folder)
    tmp = temporary_path(path)
    try:
        write(tmp)
        gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if gfile.exists(tmp):
            gfile.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with _gfile().GFile(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))

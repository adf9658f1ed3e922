# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Atomic file writes through ``tf.io.gfile`` (local paths, ``gs://`` and ``ram://`` alike).

A crash never leaves a half-written file under the final name: data goes to a temporary name in
the same folder and is renamed into place. Also the one-line error types of file I/O:
``DataError`` (a bad input file, list or record) and ``WriteError``.
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Callable


class _LocalFiles:
    """The part of ``tf.io.gfile`` used by the code here, for local paths: where TensorFlow is not
    installed (benchmarks/gpu_check_jax.py on JAX-only GPU machines), and for the checks scripts
    make before they import TensorFlow (:func:`files_for`)."""

    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    remove = staticmethod(os.remove)
    listdir = staticmethod(os.listdir)
    walk = staticmethod(os.walk)
    GFile = staticmethod(open)

    @staticmethod
    def glob(pattern: str) -> list:
        import glob

        return glob.glob(pattern)

    @staticmethod
    def rmtree(path: str) -> None:
        import shutil

        shutil.rmtree(path)

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


def is_local(path: str) -> bool:
    """A path of the local file system (not ``gs://``, ``ram://``, ...)."""
    return "://" not in path


def files_for(path: str):
    """``tf.io.gfile``'s functions for ``path``: os/shutil for local paths (no TensorFlow import),
    ``tf.io.gfile`` for other schemes."""
    return _LocalFiles if is_local(path) else _gfile()


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


class DataError(ValueError):
    """A bad input list, file or record, described in one line naming the file (and line).

    ``field``: the setting whose value is at fault (its flag name), when there is one; scripts
    print :meth:`as_flag_error` so the code below them need not know flag names.
    """

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field

    def as_flag_error(self) -> str:
        return f"--{self.field} {self}" if self.field else str(self)


def first_line(err: BaseException) -> str:
    """The first line of an error's message (TF errors: ``err.message``), or its type's name."""
    message = getattr(err, "message", None) or str(err)
    return message.strip().splitlines()[0] if message.strip() else type(err).__name__


class WriteError(OSError):
    """A file or folder that cannot be written, described in one line naming it and the cause."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # the cause alone, for callers that name the path


def write_errors() -> tuple:
    """The exception types a failed write raises: OSError, and tf.errors.OpError through gfile."""
    try:
        import tensorflow as tf
    except ImportError:
        return (OSError,)
    return (OSError, tf.errors.OpError)


def file_errors(path: str) -> tuple:
    """The exception types that :func:`files_for` ``(path)`` raises: OSError, and for non-local
    paths tf.errors.OpError too."""
    return (OSError,) if is_local(path) else write_errors()


def write_failure_reason(err: BaseException) -> str:
    """The cause of a failed write in a few words: 'No space left on device', 'Read-only file
    system', '/x is not a directory' (TF errors read '<path>; <cause>')."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    message = (getattr(err, "message", None) or str(err)).strip()
    first = message.splitlines()[0] if message else type(err).__name__
    return re.sub(r"\s*\[Op:\w+\].*$", "", first.rsplit("; ", 1)[-1])


def check_writable_folder(folder: str, what: str = "folder") -> None:
    """Prove that files can be written in ``folder`` before any work, leaving no trace.

    Missing folders are created for the check and removed again (the run creates them when it
    writes). Raises WriteError ``"{what} '{folder}' is not writable: {cause}"``.
    """
    local = is_local(folder)
    gfile = files_for(folder)  # local: no TensorFlow, so scripts check before they import it
    errors = file_errors(folder)
    first_missing = None  # the top folder this check creates (removed afterwards)
    if local:
        here = os.path.abspath(folder)
        while not os.path.exists(here) and os.path.dirname(here) != here:
            first_missing, here = here, os.path.dirname(here)
        if not os.path.isdir(here):  # os.makedirs would only say 'File exists'
            reason = f"{here} is a file, not a folder"
            raise WriteError(f"{what} {folder!r} is not writable: {reason}", reason)
    elif not gfile.isdir(folder):
        first_missing = folder
    probe = os.path.join(folder, f".write-probe-{uuid.uuid4().hex[:8]}")
    try:
        gfile.makedirs(folder)
        with gfile.GFile(probe, "wb") as handle:
            handle.write(b"ok\n")
        gfile.remove(probe)
    except errors as err:
        reason = write_failure_reason(err)
        raise WriteError(f"{what} {folder!r} is not writable: {reason}", reason) from None
    finally:
        if first_missing is not None and gfile.exists(first_missing):
            if local:
                import shutil

                shutil.rmtree(first_missing, ignore_errors=True)
            else:
                import tensorflow as tf

                tf.io.gfile.rmtree(first_missing)

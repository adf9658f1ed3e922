# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Quiet TensorFlow start-up: every script calls :func:`quiet_tensorflow` before TF is imported.

By default a script hides TF's start-up chatter: the C++ INFO/WARNING lines
(``TF_CPP_MIN_LOG_LEVEL=2``), the oneDNN notice and absl's "before absl::InitializeLog()" line that
TF 2.21 prints while ``import tensorflow`` runs whatever ``TF_CPP_MIN_LOG_LEVEL`` says (they are
dropped from stderr during that import only; other output of the import is kept), INFO/WARNING of
the ``absl`` and ``tensorflow`` Python loggers, and deprecation warnings raised inside TF/Keras.
``--verbose`` (level 0), or the user's own ``TF_CPP_MIN_LOG_LEVEL``, brings them back.

This module never imports TensorFlow: calling it costs nothing, so scripts call it right after
parsing, before their first TF import.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator

ENV = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = 2  # TF's scale: 0 all, 1 no INFO, 2 no WARNING either, 3 no ERROR either
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# An absl/glog line ('I0000 00:00:1796184870.372814    4224 port.cc:153] ...') or TF's older
# format ('2026-01-30 22:44:42.456316: I tensorflow/core/util/port.cc:153] ...').
_LOG_LINE = re.compile(r"^(?:([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ "
                       r"|\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: ([IWEF]) )\S+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATION = "To enable the following instructions:"  # cpu_feature_guard's second line
_NOISY_MODULES = r"(tensorflow|keras|tf_keras|absl|google\.protobuf)(\.|$)"


def quiet_tensorflow(verbose: bool = False) -> int:
    """Set TF's log level before TF is imported; returns the level in effect (0-3).

    ``verbose``: show everything (``--verbose`` wins over the environment). Otherwise a
    ``TF_CPP_MIN_LOG_LEVEL`` the user set is respected, and the default is 2.
    """
    if verbose:
        os.environ[ENV] = "0"
    elif ENV not in os.environ:
        os.environ[ENV] = str(DEFAULT_LEVEL)
    try:
        level = int(os.environ[ENV])
    except ValueError:  # TF reads a non-number as 0
        level = 0
    if level >= 1 and "tensorflow" not in sys.modules:
        _install_import_filter(level)
    if level >= 2:
        for name in ("absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=_NOISY_MODULES)
    return level


def is_chatter(line: str, level: int) -> bool:
    """Whether one stderr line of TF's import is below ``level`` (TF_CPP_MIN_LOG_LEVEL's scale)."""
    if level < 1:
        return False
    if line.startswith(_ABSL_PREAMBLE):
        return True
    match = _LOG_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1) or match.group(2)] < level


def filter_chatter(text: str, level: int) -> str:
    """``text`` without its chatter lines (and the continuation lines of dropped ones)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        if is_chatter(line, level):
            dropping = True
            continue
        if dropping and line.startswith(_CONTINUATION):
            continue
        dropping = False
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr(level: int) -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python writes alike) and write back what is not chatter.

    On an exception everything captured is written back: it may explain the failure.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            shown = text if failed else filter_chatter(text, level)
            if shown:
                sys.stderr.write(shown)
                sys.stderr.flush()


class _FilteringLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` inside :func:`filtered_stderr`."""

    def __init__(self, loader, level: int) -> None:
        self._loader, self._level = loader, level

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # as a plain import leaves them
        with filtered_stderr(self._level):
            self._loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _TensorFlowImportFilter(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and wraps its loader, once."""

    def __init__(self, level: int) -> None:
        self.level = level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # one import; later ones hit sys.modules anyway
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _FilteringLoader(spec.loader, self.level)
        return spec


def _install_import_filter(level: int) -> None:
    for finder in sys.meta_path:
        if isinstance(finder, _TensorFlowImportFilter):
            finder.level = level
            return
    sys.meta_path.insert(0, _TensorFlowImportFilter(level))

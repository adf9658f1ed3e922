# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Optional dependencies: import one, or say in one line which requirement file installs it.

The core (training, evaluation, prediction, SavedModel/TFLite export) needs ``requirements.txt``
only; tuning, the demo, the ``.mat`` extraction, ONNX export and the PyTorch converters each have
their own file (README "Install"). Their scripts call ``require`` before anything else, so a
missing package is one line and a non-zero exit instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

# Extra pip arguments a requirement file wants: the converters need only the CPU build of PyTorch
# (PyPI's default Linux wheel pulls several GB of CUDA libraries).
PIP_ARGUMENTS = {"requirements-convert.txt": " --index-url https://download.pytorch.org/whl/cpu"}


class MissingRequirement(ImportError):
    """An optional module that cannot be imported; ``str()`` is the one-line fix."""

    def __init__(self, module: str, requirements_file: str, cause: ImportError):
        command = f"pip install -r {requirements_file}{PIP_ARGUMENTS.get(requirements_file, '')}"
        missing = cause.name or ""
        if missing and missing.split(".")[0] != module.split(".")[0]:  # installed, but incomplete
            text = f"{module} cannot be imported ({missing} is missing); {command}"
        else:
            text = f"{module} is not installed; {command}"
        super().__init__(text, name=module)


def import_optional(module: str, requirements_file: str) -> ModuleType:
    """``module``, or MissingRequirement naming ``requirements_file`` (for callers with their own
    error type, e.g. bts_export.py's ONNX format)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingRequirement(module, requirements_file, err) from None


def require(module: str, requirements_file: str, prog: str) -> ModuleType:
    """``module``, or exit 1 after one line ``PROG: error: MODULE is not installed; pip install -r FILE``."""
    try:
        return import_optional(module, requirements_file)
    except MissingRequirement as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None

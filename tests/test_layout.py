# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The floor plan (README "Layout"): a file imports only from the floors below it.

Floors, bottom to top: ``utils/`` (leaf helpers) < core (model, loss, data) < orchestration
(trainer, predictor, export) < tools/ and demo/ < the CLI scripts. Walks every import statement
(module level and inside functions) with ``ast``, so a lazy import cannot hide a broken rule.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE = {"bts_model", "bts_losses", "bts_dataloader"}
ORCHESTRATION = {"bts_trainer", "bts_predict", "bts_export", "bts_video"}
CLIS = {"bts_main", "bts_test", "bts_convert_data", "bts_tune", "bts_demo"}
PROJECT_PACKAGES = {"utils", "tools", "demo", "benchmarks", "tests"}


def _top_level_names(path: str):
    """(imported top-level module name, line) for every import in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def _project_files(folder: str = ""):
    base = os.path.join(ROOT, folder)
    if folder:
        for dirpath, _, files in os.walk(base):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(dirpath, name)
    else:
        for name in sorted(os.listdir(ROOT)):
            if name.endswith(".py"):
                yield os.path.join(ROOT, name)


def _allowed(module: str) -> set:
    """Project modules ``module`` may import (third-party imports are always allowed)."""
    if module == "utils":
        return {"utils"}
    if module in CORE:
        return {"utils"} | ({"bts_losses"} if module == "bts_model" else set())
    if module in ORCHESTRATION:
        return {"utils"} | CORE | ORCHESTRATION
    if module in ("tools", "demo"):
        return {"utils", module} | CORE | ORCHESTRATION
    if module in CLIS:
        return {"utils", "demo"} | CORE | ORCHESTRATION
    if module == "benchmarks":  # measures everything, imported by nothing but its tests
        return {"utils", "tools", "benchmarks"} | CORE | ORCHESTRATION | CLIS
    raise AssertionError(f"{module}: not on the floor plan; add it to tests/test_layout.py and the README")


def _violations(path: str, module: str):
    allowed = _allowed(module)
    project = CORE | ORCHESTRATION | CLIS | PROJECT_PACKAGES
    for name, line in _top_level_names(path):
        if (name in project or name.startswith("bts_")) and name not in allowed:
            yield f"{os.path.relpath(path, ROOT)}:{line} imports {name}"


def _floor_of(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    head = rel.split(os.sep)[0]
    return head if os.sep in rel else os.path.splitext(head)[0]


@pytest.mark.parametrize("folder", ["", "utils", "tools", "demo", "benchmarks"])
def test_every_file_imports_only_from_the_floors_below(folder):
    bad = [v for path in _project_files(folder) for v in _violations(path, _floor_of(path))]
    assert not bad, "floor-plan violations:\n" + "\n".join(bad)


def test_the_model_imports_neither_data_nor_cli_and_the_loader_no_model():
    model = {n for n, _ in _top_level_names(os.path.join(ROOT, "bts_model.py"))}
    loader = {n for n, _ in _top_level_names(os.path.join(ROOT, "bts_dataloader.py"))}
    assert not model & ({"bts_dataloader"} | CLIS | ORCHESTRATION)
    assert "bts_model" not in loader


def test_every_top_level_module_is_on_the_floor_plan():
    names = {os.path.splitext(os.path.basename(p))[0] for p in _project_files()}
    assert names == CORE | ORCHESTRATION | CLIS, names ^ (CORE | ORCHESTRATION | CLIS)


def test_nothing_below_the_scripts_reads_an_argparse_namespace():
    """Configs are built at the edge (utils/arguments.py); core and orchestration take them."""
    below = [os.path.join(ROOT, f"{name}.py") for name in sorted(CORE | ORCHESTRATION)]
    below += [p for p in _project_files("utils") if not p.endswith("arguments.py")]
    bad = [os.path.relpath(p, ROOT) for p in below
           if "argparse" in {n for n, _ in _top_level_names(p)}]
    assert not bad, f"import argparse below the scripts: {bad}"

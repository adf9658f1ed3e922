# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Install: which TensorFlow each requirement file picks per platform, and what an optional script
says when its optional package is missing (README "Install")."""
import glob
import os
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu"}
# (sys_platform, platform_system, platform_machine) -> the TensorFlow that requirements.txt installs
PLATFORMS = {
    ("linux", "Linux", "x86_64"): "tensorflow-cpu",
    ("linux", "Linux", "aarch64"): "tensorflow",
    ("darwin", "Darwin", "arm64"): "tensorflow",
    ("win32", "Windows", "AMD64"): "tensorflow",
}
# Packages that only optional parts use; the core must import without any of them.
OPTIONAL_MODULES = ("optuna", "sqlalchemy", "flask", "werkzeug", "skimage", "scipy", "torch",
                    "tf2onnx", "onnx", "onnxruntime", "playwright", "jax")


def requirements(name: str, seen=None):
    """Requirement objects of a requirement file, ``-r`` includes followed (relative to it)."""
    seen = set() if seen is None else seen
    path = os.path.join(ROOT, name)
    seen.add(name)
    found = []
    for raw in open(path, encoding="utf-8"):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found += requirements(line[3:].strip(), seen)
        elif not line.startswith("-"):
            found.append(Requirement(line))
    return found


def included_files(name: str) -> set:
    seen = set()
    requirements(name, seen)
    return seen


def installed_on(name: str, platform) -> dict:
    """distribution name -> Requirement of ``name`` whose marker holds on ``platform``."""
    sys_platform, system, machine = platform
    env = {"sys_platform": sys_platform, "platform_system": system, "platform_machine": machine,
           "os_name": "nt" if sys_platform == "win32" else "posix"}
    chosen = {}
    for req in requirements(name):
        if req.marker is None or req.marker.evaluate(env):
            assert req.name.lower() not in chosen, f"{name}: {req.name} listed twice for {platform}"
            chosen[req.name.lower()] = req
    return chosen


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_requirements_txt_installs_exactly_one_tensorflow_per_platform(platform):
    tf = [req for name, req in installed_on("requirements.txt", platform).items() if name in TF_DISTRIBUTIONS]
    assert [req.name for req in tf] == [PLATFORMS[platform]]
    assert str(tf[0].specifier) == "==2.21.0"


@pytest.mark.parametrize("platform", sorted(PLATFORMS)[:2])  # the CUDA wheels are Linux-only
def test_requirements_gpu_txt_installs_the_cuda_build_and_no_cpu_wheel(platform):
    tf = [req for name, req in installed_on("requirements-gpu.txt", platform).items()
          if name in TF_DISTRIBUTIONS]
    assert [(req.name, req.extras, str(req.specifier)) for req in tf] == [("tensorflow", {"and-cuda"}, "==2.21.0")]
    assert "requirements.txt" not in included_files("requirements-gpu.txt")


def test_core_pins_are_shared_and_dev_installs_everything():
    core = {req.name.lower() for req in requirements("requirements-core.txt")}
    assert not core & TF_DISTRIBUTIONS  # each top file adds its own build
    for top in ("requirements.txt", "requirements-gpu.txt"):
        assert "requirements-core.txt" in included_files(top)
    files = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "requirements*.txt"))}
    assert included_files("requirements-dev.txt") == files - {"requirements-gpu.txt"}
    pins = {}
    for name in files:
        for req in requirements(name):
            assert str(req.specifier).startswith("=="), f"{name}: {req} is not pinned"
            assert pins.setdefault(req.name.lower(), str(req.specifier)) == str(req.specifier), req.name
    torch_version = re.search(r'TORCH_VERSION="([^"]+)"',
                              open(os.path.join(ROOT, "tools", "pretrained_common.sh")).read()).group(1)
    assert pins["torch"] == f"=={torch_version}"  # the converters' shell scripts install the same


def test_every_requirement_file_the_code_and_docs_name_exists():
    sources = [path for pattern in ("*.py", "*/*.py", "*.sh", "*/*.sh", "*.md", "docs/*.md")
               for path in glob.glob(os.path.join(ROOT, pattern)) if not path.startswith(os.path.join(ROOT, "tests"))]
    named = {m for path in sources for m in re.findall(r"requirements[\w-]*\.txt", open(path).read())}
    assert {"requirements-tune.txt", "requirements-demo.txt", "requirements-mat.txt"} <= named
    assert sorted(n for n in named if not os.path.exists(os.path.join(ROOT, n))) == []


def _run_without(module: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """``python script args`` (or ``python -m script args``) with ``module`` unimportable."""
    run = (f"runpy.run_path({script!r}, run_name='__main__')" if script.endswith(".py") else
           f"runpy.run_module({script!r}, run_name='__main__', alter_sys=True)")
    code = f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = {[script, *args]!r}; {run}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("script, module, requirements_file, prog", [
    ("bts_tune.py", "optuna", "requirements-tune.txt", "bts_tune.py"),
    ("bts_demo.py", "flask", "requirements-demo.txt", "bts_demo.py"),
    ("tools.extract_official_train_test_set_from_mat", "scipy", "requirements-mat.txt",
     "extract_official_train_test_set_from_mat.py"),
])
def test_optional_script_without_its_package_prints_one_line_and_fails(script, module, requirements_file, prog):
    result = _run_without(module, script, "--help")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{prog}: error: {module} is not installed; pip install -r {requirements_file}"]


def test_converter_and_onnx_export_name_their_requirement_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    from tools.convert_pytorch_checkpoint import ConversionError, import_torch

    with pytest.raises(ConversionError, match=r"torch is not installed; pip install -r requirements-convert.txt "
                                              r"--index-url https://download.pytorch.org/whl/cpu$"):
        import_torch()
    import bts_export

    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(bts_export.ExportError, match=r"^--formats onnx needs tf2onnx: tf2onnx is not "
                                                     r"installed; pip install -r requirements-export.txt$"):
        bts_export._optional_module("tf2onnx")


def test_an_installed_package_with_a_missing_dependency_is_named_as_such(tmp_path, monkeypatch):
    from utils.optional import MissingRequirement, import_optional

    (tmp_path / "half_installed.py").write_text("import its_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingRequirement, match=r"^half_installed cannot be imported \(its_missing_dependency "
                                                 r"is missing\); pip install -r requirements-export.txt$"):
        import_optional("half_installed", "requirements-export.txt")


def test_core_modules_import_without_any_optional_package():
    modules = [os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
               for pattern in ("*.py", "utils/*.py", "tools/*.py") for p in glob.glob(os.path.join(ROOT, pattern))]
    modules = [m for m in modules if not m.endswith("__init__")]
    code = (f"import importlib, sys\nfor name in {OPTIONAL_MODULES!r}: sys.modules[name] = None\n"
            f"for module in {sorted(modules)!r}: importlib.import_module(module)\nprint('imported')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr[-2000:]

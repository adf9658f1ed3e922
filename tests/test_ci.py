# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""./test.sh and .ci/run (README "Tests"): which pytest run each makes, that ./test.sh installs no
system package, and that CI runs exactly the test command the README gives.

Each script runs for real from a scratch copy of the repository's layout whose set-up, Python,
ruff and package managers are stubs that record their arguments.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDER = '#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\n'
SYSTEM_TOOLS = ("apt-get", "apt", "sudo", "dpkg")


def _stub(path, name: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(RECORDER.format(name=name))
    os.chmod(path, 0o755)


@pytest.fixture
def scratch(tmp_path):
    """A copy of test.sh and .ci/run next to stub setup_env.sh, .venv/bin/{python,ruff} and, first
    on PATH, stub package managers; returns (folder, run(script, *args) -> (process, calls))."""
    for script in ("test.sh", os.path.join(".ci", "run")):
        os.makedirs(tmp_path / os.path.dirname(script), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, script), tmp_path / script)
    _stub(tmp_path / "setup_env.sh", "setup_env.sh")
    _stub(tmp_path / ".venv" / "bin" / "python", "python")
    _stub(tmp_path / ".venv" / "bin" / "ruff", "ruff")
    for tool in SYSTEM_TOOLS:
        _stub(tmp_path / "bin" / tool, tool)
    calls = tmp_path / "calls.txt"

    def run(script: str, *args: str):
        calls.write_text("")
        env = {**os.environ, "CALLS": str(calls), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        process = subprocess.run([str(tmp_path / script), *args], env=env, capture_output=True, text=True,
                                 timeout=60)
        return process, calls.read_text().splitlines()

    return tmp_path, run


def _readme_test_commands():
    """{command: comment} of the shell block in README's "## Tests" section."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        section = handle.read().split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```shell\n(.*?)```", section, re.S).group(1)
    return {line.split("#")[0].strip(): line.split("#", 1)[1].strip() for line in block.splitlines() if "#" in line}


def test_test_sh_runs_the_tests_not_marked_slow_by_default(scratch):
    _, run = scratch
    process, calls = run("test.sh", "tests/test_model.py", "-k", "lpg")
    assert process.returncode == 0, process.stderr
    assert calls[0] == "setup_env.sh dev"
    assert calls[1].startswith("python -m pytest ") and calls[1].endswith(" -m not slow tests/test_model.py -k lpg")


def test_test_sh_all_runs_every_test(scratch):
    _, run = scratch
    process, calls = run("test.sh", "--all", "-x")
    assert process.returncode == 0, process.stderr
    assert calls[1].startswith("python -m pytest ") and calls[1].endswith(" -x") and "not slow" not in calls[1]


def test_test_sh_installs_no_system_package(scratch):
    _, run = scratch
    for args in ((), ("--all",)):
        _, calls = run("test.sh", *args)
        assert not [call for call in calls if call.split()[0] in SYSTEM_TOOLS], calls


def test_ci_runs_the_readme_ci_command_after_the_linter(scratch):
    folder, run = scratch
    commands = _readme_test_commands()
    assert {"./test.sh", "./test.sh --all"} <= set(commands) and "CI" in commands["./test.sh --all"]
    _stub(folder / "test.sh", "test.sh")  # CI's own steps only
    process, calls = run(os.path.join(".ci", "run"))
    assert process.returncode == 0, process.stderr
    assert calls[0] == "setup_env.sh dev" and calls[-2:] == ["ruff check .", "test.sh --all"]


@pytest.mark.skipif(os.path.exists("/usr/bin/chromium"), reason="Chromium is installed: CI installs nothing")
def test_ci_says_it_installs_chromium_before_it_does_and_goes_on_if_it_cannot(scratch):
    folder, run = scratch
    _stub(folder / "test.sh", "test.sh")
    for tool in ("apt-get", "sudo"):  # no network, no permission: the install fails
        with open(folder / "bin" / tool, "a") as handle:
            handle.write("exit 100\n")
    process, calls = run(os.path.join(".ci", "run"))
    assert process.returncode == 0, process.stderr
    announced = [line for line in process.stdout.splitlines() if "installing chromium" in line]
    assert announced and "apt-get" in announced[0]
    assert any("apt-get update" in call for call in calls) and calls[-1] == "test.sh --all"
    assert "could not install chromium; the browser test will be skipped" in process.stdout

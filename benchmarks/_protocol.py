# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark worker processes driven line by line, and the memory counters they report.

Standard library only: the PyTorch worker (``_official_worker.py``) imports neither TensorFlow
nor Keras, so the two programs timed side by side share nothing but the machine.

A worker reads one JSON request per line on stdin and answers with one line on stdout that
starts with :data:`MARK`; anything else it prints (library chatter) is passed to stderr. While
one worker runs a call the other waits in ``readline``, so interleaved calls do not overlap.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Optional, Sequence

MARK = "@@bench "


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last reset, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource  # fallback: lifetime peak (ru_maxrss is KiB on Linux)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------
def timed_call(call: Callable[[], object]) -> dict:
    """One call of ``call``: wall and CPU seconds (all threads), and when it started (to show
    the interleaving)."""
    started, start, cpu_start = time.time(), time.perf_counter(), time.process_time()
    call()
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
            "started": started}


def serve(handlers: Dict[str, Callable[[dict], dict]]) -> int:
    """Answer requests ``{"cmd": name, ...}`` with ``handlers[name](request)`` until EOF/"exit".

    An exception becomes ``{"error": "Type: message"}`` and the worker keeps serving.
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # prints of the code under test must not mix with the answers
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("cmd") == "exit":
            break
        try:
            answer = handlers[request["cmd"]](request)
        except Exception as err:  # reported to the parent, which stops with it
            answer = {"error": f"{type(err).__name__}: {err}"}
        out.write(MARK + json.dumps(answer) + "\n")
        out.flush()
    return 0


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """A worker answered with an error or died."""


class Worker:
    """One worker process; :meth:`request` sends a request and waits for its answer."""

    def __init__(self, name: str, command: Sequence[str], env: Optional[Dict[str, str]] = None,
                 cwd: Optional[str] = None):
        self.name = name
        self.process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env, cwd=cwd, bufsize=1)

    def request(self, cmd: str, **fields) -> dict:
        try:
            self.process.stdin.write(json.dumps(dict(fields, cmd=cmd)) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"{self.name} worker exited (code {self.process.poll()})") from None
        for line in self.process.stdout:
            if line.startswith(MARK):
                answer = json.loads(line[len(MARK):])
                if "error" in answer:
                    raise WorkerError(f"{self.name} worker, {cmd}: {answer['error']}")
                return answer
            sys.stderr.write(line)
        raise WorkerError(f"{self.name} worker exited (code {self.process.wait()}) during {cmd}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def child_env(**overrides: str) -> Dict[str, str]:
    """This process's environment with quiet TensorFlow logs and ``overrides``."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(overrides)
    return env

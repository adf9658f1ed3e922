# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""``--mixed_precision auto``: the dtype policy that pays on this machine (pure Python, no TF).

The rules (README, docs/performance.md "Mixed precision auto"):

* an explicit value (``none``, ``bf16``, ``fp16``) is kept as it is;
* a TPU: ``bf16`` (its native compute type);
* GPUs visible: ``bf16`` when every one reports compute capability 8.0 or higher (Ampere and
  newer have bf16 tensor cores), else ``none``. ``auto`` never picks ``fp16``: training in fp16
  needs loss scaling and has a narrow range, which is not what "auto" promises;
* CPU only: ``bf16`` when the CPU has AMX-BF16 (``/proc/cpuinfo`` flag ``amx_bf16``), or
  AVX512-BF16 (``avx512_bf16``) on a CPU that is not Intel's, and oneDNN is not switched off
  (``TF_ENABLE_ONEDNN_OPTS=0`` makes bf16 about 45x slower even with AMX); else ``none``.
  Without either feature TF emulates bf16: no faster for inference, several times slower for
  training. An Intel CPU with AVX512-BF16 but no AMX (a Xeon whose AMX a hypervisor hides,
  Cooper Lake) gets ``none``: on such a Xeon oneDNN's bf16 matmuls and convs ran at 0.55x the
  fp32 rate (160 against 285 GFLOP/s, in TensorFlow and PyTorch alike) and the BTS forward pass
  1.6x slower than fp32, while an AMD EPYC (Zen 4) with AVX512-BF16 ran it 1.55x faster.

The TensorFlow side (listing GPUs, logging the choice once) is
``bts_trainer.resolve_mixed_precision``; this module only decides.
"""
from __future__ import annotations

from typing import FrozenSet, Mapping, Optional, Sequence, Tuple

from utils.configs import AUTO_PRECISION, PRECISIONS

CPUINFO_PATH = "/proc/cpuinfo"
# /proc/cpuinfo flag -> how the reason names it, in order of preference.
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
INTEL_VENDOR = "GenuineIntel"  # /proc/cpuinfo vendor_id
MIN_BF16_COMPUTE_CAPABILITY = (8, 0)

GpuInfo = Tuple[str, Optional[Tuple[int, int]]]  # (device name, compute capability or None)


def read_cpuinfo(path: str = CPUINFO_PATH) -> str:
    """The text of ``/proc/cpuinfo``; '' where there is none (macOS, Windows) or it is unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_bf16_features(cpuinfo_text: str) -> FrozenSet[str]:
    """The bf16 features (keys of ``CPU_BF16_FLAGS``) on the ``flags`` lines of a /proc/cpuinfo
    text; a feature counts when any processor lists it."""
    found = set()
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            found.update(flag for flag in value.split() if flag in CPU_BF16_FLAGS)
    return frozenset(found)


def cpu_vendor(cpuinfo_text: str) -> str:
    """The ``vendor_id`` of a /proc/cpuinfo text (``GenuineIntel``, ``AuthenticAMD``, ...); ''
    where it names none (ARM kernels print no vendor_id line)."""
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "vendor_id":
            return value.strip()
    return ""


def onednn_disabled(environ: Mapping[str, str]) -> bool:
    """Whether ``TF_ENABLE_ONEDNN_OPTS`` turns TensorFlow's oneDNN kernels off."""
    return environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false", "off", "no")


def _capability(value) -> Optional[Tuple[int, int]]:
    try:
        major, minor = value
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def resolve_precision(requested: str, *, cpu_flags: FrozenSet[str] = frozenset(),
                      gpus: Sequence[GpuInfo] = (), tpu: bool = False,
                      onednn_off: bool = False, vendor: str = "") -> Tuple[str, str]:
    """(precision, reason): ``requested`` itself unless it is ``auto``; for ``auto`` one of
    ``PRECISIONS`` by the rules of this module's docstring, and a short phrase saying why.

    ``cpu_flags``: :func:`cpu_bf16_features`; ``gpus``: (name, compute capability (major, minor)
    or None when the device reports none) per visible GPU; ``tpu``: the run uses a TPU;
    ``onednn_off``: :func:`onednn_disabled`; ``vendor``: :func:`cpu_vendor`.
    """
    if requested != AUTO_PRECISION:
        if requested not in PRECISIONS:
            raise ValueError(f"--mixed_precision {requested!r} is not one of "
                             f"{', '.join(PRECISIONS + (AUTO_PRECISION,))}")
        return requested, "requested"
    if tpu:
        return "bf16", "TPU"
    if gpus:
        for name, capability in gpus:
            capability = _capability(capability)
            if capability is None:
                return "none", f"GPU {name} reports no compute capability"
            if capability < MIN_BF16_COMPUTE_CAPABILITY:
                return "none", (f"GPU {name} has compute capability {capability[0]}.{capability[1]}, "
                                "below 8.0")
        return "bf16", "GPU compute capability 8.0+"
    feature = next((CPU_BF16_FLAGS[f] for f in CPU_BF16_FLAGS if f in cpu_flags), None)
    if feature is None:
        return "none", "CPU has no AMX/AVX512-BF16"
    if onednn_off:
        return "none", f"CPU has {feature} but TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN off"
    if "amx_bf16" not in cpu_flags and vendor == INTEL_VENDOR:
        return "none", "Intel CPU has AVX512-BF16 but no AMX: bf16 is slower than fp32 there"
    return "bf16", f"CPU has {feature}"


def auto_message(precision: str, reason: str) -> str:
    """The one start-up line saying what ``auto`` became."""
    return f"mixed precision: auto -> {precision} ({reason})"

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Speed benchmarks, run from the repository root as ``python -m benchmarks.NAME`` (docs/performance.md)."""

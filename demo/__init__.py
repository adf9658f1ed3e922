# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The web demo (``bts_demo.py``): Flask app factory, upload checks, sample images, page assets."""

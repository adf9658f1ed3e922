# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The tiny training run the CLI tests share: one argv builder instead of a copy per file."""
from typing import List

TINY = ["--encoder", "densenet_tiny", "--bts_size", "128"]


def train_argv(data, log_dir, *extra) -> List[str]:
    """``bts_main.py`` flags for the tiny encoder on NYU-layout ``data`` (its ``train.txt``),
    64×96 crops, batch 2, seed 3, run folder ``log_dir/run``; ``extra`` flags override."""
    return ["--dataset", "nyu", *TINY, "--data_path", str(data), "--gt_path", str(data),
            "--filenames_file", str(data / "train.txt"), "--input_height", "64",
            "--input_width", "96", "--batch_size", "2", "--seed", "3", "--log_directory",
            str(log_dir), "--model_name", "run", "--log_freq", "1000", "--save_freq", "1000",
            "--adam_eps", "1e-3", *map(str, extra)]

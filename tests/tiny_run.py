# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The tiny training run the CLI tests share: one argv builder instead of a copy per file."""
from typing import List

from conftest import TINY_BTS_SIZE, TINY_ENCODER, tiny_model_config

TINY = ["--encoder", TINY_ENCODER, "--bts_size", str(TINY_BTS_SIZE)]  # conftest's tiny model as flags


def train_argv(data, log_dir, *extra) -> List[str]:
    """``bts_main.py`` flags for the tiny encoder on NYU-layout ``data`` (its ``train.txt``),
    64×96 crops, batch 2, seed 3, run folder ``log_dir/run``; ``extra`` flags override."""
    return ["--dataset", "nyu", *TINY, "--data_path", str(data), "--gt_path", str(data),
            "--filenames_file", str(data / "train.txt"), "--input_height", "64",
            "--input_width", "96", "--batch_size", "2", "--seed", "3", "--log_directory",
            str(log_dir), "--model_name", "run", "--log_freq", "1000", "--save_freq", "1000",
            "--adam_eps", "1e-3", *map(str, extra)]


def save_run_folder(folder, dataset: str = "nyu", seed: int = 0):
    """A tiny model saved the way training leaves a run folder: ``ckpt-1`` (model variables,
    with the ``checkpoint`` index file) and ``bts_config.json``. Returns (model, config)."""
    import keras
    import tensorflow as tf

    import bts_model
    from utils.checkpoints import write_model_config

    config = tiny_model_config(dataset)
    keras.utils.set_random_seed(seed)
    model = bts_model.build_bts_model(config)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder), max_to_keep=1,
                               checkpoint_name="ckpt").save(checkpoint_number=1)
    write_model_config(str(folder), config)
    return model, config

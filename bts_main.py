# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Train BTS: ``python bts_main.py arguments_train_nyu.txt [--flag value ...]``.

Thin CLI: parse the shared arguments, build a :class:`bts_trainer.Trainer`, run it, report.
Re-running the same command resumes from the latest checkpoint of ``log_directory/model_name``.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import Optional, Sequence

TRAIN_GROUPS = ("model", "data", "train", "distribute", "eval")


def parse_train_args(argv: Optional[Sequence[str]] = None):
    from utils.arguments import parse_args

    def validate(parser, args):
        if args.mode != "train":
            parser.error(f"--mode {args.mode!r}: bts_main.py trains; use bts_test.py to test")
        if not args.filenames_file and not args.tfrecord_path:
            parser.error("--filenames_file (or --tfrecord_path, shards from bts_convert_data.py) "
                         "is required")
        if args.tfrecord_path and args.validation_split > 0:
            from bts_trainer import VALIDATION_SPLIT_WITH_SHARDS

            parser.error(VALIDATION_SPLIT_WITH_SHARDS)

    return parse_args(TRAIN_GROUPS, argv, description=__doc__.splitlines()[0], prog="bts_main.py",
                      validate=validate)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_train_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import tensorflow as tf

    from bts_dataloader import DataError
    from utils.checkpoints import CheckpointError
    from bts_predict import online_evaluator
    from bts_trainer import Trainer, TrainingError, lost_worker_message

    try:
        trainer = Trainer(args, evaluate_fn=online_evaluator())
        result = trainer.train()
    except (TrainingError, CheckpointError, DataError) as err:
        print(f"bts_main.py: error: {err}", file=sys.stderr)
        return 1
    except tf.errors.UnavailableError as err:  # a MultiWorkerMirroredStrategy peer died
        command = shlex.join(["python", "bts_main.py", *(sys.argv[1:] if argv is None else argv)])
        message = lost_worker_message(err, os.path.join(args.log_directory, args.model_name),
                                      command)
        if message is None:  # not a multi-worker run: not a lost worker
            raise
        print(f"bts_main.py: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bts_main.py: interrupted; checkpoint saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(f"finished at step {trainer.step}: loss {result['loss']:.4f}; run folder {trainer.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Train BTS: ``python bts_main.py arguments_train_nyu.txt [--flag value ...]``.

Thin CLI: parse the shared arguments, build the :class:`utils.configs.TrainConfig` once, hand it
to a :class:`bts_trainer.Trainer` with the online evaluator, run it, report errors in one line.
Re-running the same command resumes from the latest checkpoint of ``log_directory/model_name``;
once that run has reached its last step, a rerun changes nothing and says "nothing left to train".
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import Callable, Optional, Sequence

TRAIN_GROUPS = ("model", "compute", "data", "train", "distribute", "eval")


def parse_train_args(argv: Optional[Sequence[str]] = None):
    from utils.arguments import parse_args

    def validate(parser, args):
        if args.mode != "train":
            parser.error(f"--mode {args.mode!r}: bts_main.py trains; use bts_test.py to test")
        if not args.filenames_file and not args.tfrecord_path:
            parser.error("--filenames_file (or --tfrecord_path, shards from bts_convert_data.py) "
                         "is required")
        if args.tfrecord_path and args.validation_split > 0:
            from utils.configs import VALIDATION_SPLIT_WITH_SHARDS

            parser.error(f"--validation_split {VALIDATION_SPLIT_WITH_SHARDS}")

    return parse_args(TRAIN_GROUPS, argv, description=__doc__.splitlines()[0], prog="bts_main.py",
                      validate=validate)


def check_inputs(args) -> Optional[str]:
    """The cheap checks, made before TensorFlow starts: the lists, their roots and the checkpoint
    exist (those of the online evaluation when it runs). One error line, or None."""
    files, folders = ["checkpoint_path"], []
    if not args.tfrecord_path:  # shards hold the images; the list's roots need not be here
        files.append("filenames_file")
        folders += ["data_path", "gt_path"]
    if args.do_online_eval and not args.validation_split > 0:  # a split replaces the eval list
        files.append("filenames_file_eval")
        folders += ["data_path_eval", "gt_path_eval"]
    from utils.arguments import check_input_paths

    return check_input_paths(args, files, folders)


def make_evaluate_fn(config) -> Optional[Callable]:
    """The trainer's ``evaluate_fn(model, samples)`` for ``config`` (a TrainConfig), None without
    online validation: ``bts_test.py``'s evaluation loop on the evaluation pipeline."""
    if config.eval_data is None:
        return None
    from bts_predict import online_evaluator

    return online_evaluator(config.eval_data, config.evaluation)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from utils.quiet import quiet_tensorflow

    args = parse_train_args(argv)
    quiet_tensorflow(args.verbose)
    problem = check_inputs(args)
    if problem:
        print(f"bts_main.py: error: {problem}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import tensorflow as tf

    from bts_dataloader import DataError
    from bts_trainer import (Trainer, TrainingError, lost_worker_message, resolve_mixed_precision,
                             resolve_model_ops, uses_tpu)
    from utils.arguments import train_config, training_pixels
    from utils.checkpoints import CheckpointError
    from utils.configs import ConfigError

    try:
        # auto resolved before the config: the run's arguments.txt records what was used
        tpu = uses_tpu(args.distribution_strategy, args.tpu_name)
        args.mixed_precision = resolve_mixed_precision(args.mixed_precision, tpu=tpu)
        model_ops = resolve_model_ops(args.model_ops, tpu=tpu, training_pixels=training_pixels(args))
        config = train_config(args)
        trainer = Trainer(config, evaluate_fn=make_evaluate_fn(config), model_ops=model_ops)
        result = trainer.train()
    except ConfigError as err:  # a setting that cannot work, named by its flag
        print(f"bts_main.py: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except DataError as err:  # a bad list, file or shard set (named by its flag when it is one)
        print(f"bts_main.py: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except (TrainingError, CheckpointError) as err:
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
    if trainer.steps_run == 0:  # the same command rerun after the run reached its last step
        print(nothing_left_message(trainer.run_dir, trainer.step, trainer.total_steps))
        return 0
    print(f"finished at step {trainer.step}: loss {result['loss']:.4f}; run folder {trainer.run_dir}")
    return 0


def nothing_left_message(run_dir: str, step: int, total_steps: int) -> str:
    """The one line for a rerun of a finished run: where it stands and how to go on."""
    where = (f"at step {step} of {total_steps}" if step == total_steps
             else f"at step {step}, past the {total_steps} steps this command asks for")
    return (f"bts_main.py: run folder {run_dir} already finished {where}: nothing left to train "
            "(pass a larger --num_epochs/--num_steps to continue, or --retrain to start over)")


if __name__ == "__main__":
    sys.exit(main())

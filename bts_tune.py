# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Tune BTS hyper-parameters with Optuna on a held-out validation split of the training list.

``python bts_tune.py ARGS_FILE --validation_split 0.1 --num_steps 2000 --n_trials 20
--study_name nyu_lr --storage sqlite:///tuning.db [--search_space space.json]``

Each trial is a short :class:`bts_trainer.Trainer` run (``--num_steps``/``--num_epochs`` as
given) named ``{study_name}_trial{N}`` under ``--log_directory`` (its own TensorBoard run), that
validates on whole scenes/drives held out of ``--filenames_file`` (``--validation_split``); the
official test list is never used. Every validation evaluation after training steps is reported
to the pruner, which can stop a trial early (the step-0 baseline of the initial weights is logged,
not reported). The objective is the last validation value of ``--objective_metric`` (minimised,
or maximised for d1/d2/d3). Re-running the same command continues the study from ``--storage``.

Why not optuna-integration's Keras pruning callback: it hooks ``model.fit``; training here is a
custom loop (``Trainer``), which instead calls ``report(step, metrics)`` after each evaluation, where
``trial.report`` / ``trial.should_prune`` do the same job.

Outputs in ``{log_directory}/{study_name}/``: ``best_arguments.txt`` (the best trial's arguments,
ready for ``python bts_main.py best_arguments.txt``), ``optimization_history.png`` and
``param_importances.png``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import logging
import math
import os
import re
import sys
import warnings
from typing import Any, Dict, Optional, Sequence

from utils.arguments import argument_file_text, check_input_paths, train_config, training_pixels
from utils.configs import ConfigError, TrainConfig
from utils.optional import require
from utils.quiet import quiet_tensorflow

TUNE_GROUPS = ("model", "compute", "data", "train", "distribute", "eval", "tune")
LOG = logging.getLogger("bts.tune")

# Each entry: {"low", "high", "log"?, "type": "float"|"int"} or {"choices": [...]}.
DEFAULT_SEARCH_SPACE: Dict[str, Dict[str, Any]] = {
    "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "end_lr_ratio": {"low": 0.01, "high": 0.5, "log": True},  # end_learning_rate = ratio × lr
    "weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
    "adam_eps": {"low": 1e-8, "high": 1e-2, "log": True},
    "variance_focus": {"low": 0.5, "high": 1.0},
    "degree": {"low": 0.0, "high": 5.0},  # rotation augmentation; 0 turns it off
    "batch_size": {"choices": [2, 4, 8]},
    "gradient_accumulation_steps": {"choices": [1, 2]},
}
TRIAL_RUN = "{study}_trial{number}"
# Flags that describe the tuning itself, left out of the best-arguments file.
TUNE_ONLY = ("n_trials", "study_name", "storage", "search_space", "objective_metric", "pruner")


class TuneError(ValueError):
    """A bad tuning set-up (search-space file, storage), described in one line."""


# --------------------------------------------------------------------------------------------
# Arguments and search space
# --------------------------------------------------------------------------------------------
def parse_tune_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from utils.arguments import parse_args
    from utils.metrics import METRIC_NAMES

    def validate(parser, args):
        if not args.filenames_file:
            parser.error("--filenames_file is required")
        if args.tfrecord_path:
            # Trials validate on scenes held out of the list; records cannot be split by scene.
            parser.error("--tfrecord_path: trials hold out scenes of --filenames_file "
                         "(--validation_split), which shards cannot split; tune from the list's "
                         "image files (drop --tfrecord_path) and train the best arguments from "
                         "shards with bts_main.py")
        if args.objective_metric not in METRIC_NAMES:
            parser.error(f"--objective_metric {args.objective_metric!r} is unknown; "
                         f"choose one of {', '.join(METRIC_NAMES)}")
        if not 0.0 < args.validation_split < 1.0:
            parser.error("--validation_split must be in (0, 1): trials validate on scenes/drives held "
                         "out of the training list, never on the --do_online_eval test list")

    return parse_args(TUNE_GROUPS, argv, description=__doc__.splitlines()[0], prog="bts_tune.py",
                      validate=validate)


def load_search_space(path: str) -> Dict[str, Dict[str, Any]]:
    """The default space with entries replaced from the JSON file ``path``; ``null`` drops one."""
    space = copy.deepcopy(DEFAULT_SEARCH_SPACE)
    if not path:
        return space
    try:
        with open(path, encoding="utf-8") as handle:
            overrides = json.load(handle)
    except OSError as err:
        raise TuneError(f"--search_space {path!r}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise TuneError(f"--search_space {path!r}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(overrides, dict):
        raise TuneError(f"--search_space {path!r}: expected a JSON object of parameter specs")
    for name, spec in overrides.items():
        if name not in DEFAULT_SEARCH_SPACE:
            raise TuneError(f"--search_space {path!r}: unknown parameter {name!r}; "
                            f"tunable: {', '.join(DEFAULT_SEARCH_SPACE)}")
        if spec is None:
            space.pop(name)
            continue
        _check_spec(path, name, spec)
        space[name] = spec
    return space


def _check_spec(path: str, name: str, spec: Any) -> None:
    where = f"--search_space {path!r}: {name!r}"
    if not isinstance(spec, dict):
        raise TuneError(f"{where} must be an object with low/high or choices, or null")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise TuneError(f"{where}: choices must be a non-empty list")
        return
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise TuneError(f"{where}: needs numeric low and high (or choices)")
    if not low <= high or (spec.get("log") and low <= 0):
        raise TuneError(f"{where}: needs low <= high (and low > 0 with log)")
    if spec.get("type", "float") not in ("float", "int"):
        raise TuneError(f"{where}: type must be 'float' or 'int'")


def suggest(trial, space: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """One value per search-space entry, drawn by ``trial``."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec.get("type") == "int":
            values[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                             log=bool(spec.get("log")))
        else:
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log")))
    return values


def tuned_values(params: Dict[str, Any], learning_rate: float) -> Dict[str, Any]:
    """The flag values ``params`` set: end_lr_ratio × the (tuned or given) learning rate becomes
    end_learning_rate, and a rotation degree of 0 turns the rotation off."""
    values = {name: value for name, value in params.items() if name != "end_lr_ratio"}
    if "end_lr_ratio" in params:
        values["end_learning_rate"] = params["end_lr_ratio"] * values.get("learning_rate", learning_rate)
    if "degree" in params:
        values["do_random_rotate"] = params["degree"] > 0
    return values


def trial_values(args: argparse.Namespace, params: Dict[str, Any], number: int) -> Dict[str, Any]:
    """Flag values of trial ``number``: tuned values, own run name, validation split only."""
    values = tuned_values(params, args.learning_rate)
    values.update(model_name=TRIAL_RUN.format(study=args.study_name, number=number),
                  retrain=True,  # a fresh start even if an old folder of that name exists
                  do_online_eval=False,  # validation comes from --validation_split, never the test list
                  filenames_file_eval="", best_metric=args.objective_metric)
    return values


# Tuned flags that live in the training pipeline (TrainConfig.data), not in TrainConfig itself.
PIPELINE_FLAGS = ("batch_size", "degree", "do_random_rotate")


def trial_config(base: TrainConfig, args: argparse.Namespace, params: Dict[str, Any],
                 number: int) -> TrainConfig:
    """The TrainConfig of trial ``number``: ``base`` (the study's flags) with the trial's values,
    and the trial's own arguments.txt."""
    values = trial_values(args, params, number)
    text = argument_file_text({**vars(args), **values})
    data = {name: values.pop(name) for name in PIPELINE_FLAGS if name in values}
    values.pop("filenames_file_eval")  # eval_data's list, cleared below
    eval_data = base.eval_data and dataclasses.replace(base.eval_data, filenames_file="")
    return dataclasses.replace(base, data=dataclasses.replace(base.data, **data), eval_data=eval_data,
                               argument_text=text, **values)


def best_arguments(args: argparse.Namespace, params: Dict[str, Any]) -> Dict[str, Any]:
    """The user's flags with the best values, minus the tuning flags (for bts_main.py)."""
    best = {**vars(args), **tuned_values(params, args.learning_rate)}
    best.update(model_name=f"{args.study_name}_best",
                validation_split=0.0)  # the final run trains on the whole list (--num_steps as tuned: edit it)
    for name in TUNE_ONLY:
        del best[name]
    return best


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------
def direction_of(metric: str) -> str:
    from utils.metrics import HIGHER_IS_BETTER

    return "maximize" if metric in HIGHER_IS_BETTER else "minimize"


def make_pruner(name: str):
    import optuna

    if name == "median":  # trials report trained steps only (never the step-0 baseline)
        return optuna.pruners.MedianPruner(n_startup_trials=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(args: argparse.Namespace, pruner=None):
    """Create the study in ``--storage`` or load it (resume); the sampler seed moves on per run."""
    import optuna

    # Heartbeats and the matplotlib plots are marked experimental; they are pinned with optuna.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from sqlalchemy.exc import SQLAlchemyError

    storage: Any = args.storage
    try:
        if storage.startswith(("sqlite:", "postgresql:", "mysql:")):
            # Heartbeats mark trials of a killed run as failed when the study is resumed.
            storage = optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
        study = optuna.create_study(study_name=args.study_name, storage=storage, load_if_exists=True,
                                    direction=direction_of(args.objective_metric),
                                    pruner=pruner or make_pruner(args.pruner))
    except (SQLAlchemyError, ImportError, OSError) as err:  # bad URL, no driver, unwritable file
        raise TuneError(storage_error(args.storage, err)) from None
    except ValueError as err:  # e.g. an existing study with the other direction
        raise TuneError(f"--study_name {args.study_name!r} in --storage {args.storage!r}: {err}") from None
    seed = None if args.seed is None else args.seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def storage_error(url: str, err: BaseException) -> str:
    """One line for an Optuna storage that cannot be opened (SQLAlchemy's first line, untagged)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = re.sub(r"^\([\w.]+\)\s*", "", first)  # '(sqlite3.OperationalError) unable to ...'
    hint = ""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        hint = (f" (does the folder of {url[len('sqlite:///'):]!r} exist and is it writable?)")
    return f"--storage {url!r}: cannot open the Optuna storage: {first}{hint}"


def make_objective(args: argparse.Namespace, space: Dict[str, Dict[str, Any]], base: TrainConfig):
    """Objective: train one trial (``base``, the study's TrainConfig, with the trial's values),
    report every evaluation, return the last objective value."""
    import keras
    import optuna

    from bts_predict import online_evaluator
    from bts_trainer import Trainer, TrainingError, resolve_model_ops, uses_tpu

    try:  # once: every trial computes alike
        model_ops = resolve_model_ops(
            args.model_ops, tpu=uses_tpu(args.distribution_strategy, args.tpu_name),
            training_pixels=training_pixels(args))
    except ConfigError as err:
        raise TuneError(err.as_flag_error()) from None

    class TrialTrainer(Trainer):
        def save_final_model(self):  # the best weights are already in best/; no model.keras per trial
            return None

    metric = args.objective_metric

    def objective(trial) -> float:
        params = suggest(trial, space)
        try:
            run = trial_config(base, args, params, trial.number)
        except ConfigError as err:  # tuned values that cannot work: this trial fails
            raise TrainingError(err.as_flag_error()) from None
        LOG.info("trial %d (%s): %s", trial.number, run.model_name,
                 ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))

        def report(step: int, metrics: Dict[str, float]) -> None:
            # Trained steps only: the step-0 baseline of the initial weights would count as the
            # trial's best intermediate value and weaken the pruner's comparisons.
            if step > 0 and metric in metrics and math.isfinite(metrics[metric]):
                trial.report(metrics[metric], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{metric} {metrics[metric]:.4f} at step {step}")

        keras.backend.clear_session()  # free the previous trial's graphs
        trial.set_user_attr("run_dir", run.run_dir)
        evaluate = online_evaluator(run.eval_data, run.evaluation)  # the held-out scenes' pipeline
        try:
            result = TrialTrainer(run, evaluate_fn=evaluate, report=report, model_ops=model_ops).train()
        except ConfigError as err:  # e.g. too few training samples for the trial's batch
            raise TrainingError(err.as_flag_error()) from None
        value = result.get(metric)
        if value is None or not math.isfinite(value):
            raise TrainingError(f"trial {trial.number} produced no finite validation {metric} "
                                "(no valid ground truth in the held-out scenes?)")
        return float(value)

    return objective


def study_config(args: argparse.Namespace) -> TrainConfig:
    """The study's TrainConfig (each trial replaces the tuned values); bad flags are TuneErrors."""
    try:
        return train_config(args)
    except ConfigError as err:
        raise TuneError(err.as_flag_error()) from None


def check_validation_split(base: TrainConfig, args: argparse.Namespace) -> None:
    """Fail before any trial if the training list cannot be split by scene/drive."""
    from bts_trainer import select_samples

    try:
        train, validation = select_samples(trial_config(base, args, {}, 0))
    except ConfigError as err:
        raise TuneError(err.as_flag_error()) from None
    LOG.info("%d training and %d validation samples (held-out scenes/drives)", len(train), len(validation))


class _OneLineFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; ours already say everything in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bts_dataloader import DataError
        from utils.checkpoints import CheckpointError
        from bts_trainer import TrainingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (TrainingError, DataError, CheckpointError)):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_one_line_trial_failures() -> None:
    """Keep tracebacks of real bugs in Optuna's failed-trial warnings, drop those of our errors."""
    logger = logging.getLogger("optuna.study._optimize")  # where Optuna logs a failed trial
    if not any(isinstance(f, _OneLineFailures) for f in logger.filters):
        logger.addFilter(_OneLineFailures())


def prepare_study(args: argparse.Namespace):
    """(search space, the study's TrainConfig), after the cheap checks that need no TensorFlow:
    the search-space file, the flags, a writable --log_directory. TuneError otherwise."""
    from utils.io import WriteError, check_writable_folder

    problem = check_input_paths(args, files=("filenames_file", "checkpoint_path"),
                                folders=("data_path", "gt_path"))
    if problem:
        raise TuneError(problem)
    space = load_search_space(args.search_space)
    if args.mixed_precision == "auto":  # opt-in; resolved once, so every trial records the same
        from bts_trainer import resolve_mixed_precision, uses_tpu

        args.mixed_precision = resolve_mixed_precision(
            args.mixed_precision, tpu=uses_tpu(args.distribution_strategy, args.tpu_name))
    base = study_config(args)
    try:  # before any trial: every trial's run folder and the study outputs go there
        check_writable_folder(args.log_directory, "--log_directory")
    except WriteError as err:
        raise TuneError(str(err)) from None
    return space, base


def run_study(args: argparse.Namespace, pruner=None, prepared=None):
    """Run ``--n_trials`` more trials of the study and write its outputs; returns the study.
    ``prepared``: :func:`prepare_study`'s result, when the caller already checked."""
    space, base = prepared or prepare_study(args)
    from bts_trainer import TrainingError

    check_validation_split(base, args)
    quiet_one_line_trial_failures()
    study = open_study(args, pruner)
    before = len(study.trials)
    # A failed trial (NaN loss, too few samples for its batch) is recorded as FAIL; the study goes on.
    study.optimize(make_objective(args, space, base), n_trials=args.n_trials, catch=(TrainingError,))
    LOG.info("study %s: %d trials now (%d new)", args.study_name, len(study.trials),
             len(study.trials) - before)
    write_outputs(args, study)
    return study


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def study_dir(args: argparse.Namespace) -> str:
    return os.path.join(args.log_directory, args.study_name)


def completed(study) -> list:
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def write_outputs(args: argparse.Namespace, study) -> Optional[str]:
    """Best-arguments file and plots; returns the best-arguments path (None without a result)."""
    from utils.arguments import write_argument_file

    if not completed(study):
        LOG.warning("no completed trial yet: no best arguments or plots written")
        return None
    path = os.path.join(study_dir(args), "best_arguments.txt")
    write_argument_file(best_arguments(args, study.best_params), path)
    save_plots(study, study_dir(args))
    return path


def _save_figure(axes, path: str) -> None:
    from utils.io import atomic_write_bytes

    figure = axes.get_figure() if hasattr(axes, "get_figure") else axes.flat[0].get_figure()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    import matplotlib.pyplot as plt

    plt.close(figure)


def save_plots(study, folder: str) -> Dict[str, str]:
    """Optimisation history and parameter importances (PED-ANOVA: no scikit-learn) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    written = {}
    plots = {
        "optimization_history.png": lambda: optuna_plots.plot_optimization_history(study),
        "param_importances.png": lambda: optuna_plots.plot_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()),
    }
    for name, plot in plots.items():
        try:
            axes = plot()
        except (ValueError, RuntimeError) as err:  # e.g. importances need >= 2 varied trials
            LOG.warning("skipped %s: %s", name, err)
            continue
        path = os.path.join(folder, name)
        _save_figure(axes, path)
        written[name] = path
    return written


def summary(study) -> str:
    import optuna

    states = [t.state for t in study.trials]
    counts = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    text = f"study {study.study_name}: {len(states)} trials ({', '.join(f'{v} {k}' for k, v in counts.items())})"
    if completed(study):
        best = study.best_trial
        text += f"\nbest trial {best.number}: {best.value:.5f} with " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
    return text


def main(argv: Optional[Sequence[str]] = None, pruner=None) -> int:
    require("optuna", "requirements-tune.txt", "bts_tune.py")  # one line, not a traceback
    args = parse_tune_args(argv)
    quiet_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        prepared = prepare_study(args)  # before TensorFlow starts
    except TuneError as err:
        print(f"bts_tune.py: error: {err}", file=sys.stderr)
        return 1
    from bts_dataloader import DataError
    from utils.checkpoints import CheckpointError

    try:
        study = run_study(args, pruner, prepared)
    except DataError as err:
        print(f"bts_tune.py: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except (TuneError, CheckpointError) as err:
        print(f"bts_tune.py: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bts_tune.py: interrupted; rerun the same command to continue the study", file=sys.stderr)
        return 130
    print(summary(study))
    if completed(study):
        print(f"best arguments: {os.path.join(study_dir(args), 'best_arguments.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts_tune.py: Optuna study over short training runs validated on held-out scenes."""
import json
import os
import sqlite3

import optuna
import pytest

import bts_main
import bts_tune
from conftest import TINY_BTS_SIZE, TINY_ENCODER
from utils.arguments import parse_args, train_config


def _args_file(tmp_path, data, *extra):
    """A tiny-model argument file on ``data`` (conftest's nyu_data_480x640: the NYU border crop
    needs the full frame): 1 step per trial, validation on 1 of its 2 scenes."""
    lines = ["--dataset nyu", f"--encoder {TINY_ENCODER}", f"--bts_size {TINY_BTS_SIZE}",
             f"--data_path {data['data_path']}", f"--gt_path {data['gt_path']}",
             f"--filenames_file {data['train_filenames']}",
             "--input_height 64", "--input_width 96", "--num_steps 1", "--eval_freq 1000",
             "--log_freq 1000", "--save_freq 1000", "--keep_checkpoints 1", "--seed 7",
             "--validation_split 0.5", f"--log_directory {tmp_path / 'runs'}", *extra]
    path = tmp_path / "tune_args.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _space(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"batch_size": {"choices": [1, 2]}, "gradient_accumulation_steps": None,
                                "degree": {"low": 0.5, "high": 3.0}}))
    return str(path)


def _trial_states(db_path, study):
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON t.study_id = s.study_id "
                          "WHERE s.study_name = ? ORDER BY t.number", (study,)).fetchall()
    return [state for _, state in rows]


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.mark.slow  # two real (tiny) training runs with validation: ~70 s of CPU
def test_study_completes_resumes_and_records_a_pruned_trial(tmp_path, nyu_data_480x640, capsys):
    db = tmp_path / "tuning.db"
    argv = [_args_file(tmp_path, nyu_data_480x640, "--do_online_eval",
                       f"--filenames_file_eval {nyu_data_480x640['test_filenames']}"),
            "--study_name", "tiny", "--storage", f"sqlite:///{db}", "--search_space", _space(tmp_path)]
    assert bts_tune.main(argv + ["--n_trials", "2"]) == 0
    assert _trial_states(db, "tiny") == ["COMPLETE", "COMPLETE"]
    # The same command continues the study; this time every trial is pruned at its first report.
    assert bts_tune.main(argv + ["--n_trials", "1"], pruner=AlwaysPrune()) == 0
    assert _trial_states(db, "tiny") == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert "3 trials (2 complete, 1 pruned)" in capsys.readouterr().out

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    best = study.best_trial
    runs = tmp_path / "runs"
    assert sorted(p for p in os.listdir(runs) if p.startswith("tiny_trial")) == \
        ["tiny_trial0", "tiny_trial1", "tiny_trial2"]
    assert os.listdir(runs / "tiny_trial0" / "summaries")  # one TensorBoard run per trial
    # Each trial validated on the held-out scene, never on the test list it was given.
    trial_args = (runs / "tiny_trial0" / "arguments.txt").read_text()
    assert "--do_online_eval" not in trial_args and "test_files" not in trial_args

    best_file = runs / "tiny" / "best_arguments.txt"
    replay = parse_args(bts_main.TRAIN_GROUPS, [str(best_file)])
    assert replay.learning_rate == pytest.approx(best.params["learning_rate"])
    assert replay.end_learning_rate == pytest.approx(best.params["end_lr_ratio"] * best.params["learning_rate"])
    assert replay.batch_size == best.params["batch_size"] and replay.degree == pytest.approx(best.params["degree"])
    assert replay.do_random_rotate and replay.do_online_eval and replay.validation_split == 0.0
    assert "--study_name" not in best_file.read_text()
    assert (runs / "tiny" / "optimization_history.png").read_bytes()[:4] == b"\x89PNG"
    assert (runs / "tiny" / "param_importances.png").read_bytes()[:4] == b"\x89PNG"


def test_tuning_without_a_validation_split_is_refused(tmp_path, nyu_data_480x640, capsys):
    argv = [_args_file(tmp_path, nyu_data_480x640, "--validation_split 0", "--do_online_eval"), "--n_trials", "1"]
    with pytest.raises(SystemExit):
        bts_tune.main(argv)
    assert "--validation_split must be in (0, 1)" in capsys.readouterr().err


def test_a_training_list_of_one_scene_is_refused_before_any_trial(tmp_path, nyu_data_480x640, capsys):
    lines = open(nyu_data_480x640["train_filenames"]).read().splitlines()
    one_scene = tmp_path / "one_scene.txt"
    one_scene.write_text("\n".join(line for line in lines if line.split("/")[1] == lines[0].split("/")[1]))
    argv = [_args_file(tmp_path, nyu_data_480x640), "--filenames_file", str(one_scene), "--n_trials", "1",
            "--storage", f"sqlite:///{tmp_path / 'never.db'}"]
    assert bts_tune.main(argv) == 1
    assert "--validation_split needs at least two scenes" in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()


def test_search_space_file_overrides_drops_and_rejects_entries(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": {"low": 1e-5, "high": 1e-4, "log": True}, "degree": None}))
    space = bts_tune.load_search_space(str(path))
    assert space["learning_rate"] == {"low": 1e-5, "high": 1e-4, "log": True}
    assert "degree" not in space and space["batch_size"] == bts_tune.DEFAULT_SEARCH_SPACE["batch_size"]
    for bad, message in (({"momentum": {"low": 0, "high": 1}}, "unknown parameter 'momentum'"),
                         ({"adam_eps": {"low": 0, "high": 1, "log": True}}, "low > 0 with log"),
                         ({"batch_size": {"choices": []}}, "non-empty list")):
        path.write_text(json.dumps(bad))
        with pytest.raises(bts_tune.TuneError, match=message):
            bts_tune.load_search_space(str(path))
    path.write_text("{not json")
    with pytest.raises(bts_tune.TuneError, match=r"space.json'?: not valid JSON"):
        bts_tune.load_search_space(str(path))


def test_tuned_values_map_onto_the_trial_config_and_its_argument_file(tmp_path):
    args = bts_tune.parse_tune_args(["--filenames_file", "train.txt", "--validation_split", "0.5",
                                     "--do_online_eval", "--filenames_file_eval", "test.txt",
                                     "--degree", "2.5", "--study_name", "s", "--objective_metric", "d1"])
    base = train_config(args)
    run = bts_tune.trial_config(base, args, {"learning_rate": 2e-4, "end_lr_ratio": 0.05, "degree": 0.0,
                                             "batch_size": 2}, number=4)
    assert run.learning_rate == 2e-4 and run.end_learning_rate == pytest.approx(1e-5)
    assert run.data.degree == 0.0 and not run.data.do_random_rotate and run.batch_size == 2
    assert run.model_name == "s_trial4" and run.best_metric == "d1" and run.retrain
    assert not run.do_online_eval and run.eval_data.filenames_file == ""
    assert base.learning_rate == 1e-4 and base.data.degree == 2.5  # the study's config is not modified
    # The trial's arguments.txt replays to the trial's values.
    (tmp_path / "arguments.txt").write_text(run.argument_text)
    replay = parse_args(bts_tune.TUNE_GROUPS, [str(tmp_path / "arguments.txt")])
    assert replay.learning_rate == 2e-4 and replay.batch_size == 2 and replay.model_name == "s_trial4"
    assert not replay.do_online_eval and not replay.do_random_rotate and replay.filenames_file_eval == ""
    assert bts_tune.direction_of("d1") == "maximize" and bts_tune.direction_of("silog") == "minimize"


def _error_lines(err):
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("bts_tune.py: error:")]


def test_trials_report_trained_steps_only(tmp_path, nyu_data_480x640):
    """The step-0 baseline of the initial weights is no intermediate value (it would count as the
    trial's best and weaken pruning); the trial's value comes from the trained step."""
    db = tmp_path / "tuning.db"
    argv = [_args_file(tmp_path, nyu_data_480x640), "--study_name", "steps", "--storage", f"sqlite:///{db}",
            "--search_space", _space(tmp_path), "--n_trials", "1"]
    assert bts_tune.main(argv) == 0
    trial = optuna.load_study(study_name="steps", storage=f"sqlite:///{db}").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert list(trial.intermediate_values) == [1]  # --num_steps 1: the one trained step
    assert trial.value == trial.intermediate_values[1]


@pytest.mark.parametrize("storage, cause", [
    ("sqlite:///{tmp}/no_such_folder/tuning.db", "unable to open database file"),
    ("notadb://host/study", "Can't load plugin"),
])
def test_unusable_storage_is_one_line_naming_it(tmp_path, nyu_data_480x640, capsys, storage, cause):
    url = storage.format(tmp=tmp_path)
    assert bts_tune.main([_args_file(tmp_path, nyu_data_480x640), "--n_trials", "1", "--storage", url]) == 1
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"--storage {url!r}: cannot open the Optuna storage" in lines[0]
    assert cause in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before any trial


def test_unwritable_log_directory_is_refused_before_any_trial(tmp_path, nyu_data_480x640, capsys):
    blocker = tmp_path / "a_file"  # a folder under a file: unwritable even for root
    blocker.write_text("x")
    argv = [_args_file(tmp_path, nyu_data_480x640), "--log_directory", str(blocker / "runs"),
            "--n_trials", "1", "--storage", f"sqlite:///{tmp_path / 'never.db'}"]
    assert bts_tune.main(argv) == 1
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"--log_directory {str(blocker / 'runs')!r} is not writable" in lines[0]
    assert not (tmp_path / "never.db").exists() and blocker.read_text() == "x"

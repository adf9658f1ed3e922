# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The demo reports the model it loaded (encoder, bts_size, max_depth as the checkpoint records
them), never the command line's defaults or an argument file's model flags."""
import pytest

import bts_demo
from conftest import tiny_model_config
from tiny_run import save_run_folder


@pytest.fixture(scope="module")
def tiny_run_folder(tmp_path_factory):
    """A tiny NYU run folder (densenet_tiny, bts_size 128, 10 m) with its bts_config.json."""
    folder = tmp_path_factory.mktemp("demo_info") / "run"
    save_run_folder(folder, "nyu", seed=7)
    return folder


def _served(monkeypatch, argv):
    """The app ``bts_demo.py ARGV`` would serve (the server itself is not started)."""
    served = {}
    monkeypatch.setattr(bts_demo, "serve", lambda app, host, port: served.update(app=app))
    assert bts_demo.main(argv) == 0
    return served["app"].test_client()


def _reported(client):
    (model,) = client.get("/healthz").json["models"]
    return model["encoder"], model["bts_size"], model["max_depth"]


def test_healthz_and_page_report_the_checkpoints_encoder_not_the_default_one(tiny_run_folder,
                                                                             monkeypatch):
    # No model flag: the defaults (densenet161_bts, its bts_size 512) describe another model.
    client = _served(monkeypatch, ["--checkpoint_path", str(tiny_run_folder)])
    assert _reported(client) == ("densenet_tiny", 128, 10.0)
    page = client.get("/").get_data(as_text=True)
    assert "densenet_tiny, bts_size 128" in page and 'data-encoder="densenet_tiny"' in page
    assert "densenet161_bts" not in page


def test_an_argument_files_model_flags_yield_to_the_loaded_model(tiny_run_folder, tmp_path,
                                                                 monkeypatch):
    arguments = tmp_path / "arguments_demo.txt"  # as a shipped file names the paper's model
    arguments.write_text("--dataset nyu\n--encoder densenet161_bts\n--bts_size 512\n--max_depth 20\n")
    client = _served(monkeypatch, [str(arguments), "--checkpoint_path", str(tiny_run_folder)])
    assert _reported(client) == ("densenet_tiny", 128, 10.0)


def test_a_keras_file_reports_its_own_max_depth_and_encoder(tmp_path, monkeypatch):
    import bts_model

    model = bts_model.build_bts_model(tiny_model_config("nyu", max_depth=20.0))
    model.save(tmp_path / "deep.keras")
    client = _served(monkeypatch, ["--checkpoint_path", str(tmp_path / "deep.keras")])
    assert _reported(client) == ("densenet_tiny", 128, 20.0)

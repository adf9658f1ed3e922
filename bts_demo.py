# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Web demo: upload a photo, see, explore and download its depth (Flask, local page, JSON API).

    python bts_demo.py --checkpoint_path MODEL [--checkpoint_path_kitti KITTI_MODEL] \
        [--host 127.0.0.1 --port 5000]

``--checkpoint_path`` is the model for ``--dataset`` (default nyu, 10 m);
``--checkpoint_path_kitti`` adds an outdoor KITTI model (80 m) and a model selector on the page.
A run folder, ``ckpt-N``, ``best/`` or ``.keras`` file records how its model is built, so
``--encoder``/``--bts_size`` are needed only for older checkpoints that record nothing.
Without any checkpoint the demo refuses to start, unless ``--allow_untrained`` asks for a random
model (for trying the page; a warning banner is shown on every page and ``"untrained": true`` in
every API answer).

Each model is loaded and traced once at start-up. The page and the API are described in
``docs/demo.md``; the app itself is ``demo.app.create_app``.
"""
from __future__ import annotations

import copy
import ipaddress
import logging
import sys
from typing import Dict, Optional, Sequence

import numpy as np

from utils.arguments import check_input_paths, explicit_model_fields, model_config, parse_args
from utils.optional import require
from utils.quiet import quiet_tensorflow

LOGGER = logging.getLogger("bts_demo")
PROG = "bts_demo.py"


def _validate(parser, args) -> None:
    if args.checkpoint_path_kitti and args.dataset == "kitti":
        parser.error("--checkpoint_path_kitti adds an outdoor model next to an NYU "
                     "--checkpoint_path; with --dataset kitti pass --checkpoint_path only")


def requested_checkpoints(args) -> Dict[str, str]:
    """dataset → checkpoint path, in page order (``--dataset``'s model first)."""
    checkpoints = {}
    if args.checkpoint_path:
        checkpoints[args.dataset] = args.checkpoint_path
    if args.checkpoint_path_kitti:
        checkpoints["kitti"] = args.checkpoint_path_kitti
    return checkpoints


def model_flags_for(args, dataset: str):
    """(BtsConfig the flags describe, fields the user set) for the model of ``dataset``: the
    outdoor model of --checkpoint_path_kitti keeps KITTI's own max depth, not --max_depth."""
    from utils.datasets import get_dataset_facts

    explicit = explicit_model_fields(args)
    if dataset == args.dataset:
        return model_config(args), explicit
    other = copy.copy(args)
    other.dataset, other.max_depth = dataset, get_dataset_facts(dataset).max_depth
    return model_config(other), explicit - {"max_depth"}


DEMO_GROUPS = ("model", "compute", "data", "serve")  # the flag groups of utils/arguments.py


def load_predictors(args, checkpoints: Dict[str, str]):
    """One loaded, warmed-up ``DepthPredictor`` per dataset (random weights for an empty path).

    Each model is built as its checkpoint records (``bts_predict.load_model``); --encoder and
    --bts_size are needed only for checkpoints that record nothing."""
    from bts_predict import DepthPredictor, load_model
    from bts_trainer import model_in_global_policy, resolve_model_ops
    from utils.configs import ConfigError

    predictors = {}
    model_ops = resolve_model_ops(args.model_ops)
    for dataset, checkpoint in checkpoints.items():
        flags, explicit = model_flags_for(args, dataset)
        try:
            model, config = load_model(checkpoint, flags, explicit=explicit,
                                       allow_untrained=not checkpoint, model_ops=model_ops)
        except ConfigError as err:
            if err.field != "dataset" or dataset == args.dataset:
                raise
            # The outdoor slot's dataset is implied by its flag, not by --dataset.
            raise ConfigError("checkpoint_path_kitti", str(err).replace("does not suit", "is not a "
                              "KITTI model:", 1)) from None
        model = model_in_global_policy(model, config, model_ops)  # --mixed_precision's, set in main()
        predictor = DepthPredictor(model, dataset, encoder=config.encoder,
                                   do_kb_crop=args.do_kb_crop)
        LOGGER.info("%s model ready (max depth %g m); tracing it once (the full DenseNet-161 "
                    "takes up to a minute on a CPU)", dataset, predictor.max_depth)
        predictor.predict_image(np.zeros((64, 64, 3), np.uint8))  # trace now, not on a visitor
        predictors[dataset] = predictor
    return predictors


class QuietLiveFrames(logging.Filter):
    """Drops werkzeug's access line of each answered live camera frame (a few per second per
    session would bury every other line); refused frames and every other request still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("/api/live/" in message and "/frame " in message and '" 200 ' in message)


def serve(app, host: str, port: int) -> None:
    """Serve ``app`` with werkzeug's threaded server until Ctrl-C."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").addFilter(QuietLiveFrames())

    try:
        if not ipaddress.ip_address(host).is_loopback:
            LOGGER.warning("listening on %s: the demo is reachable from other machines", host)
    except ValueError:
        LOGGER.warning("listening on %r: check that this is meant to be reachable", host)
    server = make_server(host, port, app, threaded=True)
    print(f"BTS demo on http://{host}:{server.server_port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    for module in ("flask", "skimage"):  # the server; the sample photos
        require(module, "requirements-demo.txt", PROG)
    from demo.app import create_app

    args = parse_args(groups=DEMO_GROUPS, argv=argv, validate=_validate, prog=PROG,
                      description=__doc__.splitlines()[0], defaults={"mixed_precision": "auto"})
    quiet_tensorflow(args.verbose)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = check_input_paths(args, files=("checkpoint_path", "checkpoint_path_kitti"))
    if problem:  # before TensorFlow starts and the models load
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 1
    checkpoints = requested_checkpoints(args)
    untrained = not checkpoints
    if untrained and not args.allow_untrained:
        print(f"{PROG}: error: no model to serve: pass --checkpoint_path (a .keras/.weights.h5 "
              "file, a training checkpoint or a run folder; see docs/pretrained.md), or "
              "--allow_untrained to try the page with a random, meaningless model", file=sys.stderr)
        return 2
    if untrained:
        LOGGER.warning("NO CHECKPOINT: serving an UNTRAINED model; its depth maps are meaningless "
                       "(the page shows a warning banner)")
        checkpoints = {args.dataset: ""}
    from utils.checkpoints import CheckpointError
    from utils.configs import ConfigError

    from bts_trainer import resolve_mixed_precision, set_precision_policy

    try:
        set_precision_policy(resolve_mixed_precision(args.mixed_precision))  # before the models
        predictors = load_predictors(args, checkpoints)
        app = create_app(predictors, untrained=untrained)
        serve(app, args.host, args.port)
    except ConfigError as err:  # a flag that contradicts a checkpoint, named as the flag
        print(f"{PROG}: error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except (CheckpointError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

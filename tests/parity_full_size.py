# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Conversion parity at full size, for docs/pretrained.md (a script, not a test: minutes each).

    PYTHONPATH=. .venv/bin/python tests/parity_full_size.py resnext101_bts [--seed 0] [--init official]

(run from the repository root: Python puts tests/ on the path for the script, PYTHONPATH the root).

Builds an official-format checkpoint for the encoder (tests/pt_reference.py: torchvision's own
network + the PT V2 decoder; ``--init random``: random weights and BN statistics, as the tests;
``official``: the initialisation upstream's model trains from), converts it, and prints one
JSON line: the largest |depth difference| in metres against the float64 PyTorch forward pass and
the largest relative difference of each LPG map, at 480×640 (NYU) and 352×1216 (KITTI, focal
721.5377).
"""
import argparse
import json
import time

import numpy as np
import pt_reference as ref

import bts_model
from tools import convert_pytorch_checkpoint as cpc
from utils.configs import BtsConfig

MAPS = ("depth_8x8_scaled", "depth_4x4_scaled", "depth_2x2_scaled", "reduc1x1")
CASES = (("nyu", 480, 640, 518.8579), ("kitti", 352, 1216, 721.5377))


def measure(encoder: str, seed: int, init: str = "random") -> dict:
    make = ref.official_random_state if init == "random" else ref.official_initial_state
    state = make(encoder, 512, seed=seed)
    result = {"encoder": encoder, "init": init}
    for dataset, height, width, focal_px in CASES:
        start = time.time()
        config = BtsConfig.for_dataset(dataset, encoder=encoder)
        model = bts_model.build_bts_model(config)
        cpc.assign_state_dict(model, cpc.extract_state_dict({"model": state}),
                              ignore=cpc.skipped_keys_rule(encoder))
        image = np.random.default_rng(seed + 1).standard_normal((1, height, width, 3)).astype(np.float32)
        focal = np.array([focal_px], np.float32)
        ours = bts_model.build_lpg_maps_model(model)({"image": image, "focal": focal}, training=False)
        want = ref.reference_official_forward(
            state, encoder, ref.torch.from_numpy(image.transpose(0, 3, 1, 2)).double(),
            ref.torch.from_numpy(focal).double(), 512, config.max_depth, dataset == "kitti")
        row = {"max_abs_depth_m": float(np.abs(np.asarray(ours["depth"]) - want["depth"]).max()),
               "depth_std_m": float(want["depth"].std())}
        for name in MAPS:
            got, expected = np.asarray(ours[name]), want[name]
            row[f"{name}_max_rel"] = float((np.abs(got - expected) / np.maximum(np.abs(expected), 1e-6)).max())
        row["seconds"] = round(time.time() - start, 1)
        result[f"{dataset}_{height}x{width}"] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", choices=sorted(ref.TORCHVISION_ENCODERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", choices=("random", "official"), default="random")
    args = parser.parse_args()
    print(json.dumps(measure(args.encoder, args.seed, args.init)), flush=True)


if __name__ == "__main__":
    main()

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""The official PyTorch BTS, timed case by case for ``bench_vs_pytorch.py`` (a worker process).

    python -m benchmarks._official_worker --official_src CHECKOUT [--threads N]
    python -m benchmarks._official_worker --official_src CHECKOUT --run_bts_test ARGS...

``CHECKOUT`` is a local clone of the official repository (its ``pytorch/bts.py`` and
``pytorch/bts_dataloader.py`` are imported from there, never copied into this project).
Imports torch, torchvision and numpy, not TensorFlow. Requests (one JSON line each, see
``benchmarks/_protocol.py``):

* ``setup`` with a case (kind forward|train, height, width, batch, precision fp32|bf16, dataset,
  encoder, bts_size): builds the official model as the official scripts use it and runs one
  call (``first_call_s``). Forward: ``model.eval()`` under ``torch.no_grad()``, as
  ``pytorch/bts_test.py``. Train: ``model.train()``, the freezing of ``bts_main.py``'s
  ``set_misc`` (stem conv and every encoder norm), ``torch.optim.AdamW`` with its two groups
  (weight decay on the encoder only, ε 1e-3) and ``silog_loss(0.85)`` on ``depth > 0.1``
  (``> 1.0`` for KITTI). bf16: ``torch.autocast('cpu', bfloat16)`` and channels_last, PyTorch's
  fastest CPU setting.
* ``call``: one timed call: wall and CPU seconds.
* ``finish``: the process's peak RSS since ``setup`` (MiB); frees the model.
* ``save_checkpoint``: a random-weight checkpoint in the layout ``pytorch/bts_test.py`` reads.
* ``pipeline``: samples/s of the official training DataLoader (``BtsDataLoader(args, 'train')``)
  over ``epochs`` epochs after one warm-up epoch, on the list it is given.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from types import SimpleNamespace
from typing import Optional, Sequence

from benchmarks._protocol import peak_rss_mib, reset_peak_rss, serve, timed_call

FOCAL = {"nyu": 518.8579, "kitti": 715.0873}


def import_torchvision():
    """torchvision, also next to a CPU-only torch build that its compiled ops do not match.

    PyPI's torchvision wheel is built against PyPI's (CUDA) torch; next to the CPU torch it fails
    registering fake kernels for ``torchvision::*`` ops while importing. The model zoo is plain
    Python and needs none of those ops, so the import is retried with such registrations skipped.
    """
    import torch

    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        register_fake = torch.library.register_fake

        def tolerant(op, *args, **kwargs):
            if isinstance(op, str) and op.startswith("torchvision::"):
                return lambda function: function
            return register_fake(op, *args, **kwargs)

        torch.library.register_fake = tolerant
        try:
            import torchvision
        finally:
            torch.library.register_fake = register_fake
    return torchvision


def prepare_torch_for_cpu(official_src: str, threads: int):
    """torch ready for the official code on a CPU; returns (torch, the official bts module).

    The official code asks torchvision for ImageNet weights (random weights time the same, and
    nothing is downloaded) and moves tensors to the GPU with ``.cuda()`` (the identity here);
    checkpoints load onto the CPU.
    """
    import torch

    torchvision = import_torchvision()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    load = torch.load
    torch.load = lambda *args, **kwargs: load(*args, **dict({"map_location": "cpu"}, **kwargs))
    for name in ("densenet121", "densenet161", "resnet50", "resnet101", "resnext50_32x4d",
                 "resnext101_32x8d", "mobilenet_v2"):
        original = getattr(torchvision.models, name)
        setattr(torchvision.models, name,
                (lambda make: (lambda *args, **kwargs: make(weights=None)))(original))
    sys.path.insert(0, os.path.join(official_src, "pytorch"))
    import bts  # the official model (pytorch/bts.py of the checkout)

    return torch, bts


class Official:
    def __init__(self, official_src: str, threads: int):
        self.torch, self.bts = prepare_torch_for_cpu(official_src, threads)
        self.official_src = official_src
        self.call = None

    # ------------------------------------------------------------------ model cases
    def setup(self, request: dict) -> dict:
        torch = self.torch
        case = request["case"]
        self.finish_case()
        gc.collect()
        reset_peak_rss()
        params = SimpleNamespace(encoder=case["encoder"], max_depth=case["max_depth"],
                                 dataset=case["dataset"], bts_size=case["bts_size"])
        model = self.bts.BtsModel(params)
        bf16 = case["precision"] == "bf16"
        shape = (case["batch"], 3, case["height"], case["width"])
        generator = torch.Generator().manual_seed(0)
        image = torch.randn(shape, generator=generator)
        focal = torch.full((case["batch"],), FOCAL[case["dataset"]])
        if bf16:
            model = model.to(memory_format=torch.channels_last)
            image = image.contiguous(memory_format=torch.channels_last)
        if case["kind"] == "forward":
            model.eval()

            def call():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return model(image, focal)[-1].float().sum().item()
        else:
            model.train()
            fixing = (("base_model.conv1", ".bn") if "resne" in case["encoder"] else ("conv0", "norm"))
            for name, parameter in model.encoder.named_parameters():
                if any(part in name for part in fixing):
                    parameter.requires_grad = False
            optimizer = torch.optim.AdamW(
                [{"params": model.encoder.parameters(), "weight_decay": 1e-2},
                 {"params": model.decoder.parameters(), "weight_decay": 0.0}], lr=1e-4, eps=1e-3)
            loss_fn = self.bts.silog_loss(variance_focus=0.85)
            low, high = (1e-3, 10.0) if case["dataset"] == "nyu" else (1e-3, 80.0)
            depth_gt = low + (high - low) * torch.rand((case["batch"], 1, case["height"], case["width"]),
                                                       generator=generator)
            mask = depth_gt > (0.1 if case["dataset"] == "nyu" else 1.0)

            def call():
                optimizer.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    depth = model(image, focal)[-1]
                loss = loss_fn(depth.float(), depth_gt, mask.to(torch.bool))
                loss.backward()
                optimizer.step()
                return loss.item()
        self.model, self.call = model, call
        start = time.perf_counter()
        call()
        return {"first_call_s": time.perf_counter() - start}

    def call_once(self, request: dict) -> dict:
        return timed_call(self.call)

    def finish(self, request: dict) -> dict:
        rss = peak_rss_mib()
        self.finish_case()
        return {"peak_rss_mib": rss}

    def finish_case(self) -> None:
        self.model = self.call = None
        gc.collect()

    # ------------------------------------------------------------------ bts_test.py
    def save_checkpoint(self, request: dict) -> dict:
        """A random-weight official checkpoint as ``pytorch/bts_test.py`` loads it: the
        DataParallel state dict under 'model' in ``<folder>/model``, next to ``<model_name>.py``
        (the checkout's bts.py, which bts_test.py imports by the model's name)."""
        import shutil

        params = SimpleNamespace(encoder=request["encoder"], max_depth=request["max_depth"],
                                 dataset="nyu", bts_size=request["bts_size"])
        model = self.torch.nn.DataParallel(self.bts.BtsModel(params))
        os.makedirs(request["folder"], exist_ok=True)
        self.torch.save({"model": model.state_dict()}, os.path.join(request["folder"], "model"))
        shutil.copyfile(os.path.join(self.official_src, "pytorch", "bts.py"),
                        os.path.join(request["folder"], request["model_name"] + ".py"))
        return {"checkpoint": os.path.join(request["folder"], "model")}

    # ------------------------------------------------------------------ input pipeline
    def pipeline(self, request: dict) -> dict:
        import bts_dataloader  # the official one (pytorch/bts_dataloader.py of the checkout)

        args = SimpleNamespace(
            mode="train", dataset="nyu", data_path=request["data_path"], gt_path=request["gt_path"],
            filenames_file=request["filenames_file"], input_height=request["input_height"],
            input_width=request["input_width"], batch_size=request["batch_size"],
            num_threads=request["workers"], do_random_rotate=True, degree=2.5, do_kb_crop=False,
            use_right=False, distributed=False)
        loader = bts_dataloader.BtsDataLoader(args, "train")
        for _ in loader.data:  # warm-up epoch (file cache, worker start-up code paths)
            pass
        count, start = 0, time.perf_counter()
        for _ in range(request["epochs"]):
            for batch in loader.data:
                count += int(batch["image"].shape[0])
        return {"samples_per_s": count / (time.perf_counter() - start), "samples": count}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official_src", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--run_bts_test", nargs=argparse.REMAINDER,
                        help="run the checkout's pytorch/bts_test.py with these arguments instead")
    args = parser.parse_args(argv)
    if args.run_bts_test is not None:
        import runpy

        prepare_torch_for_cpu(args.official_src, args.threads)
        script = os.path.join(args.official_src, "pytorch", "bts_test.py")
        sys.argv = [script] + args.run_bts_test
        runpy.run_path(script, run_name="__main__")
        return 0
    official = Official(args.official_src, args.threads)
    return serve({"setup": official.setup, "call": official.call_once, "finish": official.finish,
                  "pipeline": official.pipeline, "save_checkpoint": official.save_checkpoint})


if __name__ == "__main__":
    sys.exit(main())

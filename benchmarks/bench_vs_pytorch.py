# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts-tf next to the official PyTorch BTS on this machine: the same cases, interleaved, as ratios.

    python -m benchmarks.bench_vs_pytorch --official_src CHECKOUT            # every case
    python -m benchmarks.bench_vs_pytorch --official_src CHECKOUT --cases forward_480x640_fp32 \\
        train_416x544_b2_fp32 --repeats 5
    python -m benchmarks.bench_vs_pytorch --official_src CHECKOUT --quick    # smoke run (CI)

``CHECKOUT``: a local clone of the official repository (github cleinc/bts); its
``pytorch/bts.py`` and ``pytorch/bts_dataloader.py`` are imported by a separate worker process
(``benchmarks/_official_worker.py``) and never copied into this project. The interpreter that
runs it needs torch and torchvision (``--torch_python``; default: this one).

Each program runs in its own worker process, so they share nothing but the machine. For every
case both build their model and make one untimed first call; then come ``--warmup`` and
``--repeats`` calls, interleaved one by one (ours, official, ours, official, …), so a change in
the machine's load falls on both. The ratio is official seconds / our seconds (above 1: ours is
faster), per repeat pair; the table gives the median pair's ratio and the lowest and highest.

Cases (DenseNet-161, nf 512): forward 480×640 and 352×1216 (KITTI crop) at batch 1 through
``bts_predict.DepthPredictor`` (the predict path of ``bts_test.py``), against the official
``model.eval()`` under ``no_grad``; the training step 416×544 at batch 2 through
``bts_trainer.StepFunctions`` with the shipped ``arguments_train_nyu.txt`` recipe (silog,
PyTorch-semantics AdamW, the official freezing), against the official ``model.train()`` step
with ``torch.optim.AdamW``. fp32, and bf16: ours the ``mixed_bfloat16`` policy, the official
``torch.autocast`` + channels_last. The bf16 training step is left out by default on CPUs
without AMX/AVX512-BF16 (emulated bf16 there: minutes per step; name it in ``--cases`` to run it).
Peak RSS is each process's VmHWM during the case; every case starts fresh worker processes (a
long-lived process keeps the memory of its earlier cases resident, which measured +0.3 GB on our
fp32 and +2.4 GB on our bf16 training step here; ``--reuse_workers`` keeps one pair for every case,
faster, with RSS figures that include the earlier cases). The ``pipeline`` section times the NYU
training input pipeline on the same synthetic files: ours (``bts_dataloader``, tf.data) against the
official ``BtsDataLoader`` with ``--loader_workers`` workers (2, as in the issue's anchors). The
``test`` section runs ``bts_test.py`` and the official ``pytorch/bts_test.py`` end to end on
``--test_images`` synthetic NYU frames (random weights, the same architecture) and compares
images/s over each whole run; the official script needs OpenCV and matplotlib
(``--official_pythonpath`` adds a folder that has them).

``--quick``: our tiny encoder against the official densenet121_bts at nf 128, 64×96: checks the
machinery, the ratios mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks._protocol import Worker, child_env, peak_rss_mib, reset_peak_rss, serve, timed_call
from utils.io import atomic_write_text  # no TensorFlow in the parent: it only coordinates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_SIZE = (64, 96)
QUICK_OFFICIAL_ENCODER, QUICK_BTS_SIZE = "densenet121_bts", 128
FULL_ENCODER, FULL_BTS_SIZE = "densenet161_bts", 512
MAX_DEPTH = {"nyu": 10.0, "kitti": 80.0}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str  # forward | train
    height: int
    width: int
    batch: int
    precision: str  # fp32 | bf16
    dataset: str = "nyu"


def _cases(prefix: str, forward_sizes, train_size) -> List[Case]:
    cases = [Case(f"{prefix}forward_{h}x{w}_{p}", "forward", h, w, 1, p, dataset)
             for (h, w), dataset in forward_sizes for p in ("fp32", "bf16")]
    cases += [Case(f"{prefix}train_{train_size[0]}x{train_size[1]}_b2_{p}", "train", *train_size, 2, p)
              for p in ("fp32", "bf16")]
    return cases


FULL_CASES = _cases("", [((480, 640), "nyu"), ((352, 1216), "kitti")], (416, 544))
QUICK_CASES = _cases("quick_", [(QUICK_SIZE, "nyu")], QUICK_SIZE)
SECTIONS = ("model", "pipeline", "test")


def cpu_facts() -> Dict[str, object]:
    """CPU model name and the vector/matrix features that decide fp32 and bf16 speed."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu": name, "cores": os.cpu_count(), "features": [f for f in wanted if f in flags]}


def has_bf16_hardware(facts: Dict[str, object]) -> bool:
    return bool({"amx_bf16", "avx512_bf16"} & set(facts["features"]))


def default_cases(quick: bool, facts: Dict[str, object]) -> List[Case]:
    cases = QUICK_CASES if quick else FULL_CASES
    if quick or has_bf16_hardware(facts):
        return list(cases)
    return [c for c in cases if not (c.kind == "train" and c.precision == "bf16")]


def select_cases(names: Sequence[str], quick: bool, facts: Dict[str, object]) -> List[Case]:
    if not names:
        return default_cases(quick, facts)
    known = {c.name: c for c in FULL_CASES + QUICK_CASES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"error: --cases {' '.join(unknown)} unknown; valid: {', '.join(known)}")
    return [known[n] for n in names]


# --------------------------------------------------------------------------------------------
# Our worker (TensorFlow)
# --------------------------------------------------------------------------------------------
class Ours:
    """bts-tf's side: the predictor and the trainer's step, as the scripts use them."""

    def __init__(self, quick: bool):
        import tensorflow as tf

        self.tf, self.quick, self.call = tf, quick, None

    def setup(self, request: dict) -> dict:
        import gc

        import keras
        import numpy as np

        import bts_model
        import bts_trainer
        from benchmarks.common import QUICK_ENCODER

        case = Case(**request["case"])
        self.call = None
        keras.backend.clear_session()
        gc.collect()
        reset_peak_rss()
        precision = {"fp32": "none", "bf16": "bf16"}[case.precision]
        bts_trainer.set_precision_policy(precision)
        encoder, nf = (QUICK_ENCODER, QUICK_BTS_SIZE) if self.quick else (FULL_ENCODER, FULL_BTS_SIZE)
        rng = np.random.default_rng(0)
        image = rng.standard_normal((case.batch, case.height, case.width, 3), dtype=np.float32)
        if case.kind == "forward":
            from bts_predict import DepthPredictor

            config = bts_model.BtsConfig.for_dataset(case.dataset, encoder=encoder, bts_size=nf)
            ops = bts_trainer.resolve_model_ops("auto")  # as bts_test.py builds it here
            predictor = DepthPredictor(bts_model.build_bts_model(config, ops), case.dataset)

            def call():
                return float(predictor.predict_batch(image).sum())
        else:
            call = self._train_call(case, encoder, nf, image, rng, precision)
        self.call = call
        start = time.perf_counter()
        call()
        return {"first_call_s": time.perf_counter() - start}

    def _train_call(self, case: Case, encoder: str, nf: int, image, rng, precision: str):
        import bts_model
        import bts_trainer
        from bts_main import parse_train_args
        from utils.arguments import train_config, training_pixels

        tf = self.tf
        args = parse_train_args([os.path.join(ROOT, "arguments_train_nyu.txt"), "--encoder", encoder,
                                 "--bts_size", str(nf), "--batch_size", str(case.batch),
                                 "--mixed_precision", precision, "--log_directory",
                                 tempfile.gettempdir()])
        config = train_config(args)
        ops = bts_trainer.resolve_model_ops(args.model_ops, training_pixels=training_pixels(args))
        model = bts_model.build_bts_model(config.model, ops)  # as bts_main.py builds it here
        bts_trainer.apply_freezing(model, config.model.encoder, config.first_blocks)
        optimizer = bts_trainer.make_optimizer(config, model, total_steps=1000)
        steps = bts_trainer.StepFunctions(tf.distribute.get_strategy(), model, optimizer, config)
        facts = config.data.facts
        depth = rng.uniform(facts.min_depth_eval, facts.max_depth,
                            (case.batch, case.height, case.width, 1)).astype("float32")
        batch = {"image": tf.constant(image), "depth": tf.constant(depth),
                 "focal": tf.fill([case.batch], float(facts.default_focal))}
        return lambda: float(steps.train_step(batch)[0])

    def call_once(self, request: dict) -> dict:
        return timed_call(self.call)

    def finish(self, request: dict) -> dict:
        rss = peak_rss_mib()
        self.call = None
        return {"peak_rss_mib": rss}

    def pipeline(self, request: dict) -> dict:
        import bts_dataloader
        from benchmarks.bench_dataloader import train_args

        paths = {"train_filenames": request["filenames_file"], "data_path": request["data_path"],
                 "gt_path": request["gt_path"]}
        config = dataclasses.replace(train_args(paths), batch_size=request["batch_size"],
                            input_height=request["input_height"], input_width=request["input_width"])
        for _ in bts_dataloader.make_dataset(config, "train", epoch=0):  # warm-up epoch
            pass
        count, start = 0, time.perf_counter()
        for epoch in range(1, request["epochs"] + 1):
            for batch in bts_dataloader.make_dataset(config, "train", epoch=epoch):
                count += int(batch["image"].shape[0])
        return {"samples_per_s": count / (time.perf_counter() - start), "samples": count}


    def save_model(self, request: dict) -> dict:
        """A random-weight BTS .keras file (the benchmark's encoder) for bts_test.py."""
        import keras

        import bts_model
        from benchmarks.common import QUICK_ENCODER

        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
        encoder, nf = (QUICK_ENCODER, QUICK_BTS_SIZE) if self.quick else (FULL_ENCODER, FULL_BTS_SIZE)
        model = bts_model.build_bts_model(bts_model.BtsConfig.for_dataset("nyu", encoder=encoder,
                                                                          bts_size=nf))
        model.save(request["path"])
        return {"path": request["path"]}


def ours_worker(quick: bool) -> int:
    from utils.quiet import quiet_tensorflow

    quiet_tensorflow(False)
    ours = Ours(quick)
    return serve({"setup": ours.setup, "call": ours.call_once, "finish": ours.finish,
                  "pipeline": ours.pipeline, "save_model": ours.save_model})


# --------------------------------------------------------------------------------------------
# The parent: interleaving and ratios
# --------------------------------------------------------------------------------------------
def _summary(times: Sequence[float]) -> Dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run_model_case(case: Case, ours: Worker, official: Worker, warmup: int, repeats: int,
                   quick: bool) -> Dict[str, object]:
    """One case on both programs: set-up, first call, ``warmup`` + ``repeats`` interleaved calls."""
    encoder, nf = (QUICK_OFFICIAL_ENCODER, QUICK_BTS_SIZE) if quick else (FULL_ENCODER, FULL_BTS_SIZE)
    spec = dataclasses.asdict(case)
    first = {"ours": ours.request("setup", case=spec)["first_call_s"],
             "official": official.request("setup", case=dict(spec, encoder=encoder, bts_size=nf,
                                                             max_depth=MAX_DEPTH[case.dataset]))
             ["first_call_s"]}
    wall: Dict[str, List[float]] = {"ours": [], "official": []}
    cpu: Dict[str, List[float]] = {"ours": [], "official": []}
    started: Dict[str, List[float]] = {"ours": [], "official": []}  # wall clock, to show the order
    for index in range(warmup + repeats):
        for name, worker in (("ours", ours), ("official", official)):
            answer = worker.request("call")
            if index >= warmup:
                wall[name].append(answer["wall_s"])
                cpu[name].append(answer["cpu_s"])
                started[name].append(answer["started"])
    ratios = [o / u for u, o in zip(wall["ours"], wall["official"])]
    record: Dict[str, object] = dataclasses.asdict(case)
    for name, worker in (("ours", ours), ("official", official)):
        record[name] = dict(_summary(wall[name]), times_s=wall[name], started=started[name],
                            first_call_s=first[name],
                            cpu_median_s=statistics.median(cpu[name]), pid=worker.process.pid,
                            peak_rss_mib=worker.request("finish")["peak_rss_mib"])
    record.update(ratio_median=statistics.median(ratios), ratio_min=min(ratios),
                  ratio_max=max(ratios), ratio_of_medians=record["official"]["median_s"]
                  / record["ours"]["median_s"])
    return record


def run_pipeline(ours: Worker, official: Worker, rounds: int, quick: bool, workers: int
                 ) -> Dict[str, object]:
    """NYU training pipeline on the same synthetic files: samples/s, ``rounds`` interleaved runs."""
    from tools.synthetic_data import generate_dataset

    frames, size, crop = (8, (96, 128), QUICK_SIZE) if quick else (64, (480, 640), (416, 544))
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_dataset("nyu", tmp, frames, 0, *size, seed=0)
        request = dict(filenames_file=paths["train_filenames"], data_path=paths["data_path"],
                       gt_path=paths["gt_path"], input_height=crop[0], input_width=crop[1],
                       batch_size=4, epochs=1 if quick else 3, workers=workers)
        rates: Dict[str, List[float]] = {"ours": [], "official": []}
        for _ in range(rounds):
            for name, worker in (("ours", ours), ("official", official)):
                rates[name].append(worker.request("pipeline", **request)["samples_per_s"])
    ratios = [u / o for u, o in zip(rates["ours"], rates["official"])]
    return {"frames": frames, "frame_size": list(size), "crop": list(crop), "batch_size": 4,
            "official_workers": workers, "ours_samples_per_s": rates["ours"],
            "official_samples_per_s": rates["official"], "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def run_test_section(ours: Worker, official: Worker, args) -> Dict[str, object]:
    """``bts_test.py`` end to end on a synthetic NYU test list, ours and the official script:
    images/s over each whole run (start-up, model load, reading, inference, writing PNGs; ours
    also scores the metrics, the official script computes none)."""
    import subprocess

    from tools.synthetic_data import generate_dataset

    images = args.test_images
    encoder, nf = (QUICK_OFFICIAL_ENCODER, QUICK_BTS_SIZE) if args.quick else (FULL_ENCODER, FULL_BTS_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_dataset("nyu", os.path.join(tmp, "data"), 1, images, 480, 640, seed=0)
        model = ours.request("save_model", path=os.path.join(tmp, "ours.keras"))["path"]
        checkpoint = official.request("save_checkpoint", folder=os.path.join(tmp, "official_model"),
                                      model_name="bts_bench", encoder=encoder, bts_size=nf,
                                      max_depth=10.0)["checkpoint"]
        ours_cmd = [sys.executable, os.path.join(ROOT, "bts_test.py"),
                    os.path.join(ROOT, "arguments_test_nyu.txt"), "--checkpoint_path", model,
                    "--data_path", paths["data_path_eval"], "--gt_path", paths["gt_path_eval"],
                    "--filenames_file", paths["test_filenames"], "--model_name", "bts_bench",
                    "--batch_size", str(args.test_batch_size)]
        official_cmd = [args.torch_python, "-m", "benchmarks._official_worker", "--official_src",
                        os.path.abspath(args.official_src), "--threads", str(args.threads),
                        "--run_bts_test", "--model_name", "bts_bench", "--encoder", encoder,
                        "--bts_size", str(nf), "--data_path", paths["data_path_eval"],
                        "--filenames_file", paths["test_filenames"], "--input_height", "480",
                        "--input_width", "640", "--max_depth", "10", "--dataset", "nyu",
                        "--checkpoint_path", checkpoint]
        env = child_env(PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in (args.official_pythonpath, os.environ.get("PYTHONPATH", "")) if p]))
        seconds: Dict[str, List[float]] = {"ours": [], "official": []}
        for index in range(args.test_rounds):
            for name, command in (("ours", ours_cmd), ("official", official_cmd)):
                cwd = os.path.join(tmp, f"{name}_run{index}")
                os.makedirs(cwd)
                start = time.perf_counter()
                done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
                seconds[name].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise RuntimeError(f"{name} bts_test.py failed (exit {done.returncode}):\n"
                                       + done.stdout[-3000:])
    ratios = [o / u for u, o in zip(seconds["ours"], seconds["official"])]
    return {"images": images, "frame_size": [480, 640], "ours_batch_size": args.test_batch_size,
            "ours_seconds": seconds["ours"], "official_seconds": seconds["official"],
            "ours_images_per_s": [images / t for t in seconds["ours"]],
            "official_images_per_s": [images / t for t in seconds["official"]],
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def format_report(facts: Dict[str, object], records: Sequence[Dict[str, object]],
                  pipeline: Optional[Dict[str, object]], test: Optional[Dict[str, object]] = None
                  ) -> str:
    lines = [f"CPU: {facts['cpu']}, {facts['cores']} cores, features {' '.join(facts['features']) or '-'}",
             "| case | ours s (min-max) | official s (min-max) | × official/ours (min-max) "
             "| first call s ours / official | peak RSS MiB ours / official |",
             "|---|---|---|---|---|---|"]
    for r in records:
        o, p = r["ours"], r["official"]
        lines.append(f"| {r['name']} | {o['median_s']:.3f} ({o['min_s']:.3f}-{o['max_s']:.3f}) | "
                     f"{p['median_s']:.3f} ({p['min_s']:.3f}-{p['max_s']:.3f}) | "
                     f"**{r['ratio_median']:.2f}** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
                     f"{o['first_call_s']:.1f} / {p['first_call_s']:.1f} | "
                     f"{o['peak_rss_mib']:.0f} / {p['peak_rss_mib']:.0f} |")
    if pipeline:
        lines.append(
            f"NYU training pipeline ({pipeline['frames']} frames {pipeline['frame_size'][0]}x"
            f"{pipeline['frame_size'][1]} -> {pipeline['crop'][0]}x{pipeline['crop'][1]}, batch 4): "
            f"ours {statistics.median(pipeline['ours_samples_per_s']):.1f} samples/s, official "
            f"DataLoader ({pipeline['official_workers']} workers) "
            f"{statistics.median(pipeline['official_samples_per_s']):.1f} samples/s: "
            f"**{pipeline['ratio_median']:.2f}×** ({pipeline['ratio_min']:.2f}-{pipeline['ratio_max']:.2f})")
    if test:
        lines.append(
            f"bts_test.py end to end ({test['images']} NYU images 480x640): ours (--batch_size "
            f"{test['ours_batch_size']}) {statistics.median(test['ours_images_per_s']):.3f} images/s, "
            f"official {statistics.median(test['official_images_per_s']):.3f} images/s: "
            f"**{test['ratio_median']:.2f}×** ({test['ratio_min']:.2f}-{test['ratio_max']:.2f})")
    return "\n".join(lines)


def write_json(path: str, payload: Dict[str, object]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_vs_pytorch.py", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--official_src", default="",
                        help="local checkout of the official BTS repository (holds pytorch/bts.py)")
    parser.add_argument("--torch_python", default=sys.executable,
                        help="Python interpreter with torch and torchvision for the official worker")
    parser.add_argument("--cases", nargs="*", default=[], help="case names (default: all, see above)")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS,
                        help="model cases and/or the input pipeline")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per program and case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after the first one")
    parser.add_argument("--pipeline_rounds", type=int, default=2, help="interleaved pipeline runs")
    parser.add_argument("--loader_workers", type=int, default=2,
                        help="DataLoader workers of the official pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch.set_num_threads of the official worker")
    parser.add_argument("--test_images", type=int, default=16,
                        help="synthetic NYU test images of the bts_test.py section")
    parser.add_argument("--test_batch_size", type=int, default=4, help="our bts_test.py --batch_size")
    parser.add_argument("--test_rounds", type=int, default=1, help="interleaved bts_test.py runs")
    parser.add_argument("--official_pythonpath", default="",
                        help="extra PYTHONPATH for the official bts_test.py (it imports cv2 and "
                             "matplotlib, which this project does not need)")
    parser.add_argument("--reuse_workers", action="store_true",
                        help="one pair of worker processes for every case (faster; the peak RSS of a "
                             "case then includes the memory earlier cases left resident)")
    parser.add_argument("--quick", action="store_true", help="tiny models, 64x96 (smoke run)")
    parser.add_argument("--bench_output", default="",
                        help="JSON results path (default benchmarks/results/bench_vs_pytorch.json)")
    parser.add_argument("--worker", choices=("ours",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if not args.official_src:
        parser.error("--official_src is required: a local checkout of the official BTS repository "
                     "(e.g. git clone https://github.com/cleinc/bts)")
    if not os.path.isfile(os.path.join(args.official_src, "pytorch", "bts.py")):
        parser.error(f"--official_src {args.official_src}: no pytorch/bts.py there (expected a checkout "
                     "of the official BTS repository)")
    if min(args.repeats, args.pipeline_rounds, args.test_images, args.test_batch_size,
           args.test_rounds) < 1 or args.warmup < 0:
        parser.error("--repeats, --pipeline_rounds and the --test_* counts must be >= 1, --warmup >= 0")
    return args


def start_workers(args) -> Tuple[Worker, Worker]:
    """A fresh pair of worker processes: ours and the official program's."""
    env = child_env()
    ours = Worker("ours", [sys.executable, "-m", "benchmarks.bench_vs_pytorch", "--worker", "ours"]
                  + (["--quick"] if args.quick else []), env=env, cwd=ROOT)
    official = Worker("official", [args.torch_python, "-m", "benchmarks._official_worker",
                                   "--official_src", os.path.abspath(args.official_src),
                                   "--threads", str(args.threads)], env=env, cwd=ROOT)
    return ours, official


def restart_workers(args, ours: Worker, official: Worker) -> Tuple[Worker, Worker]:
    ours.close()
    official.close()
    return start_workers(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker == "ours":
        return ours_worker(args.quick)
    from utils.quiet import quiet_tensorflow

    quiet_tensorflow(False)  # the parent imports TF only to write its JSON (tf.io.gfile)
    facts = cpu_facts()
    cases = select_cases(args.cases, args.quick, facts) if "model" in args.sections else []
    skipped = [c.name for c in (QUICK_CASES if args.quick else FULL_CASES)
               if not args.cases and c not in cases and "model" in args.sections]
    if skipped:
        print(f"bench_vs_pytorch: leaving out {', '.join(skipped)}: this CPU has no AMX/AVX512-BF16 "
              "(bf16 is emulated; name the case in --cases to run it)", file=sys.stderr)
    ours, official = start_workers(args)
    output = args.bench_output or os.path.join(ROOT, "benchmarks", "results", "bench_vs_pytorch.json")
    records: List[Dict[str, object]] = []
    pipeline = test = None
    payload = {"environment": dict(facts, date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   python=platform.python_version(),
                                   onednn_env=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")),
               "quick": args.quick, "repeats": args.repeats, "warmup": args.warmup}
    try:
        for index, case in enumerate(cases):
            if index and not args.reuse_workers:  # fresh processes: RSS of this case alone
                ours, official = restart_workers(args, ours, official)
            records.append(run_model_case(case, ours, official, args.warmup, args.repeats, args.quick))
            print(f"{case.name}: ours {records[-1]['ours']['median_s']:.3f} s, official "
                  f"{records[-1]['official']['median_s']:.3f} s, x{records[-1]['ratio_median']:.2f}",
                  file=sys.stderr)
            write_json(output, dict(payload, model=records, pipeline=pipeline))
        if "pipeline" in args.sections:
            if cases and not args.reuse_workers:
                ours, official = restart_workers(args, ours, official)
            pipeline = run_pipeline(ours, official, args.pipeline_rounds, args.quick, args.loader_workers)
            write_json(output, dict(payload, model=records, pipeline=pipeline))
        if "test" in args.sections:
            test = run_test_section(ours, official, args)
            write_json(output, dict(payload, model=records, pipeline=pipeline, test=test))
    finally:
        ours.close()
        official.close()
    print(format_report(facts, records, pipeline, test))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

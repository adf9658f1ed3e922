# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Export a BTS model to SavedModel, TFLite and ONNX, each checked against the Keras model.

    python bts_export.py --checkpoint_path models/bts_nyu_v2/model.keras --dataset nyu \
        --export_dir exports/bts_nyu --formats saved_model tflite tflite_fp16 onnx
    python bts_export.py --checkpoint_path models/bts_eigen_v2 --dataset kitti \
        --export_dir exports/bts_kitti

Formats (``--formats``, default all but ``tflite_dynamic``):

* ``saved_model``: ``model.export``'s format (a Keras ``ExportArchive``), float32, two signatures,
  both for images of any size divisible by 32 and any batch:
  ``serving_default(image: uint8 (B,H,W,3) RGB, focal: float32 (B,) px) -> {"depth": (B,H,W,1) m}``
  normalises inside (``bts_dataloader.normalize_image`` with the encoder's mode);
  ``serve_normalized(image: float32 (B,H,W,3), focal)`` takes the Keras model's own input.
  The focal only matters for KITTI (depth × focal / 715.0873); NYU models ignore it.
* ``tflite`` (float32), ``tflite_fp16`` (float16 weights), ``tflite_dynamic`` (int8 dynamic-range
  weights): the uint8 signature at a fixed size (batch 1, ``--input_height`` × ``--input_width``,
  default the dataset's test size). TFLite's converter cannot lower the LPG layer's 5-D strided
  slices with unknown spatial sizes, and fixed sizes are what mobile runtimes plan for anyway.
* ``onnx`` (float32, opset 17, tf2onnx): the uint8 signature with dynamic batch, height, width.

After each export the file is reloaded with its own runtime (TF, the TFLite interpreter,
onnxruntime) and run on ``--parity_images`` synthetic images; the max |depth − Keras depth| is
printed and the export fails above :func:`tolerance_m`. Size and latency (median of
``LATENCY_REPEATS`` batch-1 calls on this machine) are reported and written to
``{export_dir}/export_report.json``. Without ``--checkpoint_path`` the (seeded) random
initialisation is exported, with a warning: useful for sizes, speed and plumbing only.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from utils.configs import BtsConfig, ConfigError
from utils.datasets import get_dataset_facts
from utils.io import atomic_write_bytes, atomic_write_text, temporary_path

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from bts_predict import DepthPredictor
# TensorFlow, Keras and the model modules are imported inside the functions that use them:
# --help and flag errors must not wait for TF's start-up.

LOG = logging.getLogger("bts_export")

FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_dynamic", "onnx")
DEFAULT_FORMATS = ("saved_model", "tflite", "tflite_fp16", "onnx")
ARTEFACT_NAMES = {
    "saved_model": "saved_model",
    "tflite": "bts_fp32.tflite",
    "tflite_fp16": "bts_fp16.tflite",
    "tflite_dynamic": "bts_dynamic_int8.tflite",
    "onnx": "bts.onnx",
}
FLOAT32_FORMATS = ("saved_model", "tflite", "onnx")
ONNX_OPSET = 17
LATENCY_REPEATS = 5
SIZE_MULTIPLE = 32
SERVING_UINT8 = "serving_default"
SERVING_NORMALIZED = "serve_normalized"
# Reduced-precision formats: allowed max |Δdepth| as a fraction of max_depth (see tolerance_m).
REDUCED_PRECISION_TOLERANCE = {"tflite_fp16": 0.02, "tflite_dynamic": 0.10}


class ExportError(RuntimeError):
    """An export that failed or whose parity check failed (one-line message)."""


def tolerance_m(fmt: str, dataset: str) -> float:
    """Largest accepted max |depth − Keras depth| in metres for ``fmt``.

    Float32 formats: one step of the dataset's 16-bit depth PNG (1/1000 m NYU, 1/256 m KITTI),
    i.e. the saved predictions may differ by at most one unit. Float32 round-off through the
    ~750 layers, with other kernels and summation orders, stays far below (3.5e-5 m
    against PyTorch at 480×640, design §9.4). Float16 / int8 weights change the network itself; their
    bound is a fraction of max_depth (2 % fp16, 10 % int8 dynamic range), loose enough for
    real weights yet far below what a broken export gives (a wrong layer or normalisation costs
    metres, design §9.2).
    """
    facts = get_dataset_facts(dataset)
    if fmt in FLOAT32_FORMATS:
        return 1.0 / facts.depth_scale
    return REDUCED_PRECISION_TOLERANCE[fmt] * facts.max_depth


@dataclasses.dataclass
class ExportResult:
    """What one export produced and how it compares with the Keras model."""

    format: str
    path: str
    size_bytes: int
    latency_s: float
    max_abs_diff_m: float
    mean_abs_diff_m: float
    tolerance_m: float
    input_size: Tuple[Optional[int], Optional[int]]

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff_m <= self.tolerance_m)


# --------------------------------------------------------------------------------------------
# Serving functions
# --------------------------------------------------------------------------------------------
def _check_size(image: tf.Tensor) -> List[tf.Operation]:
    """Assertions that H and W are multiples of 32 (the encoder halves the size five times)."""
    import tensorflow as tf

    shape = tf.shape(image)
    message = f"image height and width must be multiples of {SIZE_MULTIPLE}"
    return [tf.debugging.assert_equal(shape[1] % SIZE_MULTIPLE, 0, message=message),
            tf.debugging.assert_equal(shape[2] % SIZE_MULTIPLE, 0, message=message)]


def make_serving_functions(model: keras.Model, preprocessing: str, check_size: bool = True
                           ) -> Dict[str, Callable]:
    """Plain functions ``(image, focal) -> {"depth": (B,H,W,1) m}`` for both input kinds.

    ``uint8``: RGB 0..255, normalised inside with ``normalize_image(x/255, preprocessing)``.
    ``normalized``: float32 already normalised (the Keras model's ``image`` input).
    """
    import tensorflow as tf

    import bts_dataloader

    def from_normalized(image, focal):
        image = tf.convert_to_tensor(image, tf.float32)
        focal = tf.convert_to_tensor(focal, tf.float32)
        if check_size:
            with tf.control_dependencies(_check_size(image)):
                image = tf.identity(image)
        return {"depth": model({"image": image, "focal": focal}, training=False)}

    def from_uint8(image, focal):
        image01 = tf.cast(tf.convert_to_tensor(image, tf.uint8), tf.float32) / 255.0
        return from_normalized(bts_dataloader.normalize_image(image01, preprocessing), focal)

    return {"uint8": from_uint8, "normalized": from_normalized}


def input_signature(dtype: tf.DType, batch: Optional[int] = None, height: Optional[int] = None,
                    width: Optional[int] = None) -> List[tf.TensorSpec]:
    import tensorflow as tf

    return [tf.TensorSpec((batch, height, width, 3), dtype, name="image"),
            tf.TensorSpec((batch,), tf.float32, name="focal")]


# --------------------------------------------------------------------------------------------
# Exporters
# --------------------------------------------------------------------------------------------
def _replace_directory(tmp: str, path: str) -> None:
    """Move the finished folder ``tmp`` to ``path`` (the old one is removed first)."""
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(tmp, path)


def export_saved_model(model: keras.Model, path: str, preprocessing: str) -> None:
    """SavedModel with the uint8 ``serving_default`` and float ``serve_normalized`` signatures."""
    import keras
    import tensorflow as tf

    functions = make_serving_functions(model, preprocessing, check_size=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_UINT8, functions["uint8"], input_signature(tf.uint8))
    archive.add_endpoint(SERVING_NORMALIZED, functions["normalized"], input_signature(tf.float32))
    tmp = temporary_path(path)
    try:
        archive.write_out(tmp, verbose=False)
        _replace_directory(tmp, path)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)


def tflite_bytes(model: keras.Model, preprocessing: str, height: int, width: int,
                 quantization: str = "none") -> bytes:
    """TFLite flatbuffer of the uint8 function at batch 1, ``height`` × ``width``.

    quantization: ``none`` (float32), ``float16`` (fp16 weights) or ``dynamic`` (int8 weights,
    dynamic-range activations). Converted from the concrete function alone, which freezes the
    variables into constants (passing the model as trackable keeps them as resource variables
    that the interpreter reads uninitialised).
    """
    import tensorflow as tf

    function = tf.function(make_serving_functions(model, preprocessing, check_size=False)["uint8"],
                           input_signature=input_signature(tf.uint8, 1, height, width))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    if quantization in ("float16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization != "none" and quantization != "dynamic":
        raise ValueError(f"unknown TFLite quantization {quantization!r}")
    return converter.convert()


def _optional_module(name: str):
    """Import an ONNX-only dependency, or fail with the install command."""
    from utils.optional import MissingRequirement, import_optional

    try:
        return import_optional(name, "requirements-export.txt")
    except MissingRequirement as err:
        raise ExportError(f"--formats onnx needs {name}: {err}") from None


def onnx_bytes(model: keras.Model, preprocessing: str, opset: int = ONNX_OPSET) -> bytes:
    """ONNX model of the uint8 function with dynamic batch, height and width (tf2onnx)."""
    import tensorflow as tf

    tf2onnx = _optional_module("tf2onnx")
    function = tf.function(make_serving_functions(model, preprocessing, check_size=False)["uint8"],
                           input_signature=input_signature(tf.uint8))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                             opset=opset)
    return proto.SerializeToString()


# --------------------------------------------------------------------------------------------
# Runners: (image uint8 (B,H,W,3), focal (B,)) -> depth (B,H,W,1) float32 metres
# --------------------------------------------------------------------------------------------
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def saved_model_predictor(path: str, signature: str = SERVING_UINT8) -> Predictor:
    import tensorflow as tf

    serving = tf.saved_model.load(path).signatures[signature]
    dtype = tf.uint8 if signature == SERVING_UINT8 else tf.float32

    def predict(image: np.ndarray, focal: np.ndarray) -> np.ndarray:
        return serving(image=tf.constant(image, dtype), focal=tf.constant(focal, tf.float32))[
            "depth"].numpy()

    return predict


def tflite_predictor(path: str) -> Predictor:
    """Runs the fixed-size batch-1 TFLite model image by image."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    inputs = {("focal" if "focal" in d["name"] else "image"): d for d in interpreter.get_input_details()}
    output = interpreter.get_output_details()[0]["index"]
    expected = tuple(inputs["image"]["shape"][1:3])

    def predict(image: np.ndarray, focal: np.ndarray) -> np.ndarray:
        if tuple(image.shape[1:3]) != expected:
            raise ExportError(f"{path} takes {expected[0]}x{expected[1]} images, got "
                              f"{image.shape[1]}x{image.shape[2]}")
        depths = []
        for index in range(image.shape[0]):
            interpreter.set_tensor(inputs["image"]["index"], image[index:index + 1].astype(np.uint8))
            if "focal" in inputs:  # a NYU model may have its unused focal input pruned
                interpreter.set_tensor(inputs["focal"]["index"],
                                       focal[index:index + 1].astype(np.float32))
            interpreter.invoke()
            depths.append(interpreter.get_tensor(output).copy())
        return np.concatenate(depths, axis=0)

    return predict


def onnx_predictor(path: str) -> Predictor:
    onnxruntime = _optional_module("onnxruntime")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def predict(image: np.ndarray, focal: np.ndarray) -> np.ndarray:
        feed = {"image": image.astype(np.uint8), "focal": focal.astype(np.float32)}
        return session.run(None, {name: feed[name] for name in names})[0]

    return predict


# --------------------------------------------------------------------------------------------
# Parity and latency
# --------------------------------------------------------------------------------------------
def parity_inputs(count: int, height: int, width: int, dataset: str, seed: int = 0
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """``count`` synthetic RGB uint8 images (smooth gradients + texture) and focals (count,) px.

    Focals vary around the dataset default so KITTI's per-sample focal scaling is exercised.
    """
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    images = []
    for _ in range(count):
        tilt = rng.uniform(0.2, 1.0, size=(1, 1, 3)).astype(np.float32)
        texture = rng.uniform(-0.15, 0.15, size=(height, width, 3)).astype(np.float32)
        image = np.clip(tilt * rows + (1.0 - tilt) * cols + texture, 0.0, 1.0)
        images.append(np.round(image * 255.0).astype(np.uint8))
    focal = get_dataset_facts(dataset).default_focal
    focals = focal * rng.uniform(0.9, 1.1, size=count).astype(np.float32)
    return np.stack(images), focals.astype(np.float32)


def max_and_mean_abs_diff(predict: Predictor, reference: Predictor, images: np.ndarray,
                          focals: np.ndarray) -> Tuple[float, float]:
    """Depth differences in metres, image by image (batch 1, as every runtime supports)."""
    worst, total = 0.0, 0.0
    for index in range(images.shape[0]):
        image, focal = images[index:index + 1], focals[index:index + 1]
        diff = np.abs(predict(image, focal).astype(np.float64) - reference(image, focal))
        worst, total = max(worst, float(diff.max())), total + float(diff.mean())
    return worst, total / images.shape[0]


def median_latency_s(predict: Predictor, image: np.ndarray, focal: np.ndarray,
                     repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of ``repeats`` batch-1 calls after one warm-up call."""
    predict(image, focal)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(image, focal)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keras_predictor(predictor: DepthPredictor) -> Predictor:
    """The reference: ``predict_image``, the path ``bts_test.py`` and the demo take, per image."""

    def predict(image: np.ndarray, focal: np.ndarray) -> np.ndarray:
        depths = [predictor.predict_image(one, float(f)) for one, f in zip(image, focal)]
        return np.stack(depths)[..., None]  # (B, H, W, 1) as the exported signatures

    return predict


def artefact_size(path: str) -> int:
    """Bytes of a file, or of all files under a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(folder, name))
                   for folder, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Everything an export run needs besides the model."""

    export_dir: str
    dataset: str
    preprocessing: str
    height: int
    width: int
    parity_images: int = 3


def export_one(model: keras.Model, fmt: str, settings: ExportSettings, reference: Predictor,
               images: np.ndarray, focals: np.ndarray) -> ExportResult:
    """Write one format, reload it with its runtime, compare with the Keras model and time it."""
    import bts_dataloader

    path = os.path.join(settings.export_dir, ARTEFACT_NAMES[fmt])
    start = time.perf_counter()
    if fmt == "saved_model":
        export_saved_model(model, path, settings.preprocessing)
        predictor = saved_model_predictor(path)
        normalized = saved_model_predictor(path, SERVING_NORMALIZED)
        normalize = lambda image: bts_dataloader.normalize_image(  # noqa: E731
            image.astype(np.float32) / 255.0, settings.preprocessing).numpy()
        # The float signature must agree with the uint8 one on the same (normalised) pixels.
        check_normalized = lambda image, focal: normalized(normalize(image), focal)  # noqa: E731
    elif fmt.startswith("tflite"):
        quantization = {"tflite": "none", "tflite_fp16": "float16", "tflite_dynamic": "dynamic"}[fmt]
        atomic_write_bytes(path, tflite_bytes(model, settings.preprocessing, settings.height,
                                              settings.width, quantization))
        predictor, check_normalized = tflite_predictor(path), None
    elif fmt == "onnx":
        atomic_write_bytes(path, onnx_bytes(model, settings.preprocessing))
        predictor, check_normalized = onnx_predictor(path), None
    else:
        raise ExportError(f"--formats {fmt!r} is unknown; valid formats: {', '.join(FORMATS)}")
    LOG.info("%s: written to %s in %.1f s", fmt, path, time.perf_counter() - start)
    worst, mean = max_and_mean_abs_diff(predictor, reference, images, focals)
    if check_normalized is not None:
        worst = max(worst, max_and_mean_abs_diff(check_normalized, reference, images, focals)[0])
    latency = median_latency_s(predictor, images[:1], focals[:1])
    dynamic = fmt in ("saved_model", "onnx")
    return ExportResult(fmt, path, artefact_size(path), latency, worst, mean,
                        tolerance_m(fmt, settings.dataset),
                        (None, None) if dynamic else (settings.height, settings.width))


def export_all(model: keras.Model, formats: Sequence[str], settings: ExportSettings
               ) -> Tuple[List[ExportResult], float]:
    """Export every format; returns the results and the Keras model's own latency."""
    import tensorflow as tf

    from bts_predict import DepthPredictor

    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ExportError(f"--formats {' '.join(unknown)} unknown; valid formats: {', '.join(FORMATS)}")
    tf.io.gfile.makedirs(settings.export_dir)
    images, focals = parity_inputs(settings.parity_images, settings.height, settings.width,
                                   settings.dataset)
    reference = keras_predictor(DepthPredictor(model, settings.dataset,
                                               normalization=settings.preprocessing))
    keras_latency = median_latency_s(reference, images[:1], focals[:1])
    results = [export_one(model, fmt, settings, reference, images, focals) for fmt in formats]
    return results, keras_latency


def format_report(results: Sequence[ExportResult], keras_latency: float,
                  settings: ExportSettings) -> str:
    """Markdown table: size, latency and parity per format."""
    lines = [f"Parity on {settings.parity_images} synthetic {settings.height}x{settings.width} "
             f"images ({settings.dataset}); latency = median of {LATENCY_REPEATS} batch-1 calls.",
             "| format | file | size MiB | latency s | max abs diff m | mean abs diff m | tolerance m | ok |",
             "|---|---|---|---|---|---|---|---|",
             f"| keras (reference) | - | - | {keras_latency:.3f} | 0 | 0 | - | - |"]
    for r in results:
        lines.append(f"| {r.format} | {os.path.basename(r.path)} | {r.size_bytes / 2**20:.1f} | "
                     f"{r.latency_s:.3f} | {r.max_abs_diff_m:.2e} | {r.mean_abs_diff_m:.2e} | "
                     f"{r.tolerance_m:.2e} | {'yes' if r.passed else 'NO'} |")
    return "\n".join(lines)


def write_report(results: Sequence[ExportResult], keras_latency: float,
                 settings: ExportSettings) -> str:
    import keras
    import tensorflow as tf

    path = os.path.join(settings.export_dir, "export_report.json")
    payload = {"settings": dataclasses.asdict(settings), "keras_latency_s": keras_latency,
               "tensorflow": tf.__version__, "keras": keras.__version__,
               "results": [{**dataclasses.asdict(r), "passed": r.passed} for r in results]}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def load_export_model(checkpoint: str, flags: BtsConfig, explicit: Sequence[str] = ()
                      ) -> Tuple[keras.Model, BtsConfig]:
    """Float32 BTS of any input size, the standard graph (``bts_model.ModelOps()``; a ``.keras``
    file saved with other ops or policy is rebuilt), with the weights of ``checkpoint``
    (``bts_predict.load_model``: built as the checkpoint records, ``flags`` for older ones);
    without one, the random initialisation of seed 0."""
    import keras

    from bts_predict import load_model
    from bts_trainer import model_in_global_policy

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    if not checkpoint:
        LOG.warning("no checkpoint: exporting the random initialisation (seed 0)")
    model, config = load_model(checkpoint, flags, explicit=explicit, allow_untrained=True)
    return model_in_global_policy(model, config), config


def _with_test_mode(argv: Sequence[str]) -> List[str]:
    """Default ``--mode test`` (dataset test input size) unless the user gives a mode."""
    argv = list(argv)
    if "--mode" in argv or any(a.startswith("--mode=") for a in argv):
        return argv
    at = 1 if argv and not argv[0].startswith(("-", "@")) else 0  # after an argument file
    return argv[:at] + ["--mode", "test"] + argv[at:]


def _validate(parser, args) -> None:
    if not args.export_dir:
        parser.error("--export_dir is required (the folder the exports are written to)")
    for fmt in args.formats or ():
        if fmt not in FORMATS:
            parser.error(f"--formats {fmt!r} is unknown; valid formats: {', '.join(FORMATS)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The edge: flags -> configs, then the config-only export functions above."""
    from utils.arguments import check_input_paths, explicit_model_fields, model_config, parse_args
    from utils.io import WriteError, check_writable_folder
    from utils.quiet import quiet_tensorflow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = _with_test_mode(sys.argv[1:] if argv is None else argv)
    args = parse_args(groups=("model", "serve"), argv=argv, validate=_validate, prog="bts_export.py",
                      description="Export BTS to SavedModel / TFLite / ONNX with parity checks.")
    quiet_tensorflow(args.verbose)
    problem = check_input_paths(args, files=("checkpoint_path",))
    try:  # the cheap checks, before TensorFlow starts
        if problem:
            raise ExportError(problem)
        check_writable_folder(args.export_dir, "--export_dir")
    except (ExportError, WriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from bts_predict import input_normalization
    from utils.checkpoints import CheckpointError

    if args.mixed_precision != "none":
        LOG.info("--mixed_precision %s ignored: exports are float32 (see --formats tflite_fp16)",
                 args.mixed_precision)
    try:
        model, config = load_export_model(args.checkpoint_path, model_config(args),
                                          explicit_model_fields(args))
        settings = ExportSettings(args.export_dir, args.dataset,
                                  input_normalization(model, config.encoder),
                                  args.input_height, args.input_width, args.parity_images)
        results, keras_latency = export_all(model, args.formats or DEFAULT_FORMATS, settings)
    except ConfigError as err:  # a flag that contradicts the checkpoint, named as the flag
        print(f"error: {err.as_flag_error()}", file=sys.stderr)
        return 1
    except (CheckpointError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report = write_report(results, keras_latency, settings)
    print(format_report(results, keras_latency, settings))
    print(f"report written to {report}")
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"error: {r.format} export differs from the Keras model by {r.max_abs_diff_m:.3g} m "
              f"(tolerance {r.tolerance_m:.3g} m): {r.path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Convert a filenames list into TFRecord shards, in parallel processes (design §5.7).

    python bts_convert_data.py arguments_convert_nyu.txt [--num_shards 64 --num_workers 8 --strict]

Line ``i`` of the list goes to shard ``i % num_shards`` (``PREFIX-00000-of-00064.tfrecord``), in
list order, so the output does not depend on the number of processes, and reading the shards
round-robin (as ``bts_dataloader`` does for eval/test) gives back the list order. Each record is a
``tf.train.Example`` with the files' encoded bytes unchanged (see
``bts_dataloader.serialize_example``). Every file is fully decoded and checked first; lines whose
files are missing or unusable are skipped and reported (``--strict``: fail instead). Shards are
written under a temporary name and renamed, locally or on ``gs://`` alike, so an interrupted run
never leaves a half-written shard; a final pass counts the records and checks every kept line is
present exactly once. Last, ``PREFIX.manifest.json`` records each shard's record count and size:
training takes its steps per epoch from it and spots a truncated shard before reading it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence

from utils.arguments import check_input_paths, parse_args
from utils.io import (DataError, WriteError, atomic_write, atomic_write_text, check_writable_folder,
                      write_errors, write_failure_reason)
from utils.quiet import quiet_tensorflow

if TYPE_CHECKING:
    from bts_dataloader import Sample
# TensorFlow (and bts_dataloader, which imports it) is imported inside the functions that use it:
# --help and flag errors must not wait for TF's start-up.

log = logging.getLogger("bts_convert_data")
MAX_REPORTED = 20  # problem lines listed in the log (all are counted)


@dataclasses.dataclass
class ShardResult:
    """What one shard writer did."""

    shard: int
    written: int
    missing: List[str]  # 'list.txt line 3: path' of files that do not exist
    invalid: List[str]  # one-line reasons for files that do not decode


@dataclasses.dataclass
class ConversionReport:
    """Totals of a conversion."""

    shards: List[str]
    written: int
    missing: List[str]
    invalid: List[str]


def _read(path: str) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def _encode_sample(sample: Sample, index: int) -> bytes:
    """Read and check one sample's files; FileNotFoundError / DataError when unusable."""
    import tensorflow as tf

    import bts_dataloader

    paths = [sample.rgb_path] + ([sample.depth_path] if sample.depth_path else [])
    for path in paths:
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{sample.where}: {path}")
    image_bytes = _read(sample.rgb_path)
    depth_bytes = _read(sample.depth_path) if sample.depth_path else None
    bts_dataloader.check_sample_bytes(sample, image_bytes, depth_bytes)
    return bts_dataloader.serialize_example(image_bytes, depth_bytes, sample.focal, index,
                                            sample.where, sample.line)


def shard_members(samples: Sequence[Sample], shard: int, num_shards: int) -> List[tuple]:
    """(line index, sample) pairs of one shard: lines shard, shard + num_shards, ..."""
    return [(index, samples[index]) for index in range(shard, len(samples), num_shards)]


def write_shard(prefix: str, shard: int, num_shards: int, members: Sequence[tuple],
                strict: bool = False) -> ShardResult:
    """Write ``members`` ((index, Sample) pairs, in order) to one shard, atomically."""
    import tensorflow as tf

    import bts_dataloader

    result = ShardResult(shard, 0, [], [])
    records = []
    for index, sample in members:
        try:
            records.append(_encode_sample(sample, index))
        except FileNotFoundError as err:
            if strict:
                raise DataError(f"missing file: {err}") from None
            result.missing.append(str(err))
        except DataError as err:
            if strict:
                raise
            result.invalid.append(str(err))

    def write(tmp_path: str) -> None:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for record in records:
                writer.write(record)

    path = bts_dataloader.shard_name(prefix, shard, num_shards)
    try:
        atomic_write(path, write)
    except write_errors() as err:  # full disk, ...: the temp file is gone, no shard is half-written
        raise DataError(f"cannot write {path}: {write_failure_reason(err)}") from None
    result.written = len(records)
    return result


def _write_shard_job(job) -> ShardResult:
    return write_shard(*job)


def _remove_leftovers(prefix: str, num_shards: int) -> None:
    """Delete temp files of interrupted runs and shards of earlier runs with another shard count."""
    import tensorflow as tf

    import bts_dataloader

    folder, base = os.path.split(prefix)
    manifest = bts_dataloader.manifest_path(prefix)
    if tf.io.gfile.exists(manifest):  # rewritten at the end; until then it would not match
        tf.io.gfile.remove(manifest)
    for tmp in tf.io.gfile.glob(os.path.join(folder, f".{base}-*.tfrecord.tmp-*")):
        tf.io.gfile.remove(tmp)
    keep = f"-of-{num_shards:05d}{bts_dataloader.TFRECORD_SUFFIX}"
    for stale in tf.io.gfile.glob(f"{prefix}-*-of-*{bts_dataloader.TFRECORD_SUFFIX}"):
        if not stale.endswith(keep) and bts_dataloader.SHARD_PATTERN.search(stale):
            log.warning("removing stale shard of an earlier run: %s", stale)
            tf.io.gfile.remove(stale)


def count_records(files: Sequence[str]) -> List[int]:
    """Line indexes stored in ``files`` (reads every record once)."""
    import tensorflow as tf

    import bts_dataloader

    spec = {"index": bts_dataloader.FEATURES["index"]}
    data = tf.data.TFRecordDataset(list(files)).map(
        lambda r: tf.io.parse_single_example(r, spec)["index"])
    return [int(i) for i in data.as_numpy_iterator()]


def convert(samples: Sequence[Sample], prefix: str, num_shards: int, num_workers: int = 0,
            strict: bool = False) -> ConversionReport:
    """Write ``samples`` to ``num_shards`` shards with ``num_workers`` processes (0: CPU count)."""
    import tensorflow as tf
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    import bts_dataloader

    if num_shards < 1:
        raise DataError(f"--num_shards {num_shards} must be at least 1")
    if not prefix:
        raise DataError("--tfrecord_path (the output shard prefix) is empty")
    workers = min(num_shards, num_workers or os.cpu_count() or 1)
    folder = os.path.dirname(prefix)
    try:  # before any work: an unwritable output fails now, not after decoding every file
        check_writable_folder(folder or ".", "--tfrecord_path folder")
        if folder:
            tf.io.gfile.makedirs(folder)
    except (WriteError, tf.errors.OpError) as err:
        raise DataError(str(err) if isinstance(err, WriteError) else
                        f"--tfrecord_path folder {folder!r}: {write_failure_reason(err)}") from None
    _remove_leftovers(prefix, num_shards)
    jobs = [(prefix, shard, num_shards, shard_members(samples, shard, num_shards), strict)
            for shard in range(num_shards)]
    results: List[ShardResult] = []
    with logging_redirect_tqdm(), tqdm(total=num_shards, unit="shard", desc="converting") as progress:
        if workers == 1:
            for job in jobs:
                results.append(_write_shard_job(job))
                progress.update()
        else:
            # Processes, not threads: decoding checks and protobuf encoding hold the GIL. 'spawn'
            # because forking a process that already runs TF's thread pools can deadlock. Each
            # worker imports TF itself: quiet it the same way (TF_CPP_MIN_LOG_LEVEL is inherited).
            with multiprocessing.get_context("spawn").Pool(workers, initializer=quiet_tensorflow) as pool:
                for result in pool.imap_unordered(_write_shard_job, jobs):
                    results.append(result)
                    progress.update()
    results.sort(key=lambda r: r.shard)
    shards = [bts_dataloader.shard_name(prefix, r.shard, num_shards) for r in results]
    report = ConversionReport(shards, sum(r.written for r in results),
                              [m for r in results for m in r.missing],
                              [m for r in results for m in r.invalid])
    _check_counts(report, samples)
    write_manifest(prefix, results, shards, samples)
    return report


def write_manifest(prefix: str, results: Sequence[ShardResult], shards: Sequence[str],
                   samples: Sequence[Sample]) -> str:
    """``PREFIX.manifest.json``: records and bytes per shard (what bts_dataloader.open_shards checks)."""
    import tensorflow as tf

    import bts_dataloader

    manifest = {
        "records": sum(r.written for r in results),
        "lines": len(samples),
        "source": samples[0].source if samples else "",
        "shards": {path.rsplit("/", 1)[-1]: {"records": r.written,
                                             "bytes": tf.io.gfile.stat(path).length}
                   for r, path in zip(results, shards)},
    }
    path = bts_dataloader.manifest_path(prefix)
    try:
        atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    except write_errors() as err:
        raise DataError(f"cannot write {path}: {write_failure_reason(err)}") from None
    return path


def _check_counts(report: ConversionReport, samples: Sequence[Sample]) -> None:
    """Every line not reported as skipped is in the shards exactly once."""
    found = count_records(report.shards)
    skipped = len(report.missing) + len(report.invalid)
    if len(found) != report.written or len(found) + skipped != len(samples) \
            or len(set(found)) != len(found):
        raise DataError(f"count check failed: {len(found)} records read back ({len(set(found))} "
                        f"distinct), {report.written} written, {skipped} skipped, "
                        f"{len(samples)} lines in the list")


def _log_problems(kind: str, items: List[str]) -> None:
    if not items:
        return
    log.warning("%d line(s) skipped, %s:", len(items), kind)
    for item in items[:MAX_REPORTED]:
        log.warning("  %s", item)
    if len(items) > MAX_REPORTED:
        log.warning("  ... and %d more", len(items) - MAX_REPORTED)


def _validate(parser, args) -> None:
    if not args.filenames_file:
        parser.error("--filenames_file is required (the list to convert)")
    if not args.tfrecord_path:
        parser.error("--tfrecord_path is required (output prefix, e.g. dataset/nyu/tfrecords/nyu-train)")


def main(argv: Optional[Sequence[str]] = None) -> ConversionReport:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(groups=("model", "data", "convert"), argv=argv, prog="bts_convert_data.py",
                      description=__doc__.splitlines()[0], validate=_validate)
    quiet_tensorflow(args.verbose)
    problem = check_input_paths(args, files=("filenames_file",), folders=("data_path", "gt_path"))
    if problem:  # before TensorFlow starts
        raise SystemExit(f"error: {problem}")
    import bts_dataloader

    try:
        samples = bts_dataloader.read_filenames_file(args.filenames_file, args.data_path, args.gt_path)
        report = convert(samples, args.tfrecord_path, args.num_shards, args.num_workers, args.strict)
    except DataError as err:
        raise SystemExit(f"error: {err.as_flag_error()}") from None
    _log_problems("missing files", report.missing)
    _log_problems("unreadable files", report.invalid)
    print(f"wrote {report.written} records from {len(samples)} lines to {len(report.shards)} shards "
          f"{args.tfrecord_path}-*-of-{args.num_shards:05d}.tfrecord "
          f"({len(report.missing)} missing, {len(report.invalid)} unreadable skipped)")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])

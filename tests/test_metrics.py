# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Official evaluation protocol: hand-computed metrics, exact crop boxes, KB paste-back, clipping."""
import math

import numpy as np
import pytest

from utils import metrics
from utils.datasets import kb_crop_offsets, paste_kb_crop


def _reference_errors(gt, pred):
    """Independent float64 reference of the formulas in design §6.2."""
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    log_diff = np.log(pred) - np.log(gt)
    return {
        "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25 ** 2), "d3": np.mean(ratio < 1.25 ** 3),
        "abs_rel": np.mean(np.abs(gt - pred) / gt), "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rms": math.sqrt(np.mean((gt - pred) ** 2)), "log_rms": math.sqrt(np.mean(log_diff ** 2)),
        "silog": 100 * math.sqrt(np.mean(log_diff ** 2) - np.mean(log_diff) ** 2),
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
    }


def test_compute_errors_matches_hand_computed_values():
    # pred/gt ratios 2, 1, 1/2: e = ln p - ln g = (ln2, 0, -ln2), mean 0.
    result = metrics.compute_errors(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]))
    ln2 = math.log(2.0)
    expected = {
        "abs_rel": (1 + 0 + 0.5) / 3, "sq_rel": (1 + 0 + 1) / 3, "rms": math.sqrt(5 / 3),
        "log_rms": ln2 * math.sqrt(2 / 3), "silog": 100 * ln2 * math.sqrt(2 / 3),
        "log10": 2 * math.log10(2) / 3, "d1": 1 / 3, "d2": 1 / 3, "d3": 1 / 3,
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name


def test_threshold_accuracies_count_each_band():
    # ratios 1.2 < 1.25; 1.5 < 1.5625; 1.9 < 1.953125; 2.5 beyond every threshold
    result = metrics.compute_errors(np.ones(4), np.array([1.2, 1.5, 1.9, 2.5]))
    assert (result["d1"], result["d2"], result["d3"]) == pytest.approx((0.25, 0.5, 0.75))


def test_compute_errors_agrees_with_float64_reference_and_is_float32_rounded():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 10, 5000).astype(np.float32)
    pred = (gt * rng.uniform(0.7, 1.4, 5000)).astype(np.float32)
    result = metrics.compute_errors(gt, pred)
    reference = _reference_errors(gt, pred)
    for name in metrics.METRIC_NAMES:
        assert result[name] == pytest.approx(reference[name], rel=2e-5), name
        assert result[name] == float(np.float32(result[name])), name  # stored as float32 upstream


def test_clip_prediction_upstream_rules():
    pred = np.array([-1.0, 0.0, 5e-4, 3.0, 12.0, np.inf, -np.inf, np.nan])
    clipped = metrics.clip_prediction(pred, 1e-3, 10.0)
    np.testing.assert_array_equal(
        clipped, np.array([1e-3, 1e-3, 1e-3, 3.0, 10.0, 10.0, 1e-3, 1e-3], np.float32))
    assert clipped.dtype == np.float32
    assert pred[0] == -1.0  # input untouched


def test_nyu_eigen_crop_is_426_by_560_at_the_official_offsets():
    mask = metrics.eval_crop_mask(480, 640, "nyu", eigen_crop=True)
    assert mask.sum() == 426 * 560
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 470, 41, 600)


def test_kitti_garg_crop_on_375x1242_keeps_rows_153_to_370_cols_44_to_1196():
    mask = metrics.eval_crop_mask(375, 1242, "kitti", garg_crop=True)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (153, 370, 44, 1196)
    assert mask.sum() == 218 * 1153


def test_kitti_eigen_crop_and_garg_precedence():
    eigen = metrics.eval_crop_mask(375, 1242, "kitti", eigen_crop=True)
    rows, cols = np.nonzero(eigen)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (124, 341, 44, 1196)
    both = metrics.eval_crop_mask(375, 1242, "kitti", eigen_crop=True, garg_crop=True)
    np.testing.assert_array_equal(both, metrics.eval_crop_mask(375, 1242, "kitti", garg_crop=True))
    assert metrics.eval_crop_mask(7, 9, "nyu").all()


def test_valid_mask_bounds_are_strict():
    gt = np.array([[0.0, 1e-3, 0.002, 9.999, 10.0, 11.0]], np.float32)
    np.testing.assert_array_equal(metrics.valid_mask(gt, 1e-3, 10.0),
                                  [[False, False, True, True, False, False]])


def test_kb_crop_prediction_is_pasted_at_bottom_centre_offsets():
    pred = np.arange(352 * 1216, dtype=np.float32).reshape(352, 1216) + 1
    canvas = paste_kb_crop(pred, 375, 1242)
    assert kb_crop_offsets(375, 1242) == (23, 13)
    np.testing.assert_array_equal(canvas[23:375, 13:1229], pred)
    assert canvas.sum() == pred.sum()  # zeros everywhere else
    with pytest.raises(ValueError, match="352"):
        paste_kb_crop(np.ones((10, 10)), 375, 1242)


def test_kitti_paste_happens_after_clipping_like_eval_with_pngs():
    # GT valid everywhere at 5 m, prediction perfect inside the KB crop, no eval crop: the pasted
    # zeros stay 0 (not clipped to 1e-3), so every outside pixel has |g - p| / g = 1 exactly.
    gt = np.full((375, 1242), 5.0, np.float32)
    pred = np.full((352, 1216), 5.0, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = metrics.evaluate_image(gt, pred, 1e-3, 80.0, "kitti", do_kb_crop=True)
    outside = 375 * 1242 - 352 * 1216
    assert result["abs_rel"] == pytest.approx(outside / (375 * 1242), rel=1e-6)


def test_kitti_garg_crop_after_paste_scores_only_the_crop():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 90, (375, 1242)).astype(np.float32)
    pred = rng.uniform(-5, 100, (352, 1216)).astype(np.float32)
    result = metrics.evaluate_image(gt, pred, 1e-3, 80.0, "kitti", garg_crop=True, do_kb_crop=True)
    # reference: paste by hand, crop rows 153..370 / cols 44..1196, clip, strict validity
    full = np.zeros_like(gt)
    full[23:, 13:1229] = np.clip(pred, 1e-3, 80.0)
    box_gt, box_pred = gt[153:371, 44:1197], full[153:371, 44:1197]
    keep = (box_gt > 1e-3) & (box_gt < 80.0)
    reference = _reference_errors(box_gt[keep], box_pred[keep])
    for name in metrics.METRIC_NAMES:
        assert result[name] == pytest.approx(reference[name], rel=2e-5), name


def test_evaluate_image_zeroes_non_finite_gt_and_reports_no_valid_pixel():
    gt = np.array([[np.nan, np.inf], [2.0, 0.0]], np.float32)
    pred = np.array([[1.0, 1.0], [4.0, 1.0]], np.float32)
    assert metrics.evaluate_image(gt, pred, 1e-3, 10.0)["abs_rel"] == pytest.approx(1.0)
    assert metrics.evaluate_image(np.zeros((2, 2)), pred, 1e-3, 10.0) is None
    with pytest.raises(ValueError, match="differ in size"):
        metrics.evaluate_image(np.ones((3, 3)), pred, 1e-3, 10.0)


def test_average_metrics_is_per_image_mean_skipping_images_without_pixels():
    a = {name: 1.0 for name in metrics.METRIC_NAMES}
    b = {name: 2.0 for name in metrics.METRIC_NAMES}
    assert metrics.average_metrics([a, None, b]) == {name: 1.5 for name in metrics.METRIC_NAMES}
    with pytest.raises(ValueError):
        metrics.average_metrics([None])


def test_result_tables_in_both_upstream_orders():
    values = dict(zip(metrics.METRIC_NAMES, (11.5331, 0.1101, 0.047, 0.392, 0.066, 0.142,
                                            0.885, 0.978, 0.994)))
    header, row = metrics.format_result_table(values).splitlines()
    assert header.split(",")[0].strip() == "silog" and row.split(",")[0].strip() == "11.5331"
    header, row = metrics.format_result_table(values, style="eval_with_pngs").splitlines()
    assert [h.strip() for h in header.split(",")] == ["d1", "d2", "d3", "AbsRel", "SqRel", "RMSE",
                                                      "RMSElog", "SILog", "log10"]
    assert [r.strip() for r in row.split(",")][:4] == ["0.885", "0.978", "0.994", "0.110"]


def test_metrics_csv_keeps_full_precision():
    row = {name: 0.1 + i / 3 for i, name in enumerate(metrics.METRIC_NAMES)}
    text = metrics.metrics_csv_text(["a,b.png", "c.png"], [row, None], row)
    lines = text.splitlines()
    assert lines[0] == "name," + ",".join(metrics.METRIC_NAMES)
    assert lines[1].startswith('"a,b.png",')
    assert [float(v) for v in lines[1].split(",")[2:]] == [row[n] for n in metrics.METRIC_NAMES]
    assert lines[2] == "c.png" + "," * len(metrics.METRIC_NAMES)
    assert lines[3].startswith("mean,")


def test_metrics_csv_round_trips_and_an_unwritable_path_is_one_line(tmp_path):
    from utils.io import WriteError

    row = {name: float(i) for i, name in enumerate(metrics.METRIC_NAMES)}
    path = tmp_path / "m.csv"
    metrics.write_metrics_csv(str(path), ["a"], [row], row)
    assert path.read_text() == metrics.metrics_csv_text(["a"], [row], row)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"^cannot write --metrics_csv .*file/m.csv: "):
        metrics.write_metrics_csv(str(blocker / "m.csv"), ["a"], [row], row)

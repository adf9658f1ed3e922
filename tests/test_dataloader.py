# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""bts_dataloader: list parsing, each op eagerly and in Dataset.map, alignment, units, sources."""
import io
import math
import os
import re
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import bts_convert_data
import bts_dataloader as dl
from bts_dataloader import DataError
from utils import image_io
from utils.configs import PipelineConfig
from utils.datasets import get_dataset_facts


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def png16_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def image_bytes(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def make_config(dataset: str = "nyu", **overrides) -> PipelineConfig:
    """A small seeded pipeline config (64x96 crops, batch 2, rotation on, torch normalisation)."""
    values = dict(facts=get_dataset_facts(dataset), normalization="torch", input_height=64,
                  input_width=96, batch_size=2, do_kb_crop=False, do_random_rotate=True, degree=2.5,
                  num_threads=-1, deterministic=True, seed=7)
    values.update(overrides)
    return PipelineConfig(**values)


def in_map(fn, *args):
    """Run ``fn(*args)`` inside Dataset.map (graph mode, tf.data executor)."""
    data = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args)).map(
        lambda *xs: fn(*xs))
    return next(iter(data))


# ------------------------------------------------------------------------------------------------
# filenames files
# ------------------------------------------------------------------------------------------------
def test_read_filenames_file_joins_roots_like_pytorch(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        "/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579\n"
        "\n"
        "2011_09_26/d/image_02/data/0000000005.png None 721.5377\n")
    samples = dl.read_filenames_file(str(listing), "/data/sync/", "gs://bucket/gt")
    assert samples[0].rgb_path == "/data/sync/kitchen_0028b/rgb_00045.jpg"
    assert samples[0].depth_path == "gs://bucket/gt/kitchen_0028b/sync_depth_00045.png"
    assert samples[0].focal == pytest.approx(518.8579)
    assert samples[1].depth_path is None and samples[1].line_number == 3
    assert samples[1].rgb_path == "/data/sync/2011_09_26/d/image_02/data/0000000005.png"
    assert dl.join_root("", "/a/b.png") == "a/b.png"


@pytest.mark.parametrize("text, expected", [
    ("", "is empty"),
    ("a.jpg b.png 518.8\na.jpg b.png\n", "line 2: expected 3 columns"),
    ("a.jpg b.png focal\n", "line 1: focal 'focal' is not a number"),
    ("a.jpg b.png -3\n", "line 1: focal '-3' must be a positive"),
])
def test_bad_filenames_file_gives_one_line_error_naming_file_and_line(tmp_path, text, expected):
    listing = tmp_path / "bad_list.txt"
    listing.write_text(text)
    with pytest.raises(DataError) as err:
        dl.read_filenames_file(str(listing))
    message = str(err.value)
    assert "bad_list.txt" in message and expected in message and "\n" not in message


def test_read_filenames_file_through_ram_filesystem():
    path = f"ram://lists/{uuid.uuid4().hex}/train.txt"
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write("scene/rgb_00000.jpg scene/sync_depth_00000.png 518.8579\n")
    samples = dl.read_filenames_file(path, "ram://data/")
    assert samples[0].rgb_path == "ram://data/scene/rgb_00000.jpg"
    with pytest.raises(DataError, match="cannot read filenames file ram://nowhere/x.txt"):
        dl.read_filenames_file("ram://nowhere/x.txt")


# ------------------------------------------------------------------------------------------------
# ops: reference values, eager == Dataset.map
# ------------------------------------------------------------------------------------------------
def test_normalize_image_modes_match_their_formulas():
    x = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(dl.normalize_image(x, "torch"), (x - mean) / std, atol=1e-5)
    np.testing.assert_allclose(dl.normalize_image(x, "tf"), x * 2 - 1, atol=1e-6)
    caffe = x[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(dl.normalize_image(x, "caffe"), caffe, atol=1e-4)
    np.testing.assert_allclose(dl.normalize_image(x, "raw"), x)
    with pytest.raises(ValueError, match="normalisation mode 'bgr'"):
        dl.normalize_image(x, "bgr")


def test_augment_colour_matches_numpy_formula():
    x = np.random.default_rng(1).random((6, 7, 3)).astype(np.float32)
    x[0, 0] = 0.0
    colour = np.array([0.9, 1.0, 1.1], np.float32)
    expected = np.clip(x ** 1.05 * 1.2 * colour, 0, 1)
    np.testing.assert_allclose(dl.augment_colour(x, 1.05, 1.2, colour), expected, atol=1e-5)


def test_finish_image_equals_augment_then_normalise():
    x255 = np.random.default_rng(2).integers(0, 256, (5, 6, 3)).astype(np.float32)
    draws = np.array([0.25, 0.8, 0.1, 0.5, 0.9], np.float32)
    gamma, brightness = 0.9 + 0.2 * 0.25, 0.75 + 0.5 * 0.8
    colour = 0.9 + 0.2 * draws[2:]
    expected = dl.normalize_image(np.clip((x255 / 255) ** gamma * brightness * colour, 0, 1))
    np.testing.assert_allclose(dl.finish_image(x255, "torch", draws), expected, atol=1e-4)
    np.testing.assert_allclose(dl.finish_image(x255, "caffe"), dl.normalize_image(x255 / 255, "caffe"),
                               atol=1e-3)


def _ops_cases():
    rng = np.random.default_rng(3)
    image = rng.random((20, 30, 3)).astype(np.float32)
    depth = rng.integers(1, 5000, (20, 30, 1)).astype(np.float32)
    transform = dl.crop_transform(0.04, 20, 30, 2, 3, True, 24)
    return {
        "normalize": (lambda x: dl.normalize_image(x, "torch"), image),
        "colour": (lambda x: dl.augment_colour(x, 1.07, 0.8, tf.constant([1.0, 0.95, 1.08])), image),
        "finish": (lambda x: dl.finish_image(x * 255.0, "torch", tf.constant([0.1, 0.2, 0.3, 0.4, 0.5])),
                   image),
        "bilinear_kernel": (lambda x: dl.apply_transform(x, transform, [16, 24]), image),
        "bilinear_xla": (lambda x: dl.apply_transform(x, transform, [16, 24], xla_compatible=True), image),
        "nearest_kernel": (lambda d: dl.apply_transform(d, transform, [16, 24], "NEAREST"), depth),
        "nearest_xla": (lambda d: dl.apply_transform(d, transform, [16, 24], "NEAREST", True), depth),
        "crop": (lambda x: dl.crop(x, 3, 4, 10, 12), image),
        "flip": (lambda x: dl.flip_left_right(x, True), image),
        "decode_depth": (lambda b: dl.decode_depth(b, "x"), png16_bytes(depth[..., 0])),
        "decode_rgb": (lambda b: dl.decode_rgb(b, "x"), image_bytes(image * 255, "JPEG")),
    }


@pytest.mark.parametrize("name", sorted(_ops_cases()))
def test_each_op_gives_the_same_result_eagerly_and_inside_dataset_map(name):
    fn, value = _ops_cases()[name]
    eager = fn(tf.convert_to_tensor(value))
    mapped = in_map(fn, value)
    # Grappler may reorder float arithmetic in graphs: equal to float rounding (integer-valued
    # outputs such as decoded depth or nearest resampling must match exactly, atol < 1).
    assert eager.dtype == mapped.dtype and eager.shape == mapped.shape
    np.testing.assert_allclose(eager.numpy(), mapped.numpy(), rtol=0, atol=1e-5)


def test_gather_resampling_matches_image_projective_transform_kernel():
    rng = np.random.default_rng(4)
    image = rng.random((37, 53, 3)).astype(np.float32)
    depth = rng.integers(1, 60000, (37, 53, 1)).astype(np.float32)
    for angle, top, left, flip in [(0.05, 2, 5, False), (-0.04, 0, 0, True), (0.0, 3, 1, True)]:
        t = dl.crop_transform(angle, 37, 53, top, left, flip, 40)
        kernel = dl.apply_transform(image, t, [30, 40]).numpy()
        gathered = dl.apply_transform(image, t, [30, 40], xla_compatible=True).numpy()
        np.testing.assert_allclose(gathered, kernel, atol=2e-5)
        near_k = dl.apply_transform(depth, t, [30, 40], "NEAREST").numpy()
        near_g = dl.apply_transform(depth, t, [30, 40], "NEAREST", True).numpy()
        assert (near_k == near_g).mean() > 0.999  # ties at exactly .5 may round differently


def test_rotation_compiles_with_xla_and_matches_eager():
    rng = np.random.default_rng(5)
    image = tf.constant(rng.random((24, 32, 3)), tf.float32)
    depth = tf.constant(rng.integers(1, 100, (24, 32, 1)), tf.float32)
    compiled = tf.function(dl.rotate_image_and_depth, jit_compile=True)
    img_x, dep_x = compiled(image, depth, tf.constant(0.04))
    img_e, dep_e = dl.rotate_image_and_depth(image, depth, 0.04)
    np.testing.assert_allclose(img_x, img_e, atol=1e-5)
    assert (dep_x.numpy() == dep_e.numpy()).mean() > 0.999


def test_nearest_rotation_only_produces_input_values_or_zero():
    rng = np.random.default_rng(6)
    depth = rng.permutation(40 * 50).reshape(40, 50, 1).astype(np.float32) + 1.0
    for xla in (False, True):
        rotated = dl.rotate(depth, math.radians(2.5), "NEAREST", xla_compatible=xla).numpy()
        assert set(np.unique(rotated)) <= set(np.unique(depth)) | {0.0}
        assert (rotated == 0).any() and (rotated > 0).mean() > 0.9


def test_rotation_matches_a_numpy_reference_about_the_centre():
    h, w = 21, 31
    depth = (np.arange(h * w).reshape(h, w, 1) + 1).astype(np.float32)
    angle = math.radians(3.0)
    rotated = dl.rotate(depth, angle, "NEAREST", xla_compatible=False).numpy()[..., 0]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys, xs = np.mgrid[0:h, 0:w]
    src_x = np.cos(angle) * (xs - cx) - np.sin(angle) * (ys - cy) + cx
    src_y = np.sin(angle) * (xs - cx) + np.cos(angle) * (ys - cy) + cy
    ri, ci = np.floor(src_y + 0.5).astype(int), np.floor(src_x + 0.5).astype(int)
    inside = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    expected = np.where(inside, depth[np.clip(ri, 0, h - 1), np.clip(ci, 0, w - 1), 0], 0)
    assert (rotated == expected).mean() > 0.995


# ------------------------------------------------------------------------------------------------
# train sample: alignment of image and depth
# ------------------------------------------------------------------------------------------------
def coordinate_sample(h=120, w=200):
    """Image R = column, G = row (exact in uint8); depth = row * 256 + column + 1 (exact)."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([cols, rows, np.full_like(rows, 128)], -1).astype(np.uint8)
    depth = (rows * 256 + cols + 1).astype(np.uint16)
    return image, depth


@pytest.mark.parametrize("angle_draw, flip_draw", [(0.5, 0.2), (0.5, 0.8), (0.95, 0.2), (0.05, 0.9)])
def test_image_and_depth_stay_aligned_after_rotation_crop_and_flip(angle_draw, flip_draw):
    image, depth = coordinate_sample()
    cfg = make_config("kitti", normalization="raw", do_random_rotate=True, degree=5.0)
    draws = tf.constant([angle_draw, 0.3, 0.6, flip_draw, 0.0, 0, 0, 0, 0, 0], tf.float32)
    out_image, out_depth = dl.train_sample(cfg, image, depth, draws, "x")
    out_image = out_image.numpy() * 255.0
    raw = np.round(out_depth.numpy()[..., 0] * 256.0)
    valid = raw > 0
    src_row, src_col = (raw - 1) // 256, (raw - 1) % 256
    # Bilinear reproduces the linear ramps exactly: the image says where each pixel came from.
    img_col, img_row = out_image[..., 0], out_image[..., 1]
    interior = valid & (img_col > 0.5) & (img_col < 198.5) & (img_row > 0.5) & (img_row < 118.5)
    assert interior.mean() > 0.8
    assert np.abs(img_col - src_col)[interior].max() <= 0.5 + 1e-3
    assert np.abs(img_row - src_row)[interior].max() <= 0.5 + 1e-3
    top = math.floor(0.3 * (120 - 64 + 1))
    left = math.floor(0.6 * (200 - 96 + 1))
    if angle_draw == 0.5:  # no rotation: an exact crop, mirrored when flipping
        expected = depth[top:top + 64, left:left + 96]
        if flip_draw > 0.5:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(raw, expected)


def test_train_sample_without_rotation_equals_numpy_reference():
    image, depth = coordinate_sample(96, 128)
    cfg = make_config("nyu", do_random_rotate=False)
    draws = tf.constant([0.5, 0.9, 0.1, 0.7, 0.8, 0.5, 0.5, 0.2, 0.4, 0.6], tf.float32)
    out_image, out_depth = dl.train_sample(cfg, image, depth, draws, "x")
    top, left, box_h, box_w = dl.dataset_crop_box(get_dataset_facts("nyu"), 96, 128, False)
    assert (top, left, box_h, box_w) == (9, 8, 85, 113)  # the NYU border box scaled to 96x128
    y, x = math.floor(0.9 * (box_h - 64 + 1)), math.floor(0.1 * (box_w - 96 + 1))
    ref_img = image[top:, left:][y:y + 64, x:x + 96][:, ::-1] / 255.0
    ref_depth = depth[top:, left:][y:y + 64, x:x + 96][:, ::-1] / 1000.0
    gamma, brightness = 1.0, 1.0
    colour = 0.9 + 0.2 * np.array([0.2, 0.4, 0.6])
    ref_img = np.clip(ref_img ** gamma * brightness * colour, 0, 1)
    np.testing.assert_allclose(out_image, dl.normalize_image(ref_img), atol=1e-4)
    np.testing.assert_allclose(out_depth[..., 0], ref_depth, atol=1e-6)


def test_nyu_border_crop_box_is_the_upstream_box_at_480x640():
    assert dl.dataset_crop_box(get_dataset_facts("nyu"), 480, 640, False) == (45, 43, 427, 565)
    assert dl.kb_crop_box(375, 1242) == (23, 13, 352, 1216)
    assert dl.dataset_crop_box(get_dataset_facts("kitti"), 375, 1242, False) is None


# ------------------------------------------------------------------------------------------------
# units (the numpy readers are tested in test_image_io.py)
# ------------------------------------------------------------------------------------------------
def test_depth_units_decode_exactly_and_as_the_numpy_reader(tmp_path):
    values = np.array([[0, 1000, 256, 65535]], np.uint16)
    path = write(tmp_path / "d.png", png16_bytes(values))
    decoded = dl.decode_depth(tf.constant(png16_bytes(values)), "x")
    for scale, one_metre in ((1000.0, (0, 1)), (256.0, (0, 2))):
        metres = dl.depth_to_metres(decoded, scale).numpy()
        assert metres[one_metre] == 1.0
        np.testing.assert_array_equal(metres, image_io.read_depth_png(path, scale))


# ------------------------------------------------------------------------------------------------
# pipelines
# ------------------------------------------------------------------------------------------------
def test_train_dataset_shapes_units_and_resumable_epochs(nyu_data):
    args = make_config(filenames_file=nyu_data["train_filenames"], data_path=nyu_data["data_path"],
                     gt_path=nyu_data["gt_path"])
    batches = list(dl.make_dataset(args, "train", epoch=1))
    assert len(batches) == 2  # 5 samples, batch 2, remainder dropped
    assert batches[0]["image"].shape == (2, 64, 96, 3) and batches[0]["depth"].shape == (2, 64, 96, 1)
    assert batches[0]["focal"].dtype == tf.float32 and batches[0]["depth"].dtype == tf.float32
    assert 0.5 < float(tf.reduce_max(batches[0]["depth"])) < 10.0
    resumed = list(dl.make_dataset(args, "train", epoch=1).skip(1))
    np.testing.assert_array_equal(resumed[0]["image"], batches[1]["image"])
    np.testing.assert_array_equal(resumed[0]["depth"], batches[1]["depth"])
    other = list(dl.make_dataset(args, "train", epoch=2))
    assert not np.array_equal(other[0]["image"], batches[0]["image"])


def test_eval_and_test_datasets_yield_full_images_in_list_order(nyu_data):
    args = make_config(filenames_file=nyu_data["test_filenames"], data_path=nyu_data["data_path_eval"],
                     gt_path=nyu_data["gt_path_eval"])
    samples = dl.read_filenames_file(args.filenames_file, args.data_path, args.gt_path)
    evals = list(dl.make_dataset(args, "eval"))
    assert [int(e["index"][0]) for e in evals] == [0, 1, 2]
    first = evals[0]
    assert first["image"].shape == (1, 96, 128, 3) and bool(first["has_depth"][0])
    np.testing.assert_array_equal(first["depth"][0, ..., 0],
                                  image_io.read_depth_png(samples[0].depth_path, 1000.0))
    expected = dl.normalize_image(image_io.load_image(samples[0].rgb_path) / 255.0)
    np.testing.assert_allclose(first["image"][0], expected, atol=1e-5)
    tests = list(dl.make_dataset(args, "test"))
    assert set(tests[0]) == {"image", "focal", "index"}
    np.testing.assert_array_equal(tests[1]["image"], evals[1]["image"])


def test_eval_kitti_kb_crops_the_input_and_keeps_full_ground_truth(tmp_path):
    rng = np.random.default_rng(8)
    rgb = rng.integers(0, 256, (360, 1230, 3)).astype(np.uint8)
    write(tmp_path / "img.png", image_bytes(rgb))
    (tmp_path / "list.txt").write_text("img.png None 721.5377\n")
    args = make_config(dataset="kitti", do_kb_crop=True, filenames_file=str(tmp_path / "list.txt"),
                     data_path=str(tmp_path))
    element = next(iter(dl.make_dataset(args, "eval")))
    top, left = 360 - 352, (1230 - 1216) // 2
    expected = dl.normalize_image(rgb[top:top + 352, left:left + 1216] / 255.0)
    np.testing.assert_allclose(element["image"][0], expected, atol=1e-5)
    assert element["depth"].shape == (1, 360, 1230, 1) and not bool(element["has_depth"][0])
    assert float(tf.reduce_max(element["depth"])) == 0.0


def test_files_and_tfrecords_give_identical_tensors(nyu_data, tmp_path):
    samples = dl.read_filenames_file(nyu_data["test_filenames"], nyu_data["data_path_eval"],
                                     nyu_data["gt_path_eval"])
    prefix = f"ram://tfr/{uuid.uuid4().hex}/nyu-test"
    bts_convert_data.convert(samples, prefix, num_shards=2, num_workers=1)
    files_args = make_config(filenames_file=nyu_data["test_filenames"],
                           data_path=nyu_data["data_path_eval"], gt_path=nyu_data["gt_path_eval"])
    record_args = make_config(tfrecord_path=prefix)
    for mode in ("eval", "test"):
        from_files = list(dl.make_dataset(files_args, mode))
        from_records = list(dl.make_dataset(record_args, mode))
        assert len(from_files) == len(from_records) == 3
        for a, b in zip(from_files, from_records):
            assert set(a) == set(b)
            for key in a:
                np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    # Train mode on a one-line list: the same augmented sample from both sources.
    one = samples[:1]
    prefix_one = f"ram://tfr/{uuid.uuid4().hex}/one"
    bts_convert_data.convert(one, prefix_one, num_shards=1, num_workers=1)
    train_files = next(iter(dl.make_dataset(make_config(batch_size=1), "train", samples=one)))
    train_records = next(iter(dl.make_dataset(make_config(batch_size=1, tfrecord_path=prefix_one), "train")))
    for key in train_files:
        np.testing.assert_array_equal(train_files[key].numpy(), train_records[key].numpy())


def test_files_on_ram_filesystem_equal_local_files(nyu_data):
    samples = dl.read_filenames_file(nyu_data["test_filenames"], nyu_data["data_path_eval"],
                                     nyu_data["gt_path_eval"])[:2]
    root = f"ram://files/{uuid.uuid4().hex}/"
    moved = []
    for s in samples:
        new = {}
        for key in ("rgb_path", "depth_path"):
            target = root + os.path.relpath(getattr(s, key), nyu_data["data_path_eval"])
            tf.io.gfile.makedirs(os.path.dirname(target))
            tf.io.gfile.copy(getattr(s, key), target, overwrite=True)
            new[key] = target
        moved.append(dl.Sample(new["rgb_path"], new["depth_path"], s.focal, s.line_number, s.line))
    local = list(dl.make_dataset(make_config(), "eval", samples=samples))
    remote = list(dl.make_dataset(make_config(), "eval", samples=moved))
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["depth"], b["depth"])


def test_tfrecord_path_without_shards_is_a_clear_error():
    with pytest.raises(DataError, match="no TFRecord shards found"):
        dl.make_dataset(make_config(tfrecord_path="ram://none/prefix"), "eval")


# ------------------------------------------------------------------------------------------------
# bad files inside a running pipeline
# ------------------------------------------------------------------------------------------------
def _bad_case(tmp_path, kind):
    rgb = np.full((40, 60, 3), 100, np.uint8)
    depth = np.full((40, 60), 2000, np.uint16)
    files = {"rgb.jpg": image_bytes(rgb, "JPEG"), "depth.png": png16_bytes(depth)}
    if kind == "8-bit depth":
        files["depth.png"] = image_bytes(rgb[..., 0])
    elif kind == "garbage jpeg":
        files["rgb.jpg"] = b"this is not an image"
    elif kind == "truncated jpeg":
        files["rgb.jpg"] = files["rgb.jpg"][: len(files["rgb.jpg"]) // 2]
    elif kind == "size mismatch":
        files["depth.png"] = png16_bytes(depth[:30])
    elif kind == "missing file":
        del files["rgb.jpg"]
    for name, data in files.items():
        write(tmp_path / name, data)
    (tmp_path / "bad_list.txt").write_text("rgb.jpg depth.png 518.8579\nrgb.jpg depth.png 518.8579\n")
    return str(tmp_path / "bad_list.txt")


@pytest.mark.parametrize("kind, expected", [
    ("8-bit depth", "16-bit"),
    ("garbage jpeg", "not a JPEG or PNG"),
    ("truncated jpeg", "unreadable or corrupt image"),
    ("size mismatch", "different sizes"),
    ("missing file", "file not found"),
])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bad_file_in_pipeline_raises_one_line_naming_list_and_line(tmp_path, kind, expected, mode):
    listing = _bad_case(tmp_path, kind)
    args = make_config(filenames_file=listing, data_path=str(tmp_path), gt_path=str(tmp_path),
                     input_height=32, input_width=32, batch_size=1, do_random_rotate=False)
    with pytest.raises(DataError) as err:
        with dl.data_errors():
            for _ in dl.make_dataset(args, mode):
                pass
    message = str(err.value)
    assert expected in message and re.search(r"bad_list\.txt line [12]\b", message), message
    assert "\n" not in message and "Traceback" not in message


def test_training_list_with_missing_ground_truth_is_rejected(tmp_path):
    (tmp_path / "list.txt").write_text("a.png None 721.5\n")
    with pytest.raises(DataError, match="list.txt line 1: training needs ground truth"):
        dl.make_dataset(make_config(filenames_file=str(tmp_path / "list.txt")), "train")


def test_xla_compiled_augmentation_equals_the_op_by_op_kernels():
    image, depth = coordinate_sample(90, 130)
    draws = tf.constant([0.8, 0.3, 0.6, 0.7, 0.9, 0.2, 0.7, 0.1, 0.5, 0.9], tf.float32)
    cfgs = [make_config("nyu", jit=jit) for jit in (True, False)]
    (img_j, dep_j), (img_k, dep_k) = (dl.train_sample(c, image, depth, draws, "x") for c in cfgs)
    np.testing.assert_allclose(img_j, img_k, atol=2e-4)
    assert (dep_j.numpy() == dep_k.numpy()).mean() > 0.999

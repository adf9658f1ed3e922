# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Synthetic NYU- and KITTI-layout datasets: textured planar scenes with exact depth.

The project's embedded default data (no download). Each frame is ray-traced against axis-aligned
planes and boxes in a world frame seen by a slightly rotated pinhole camera, so depth is exact and
piecewise planar, which is what BTS's local planar guidance assumes.

* ``nyu``: indoor rooms (floor, ceiling, walls, 1-3 boxes on the floor) in the NYU layout, with
  the monocular cues a network picks up in minutes (``./demo.sh`` trains on them from scratch):
  perspective of floor and ceiling from a camera at a person's height, one texture period in
  metres per kind of surface (so its image scale shrinks with depth), and a lamp at the camera
  whose light falls off with distance (far walls are darker), as in a flash photo:
  ``sync/<scene>/rgb_XXXXX.jpg`` + ``sync_depth_XXXXX.png`` (uint16 millimetres) for training,
  ``official_splits/test/<scene_type>/...`` for testing, and the two filenames files
  (``/scene/rgb_00000.jpg /scene/sync_depth_00000.png 518.8579``, the train list with the
  upstream leading ``/``).
* ``kitti``: road scenes (road, building facades, cars, sky) in the KITTI layout: raw frames
  ``<date>/<drive>/image_02/data/0000000000.png`` and sparse ground truth
  ``data_depth_annotated/<drive>/proj_depth/groundtruth/image_02/0000000000.png`` (uint16 x256,
  0 = no LiDAR return); some test frames have no ground truth (``None`` in the list). Training
  frames also have the right camera (``image_03``, ``KITTI_BASELINE_M`` to the right, and its
  ground truth under ``groundtruth/image_03``), listed as columns 4-5 for ``--use_right``.

Focal lengths are the datasets' (518.8579, KITTI per date) scaled by width / 640 or / 1242, so at
the real sizes (480x640, 375x1242) the lists carry exactly the upstream values.

CLI: ``python -m tools.synthetic_data --dataset nyu --output DIR --num_train N --num_test M
--height H --width W --seed S``. Library: ``generate_dataset(...)`` and ``render_frame(...)``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from utils.datasets import get_dataset_facts
from utils.image_io import ground_truth_to_uint16, save_image
from utils.io import atomic_write_text

log = logging.getLogger(__name__)

NYU_SCENE_TYPES = ("bathroom", "bedroom", "bookstore", "classroom", "dining_room", "kitchen",
                   "living_room", "office")
NYU_FRAMES_PER_SCENE = 4
NYU_REFERENCE_WIDTH = 640
# KITTI recording dates and their left-colour-camera focal lengths (design §5.1).
KITTI_FOCALS = {
    "2011_09_26": 721.5377,
    "2011_09_28": 707.0493,
    "2011_09_29": 718.3351,
    "2011_09_30": 707.0912,
    "2011_10_03": 718.856,
}
KITTI_REFERENCE_WIDTH = 1242
KITTI_FRAMES_PER_DRIVE = 5
KITTI_LIDAR_DENSITY = 0.25  # fraction of pixels below the horizon band with a ground-truth value
KITTI_NO_GT_EVERY = 4  # every 4th test frame has no ground truth ('None')
KITTI_BASELINE_M = 0.54  # image_03 (right colour camera) sits this far right of image_02
SKY = -1  # surface id of rays that hit nothing


@dataclasses.dataclass(frozen=True)
class Box:
    """Axis-aligned box [lo, hi] in world coordinates (x right, y down, z forward), metres."""

    lo: Tuple[float, float, float]
    hi: Tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Scene:
    """A camera and the surfaces it sees.

    ``room`` is a box the camera sits inside (its faces are walls, floor, ceiling) or None;
    ``room_open`` lists faces of ``room`` that are open to the sky (KITTI: ceiling, far end).
    ``boxes`` are solid boxes (furniture, buildings, cars). Surface ids: room face
    ``2*axis + (0 lo / 1 hi)`` (0..5), box ``k`` face ``6 + 6*k + 2*axis + side``.
    """

    focal: float
    cx: float
    cy: float
    rotation: np.ndarray  # (3, 3) camera -> world
    room: Optional[Box]
    room_open: Tuple[int, ...]
    boxes: Tuple[Box, ...]
    colours: np.ndarray  # (num_surfaces, 3) base colours in [0, 1]
    texture_scales: np.ndarray  # (num_surfaces,) checker period in metres
    headlight: bool = False  # lit by a lamp at the camera (falls off with distance) instead of the sun


def surface_plane(scene: Scene, surface: int) -> Tuple[np.ndarray, float]:
    """(normal n, offset c) of a surface's plane n . X = c in world coordinates."""
    if surface < 6:
        box, face = scene.room, surface
    else:
        box, face = scene.boxes[(surface - 6) // 6], (surface - 6) % 6
    axis, side = divmod(face, 2)
    normal = np.zeros(3)
    normal[axis] = 1.0
    return normal, float((box.hi if side else box.lo)[axis])


def camera_rotation(pitch: float, yaw: float, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation: roll about z, then pitch about x, then yaw about y (radians)."""
    cp, sp, cy, sy, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def ray_directions(scene: Scene, height: int, width: int) -> np.ndarray:
    """(H, W, 3) world ray directions whose camera z component is 1 (so t = depth)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    cam = np.stack([(u - scene.cx) / scene.focal, (v - scene.cy) / scene.focal, np.ones_like(u)], -1)
    return cam @ scene.rotation.T


def _inside_box_hits(box: Box, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Exit distance and face id of rays from the origin (inside ``box``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.asarray(box.lo) / dirs
        hi = np.asarray(box.hi) / dirs
    exit_t = np.where(dirs > 0, hi, np.where(dirs < 0, lo, np.inf))  # (H, W, 3)
    axis = np.argmin(exit_t, axis=-1)
    t = np.take_along_axis(exit_t, axis[..., None], -1)[..., 0]
    side = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0
    return t, 2 * axis + side


def _solid_box_hits(box: Box, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Entry distance (inf on a miss) and face id of rays from the origin hitting ``box`` (slabs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.asarray(box.lo) / dirs
        t2 = np.asarray(box.hi) / dirs
    near = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    far = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
    axis = np.argmax(near, axis=-1)
    t_near = np.take_along_axis(near, axis[..., None], -1)[..., 0]
    t_far = np.min(far, axis=-1)
    hit = (t_near <= t_far) & (t_near > 0)
    # Entering through the lo face when moving in +axis, through hi otherwise.
    side = np.take_along_axis(dirs, axis[..., None], -1)[..., 0] < 0
    return np.where(hit, t_near, np.inf), 2 * axis + side


def trace(scene: Scene, height: int, width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-trace ``scene``: depth (H, W) metres (inf = sky), surface ids (H, W), points (H, W, 3)."""
    dirs = ray_directions(scene, height, width)
    depth = np.full((height, width), np.inf)
    surface = np.full((height, width), SKY, np.int64)
    if scene.room is not None:
        t, face = _inside_box_hits(scene.room, dirs)
        opened = np.isin(face, scene.room_open)
        depth = np.where(opened, np.inf, t)
        surface = np.where(opened, SKY, face)
    for k, box in enumerate(scene.boxes):
        t, face = _solid_box_hits(box, dirs)
        closer = t < depth
        depth = np.where(closer, t, depth)
        surface = np.where(closer, 6 + 6 * k + face, surface)
    points = dirs * np.where(np.isfinite(depth), depth, 0.0)[..., None]
    return depth, surface, points


def shade(scene: Scene, surface: np.ndarray, points: np.ndarray, rng: np.random.Generator,
          sky_colour: Tuple[float, float, float]) -> np.ndarray:
    """(H, W, 3) uint8 colours: checker texture in plane coordinates, Lambert light, noise."""
    height, width = surface.shape
    ids = np.maximum(surface, 0)
    axis = np.where(surface < 6, ids // 2, ((ids - 6) % 6) // 2)
    coords = [points[..., a] for a in range(3)]
    u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
    u = np.take_along_axis(np.stack(coords, -1), u_axis[..., None], -1)[..., 0]
    v = np.take_along_axis(np.stack(coords, -1), v_axis[..., None], -1)[..., 0]
    scale = scene.texture_scales[ids]
    checker = (np.floor(u / scale) + np.floor(v / scale)) % 2
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * u / (0.37 * scale))
    base = scene.colours[ids]
    if scene.headlight:
        lambert = headlight_shading(points, axis)
    else:
        light = np.array([0.3, -0.8, -0.5])
        light /= np.linalg.norm(light)
        normal_sign = np.where(surface < 6, -1.0, 1.0) * np.where(ids % 2 == 1, 1.0, -1.0)
        lambert = np.abs(light[axis]) * (normal_sign * np.sign(light[axis]) > 0) * 0.5 + 0.5
    pattern = 0.7 + 0.2 * checker + 0.1 * stripes
    rgb = base * (pattern * lambert)[..., None]
    rgb += rng.normal(0.0, 0.02, size=rgb.shape)
    row = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = np.asarray(sky_colour) * (1.0 - 0.3 * row)
    rgb = np.where((surface == SKY)[..., None], np.broadcast_to(sky, rgb.shape), rgb)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


HEADLIGHT_AMBIENT = 0.2  # share of light that reaches every surface
HEADLIGHT_RANGE_M = 3.0  # distance at which the lamp's light has fallen to half
HEADLIGHT_GAIN = 1.6  # lamp strength: surfaces within ~1 m are near white, far walls dim


def headlight_shading(points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(H, W) light of a lamp at the camera: ambient + cos(incidence) / (1 + (r / range)^2).

    The inverse-square-like fall-off is the indoor flash-photo cue: far surfaces are darker.
    """
    distance = np.maximum(np.linalg.norm(points, axis=-1), 1e-6)
    cosine = np.abs(np.take_along_axis(points, axis[..., None], -1)[..., 0]) / distance
    falloff = 1.0 / (1.0 + (distance / HEADLIGHT_RANGE_M) ** 2)
    return HEADLIGHT_AMBIENT + (1.0 - HEADLIGHT_AMBIENT) * cosine * falloff * HEADLIGHT_GAIN


def _palette(rng: np.random.Generator, count: int) -> Tuple[np.ndarray, np.ndarray]:
    colours = rng.uniform(0.25, 0.95, size=(count, 3))
    scales = rng.uniform(0.2, 1.0, size=count)
    return colours, scales


# Room faces (surface ids 0-5): left wall, right wall, ceiling, floor, wall behind, back wall.
# Each kind of surface keeps one look (colour family, texture period in metres), so texture
# scale in the image is a depth cue the network can learn in minutes.
NYU_FACE_COLOURS = np.array([[0.80, 0.76, 0.66], [0.80, 0.76, 0.66], [0.92, 0.92, 0.90],
                             [0.62, 0.45, 0.30], [0.80, 0.76, 0.66], [0.70, 0.74, 0.80]])
NYU_FACE_TEXTURE_M = np.array([0.9, 0.9, 0.6, 0.5, 0.9, 0.9])
NYU_BOX_TEXTURE_M = 0.3


def nyu_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """A room 3-5 m wide, 2.6-3 m high, 5-8.5 m deep, lit by a lamp at the camera, with 1-3
    boxes resting on the floor; a camera 1.2-1.5 m high, looking roughly along the room."""
    cam_height = rng.uniform(1.2, 1.5)
    room_h = rng.uniform(2.6, 3.0)
    room = Box((-rng.uniform(1.5, 2.5), cam_height - room_h, -0.5),
               (rng.uniform(1.5, 2.5), cam_height, rng.uniform(5.0, 8.5)))
    boxes = []
    for _ in range(rng.integers(1, 4)):
        size = rng.uniform([0.4, 0.4, 0.4], [1.0, 1.1, 0.8])
        x0 = rng.uniform(room.lo[0] + 0.1, room.hi[0] - size[0] - 0.1)
        z0 = rng.uniform(1.5, room.hi[2] - size[2] - 0.5)
        boxes.append(Box((x0, cam_height - size[1], z0), (x0 + size[0], cam_height, z0 + size[2])))
    count = 6 + 6 * len(boxes)
    colours = np.empty((count, 3))
    colours[:6] = np.clip(NYU_FACE_COLOURS * rng.uniform(0.85, 1.1, size=(6, 1)), 0.0, 1.0)
    for k in range(len(boxes)):  # one saturated colour per box, the same on all its faces
        colours[6 + 6 * k: 12 + 6 * k] = rng.uniform(0.2, 0.95, size=3)
    scales = np.concatenate([NYU_FACE_TEXTURE_M, np.full(count - 6, NYU_BOX_TEXTURE_M)])
    scales *= rng.uniform(0.9, 1.1, size=count)
    focal = get_dataset_facts("nyu").default_focal * width / NYU_REFERENCE_WIDTH
    rotation = camera_rotation(rng.uniform(-0.08, 0.04), rng.uniform(-0.2, 0.2), rng.uniform(-0.02, 0.02))
    return Scene(focal, width / 2.0, height / 2.0, rotation, room, (), tuple(boxes), colours, scales,
                 headlight=True)


def kitti_scene(rng: np.random.Generator, height: int, width: int, focal_1242: float) -> Scene:
    """A street: road 1.65 m below the camera, facades 4-9 m to each side, 1-4 cars, open sky."""
    cam_height = 1.65
    room = Box((-rng.uniform(4.0, 9.0), -100.0, -1.0), (rng.uniform(4.0, 9.0), cam_height, 500.0))
    boxes = []
    for _ in range(rng.integers(1, 5)):  # cars: 1.7 x 1.5 x 4.2 m
        x0 = rng.uniform(room.lo[0] + 0.5, room.hi[0] - 2.2)
        z0 = rng.uniform(5.0, 45.0)
        boxes.append(Box((x0, cam_height - 1.5, z0), (x0 + 1.7, cam_height, z0 + 4.2)))
    colours, scales = _palette(rng, 6 + 6 * len(boxes))
    scales[:6] *= 4.0  # facades and road: larger texture
    focal = focal_1242 * width / KITTI_REFERENCE_WIDTH
    rotation = camera_rotation(rng.uniform(-0.03, 0.03), rng.uniform(-0.1, 0.1))
    # Open: ceiling (y lo, face 2) and far end (z hi, face 5) show sky.
    return Scene(focal, width / 2.0, height * 0.46, rotation, room, (2, 5), tuple(boxes), colours,
                 scales)


def shifted_scene(scene: Scene, offset: np.ndarray) -> Scene:
    """``scene`` with every surface moved by ``offset`` (world metres); the camera stays at 0."""
    def move(box: Box) -> Box:
        return Box(tuple(np.add(box.lo, offset)), tuple(np.add(box.hi, offset)))

    room = None if scene.room is None else move(scene.room)
    return dataclasses.replace(scene, room=room, boxes=tuple(move(b) for b in scene.boxes))


def render_frame(dataset: str, height: int, width: int, seed: Tuple[int, ...],
                 focal_1242: float = KITTI_FOCALS["2011_09_26"], baseline: float = 0.0) -> Dict[str, object]:
    """Render one frame. Returns rgb (H,W,3) uint8, depth (H,W) float64 metres (0 = no value),
    surface (H,W) ids, points (H,W,3) world points, and the ``scene``. KITTI depth is dense here
    (beyond 80 m and sky set to 0); the writer makes it sparse. ``baseline``: the same scene seen
    by a camera moved that many metres along its own x axis (KITTI's right camera: 0.54), its
    textures fixed to the surfaces."""
    rng = np.random.default_rng(list(seed))
    if dataset == "nyu":
        scene = nyu_scene(rng, height, width)
        sky = (0.0, 0.0, 0.0)
    elif dataset == "kitti":
        scene = kitti_scene(rng, height, width, focal_1242)
        sky = (0.55, 0.7, 0.95)
    else:
        raise ValueError(f"dataset {dataset!r} is unknown; expected 'nyu' or 'kitti'")
    if baseline:
        offset = scene.rotation[:, 0] * baseline  # the camera's move in world coordinates
        depth, surface, points = trace(shifted_scene(scene, -offset), height, width)
        points = points + offset
    else:
        depth, surface, points = trace(scene, height, width)
    rgb = shade(scene, surface, points, rng, sky)
    max_depth = get_dataset_facts(dataset).max_depth
    depth = np.where(np.isfinite(depth) & (depth <= max_depth), depth, 0.0)
    return {"rgb": rgb, "depth": depth, "surface": surface, "points": points, "scene": scene}


def encode_depth(depth_m: np.ndarray, dataset: str) -> np.ndarray:
    """Metres -> uint16 PNG values (NYU x1000, KITTI x256), rounded; 0 stays 0."""
    return ground_truth_to_uint16(depth_m, get_dataset_facts(dataset).depth_scale)


def _write_list(path: str, lines: List[str]) -> None:
    atomic_write_text(path, "\n".join(lines) + "\n")


def _generate_nyu(output: str, num_train: int, num_test: int, height: int, width: int,
                  seed: int) -> Dict[str, str]:
    focal = get_dataset_facts("nyu").default_focal * width / NYU_REFERENCE_WIDTH
    train_root = os.path.join(output, "sync")
    test_root = os.path.join(output, "official_splits", "test")
    train_lines, test_lines = [], []
    for i in tqdm(range(num_train), desc="nyu train", leave=False):
        scene_type = NYU_SCENE_TYPES[(i // NYU_FRAMES_PER_SCENE) % len(NYU_SCENE_TYPES)]
        scene = f"{scene_type}_{i // NYU_FRAMES_PER_SCENE:04d}"
        frame = render_frame("nyu", height, width, (seed, 0, i))
        name = f"{i % NYU_FRAMES_PER_SCENE:05d}"
        save_image(os.path.join(train_root, scene, f"rgb_{name}.jpg"), frame["rgb"], quality=95)
        save_image(os.path.join(train_root, scene, f"sync_depth_{name}.png"), encode_depth(frame["depth"], "nyu"))
        train_lines.append(f"/{scene}/rgb_{name}.jpg /{scene}/sync_depth_{name}.png {focal:.4f}")
    for i in tqdm(range(num_test), desc="nyu test", leave=False):
        scene_type = NYU_SCENE_TYPES[i % len(NYU_SCENE_TYPES)]
        frame = render_frame("nyu", height, width, (seed, 1, i))
        name = f"{i:05d}"
        save_image(os.path.join(test_root, scene_type, f"rgb_{name}.jpg"), frame["rgb"], quality=95)
        save_image(os.path.join(test_root, scene_type, f"sync_depth_{name}.png"),
                   encode_depth(frame["depth"], "nyu"))
        test_lines.append(f"{scene_type}/rgb_{name}.jpg {scene_type}/sync_depth_{name}.png {focal:.4f}")
    paths = {
        "train_filenames": os.path.join(output, "nyudepthv2_train_files_with_gt.txt"),
        "test_filenames": os.path.join(output, "nyudepthv2_test_files_with_gt.txt"),
        "data_path": train_root + "/", "gt_path": train_root + "/",
        "data_path_eval": test_root + "/", "gt_path_eval": test_root + "/",
    }
    _write_list(paths["train_filenames"], train_lines)
    if test_lines:
        _write_list(paths["test_filenames"], test_lines)
    return paths


def sparse_lidar(depth_m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep a random ``KITTI_LIDAR_DENSITY`` of valid pixels below the top 30 % of rows."""
    keep = rng.random(depth_m.shape) < KITTI_LIDAR_DENSITY
    keep[: int(0.3 * depth_m.shape[0])] = False
    return np.where(keep, depth_m, 0.0)


def _generate_kitti(output: str, num_train: int, num_test: int, height: int, width: int,
                    seed: int) -> Dict[str, str]:
    dates = list(KITTI_FOCALS)
    gt_root = os.path.join(output, "data_depth_annotated")
    lines = {"train": [], "test": []}
    for split, count, offset in (("train", num_train, 0), ("test", num_test, 500)):
        for i in tqdm(range(count), desc=f"kitti {split}", leave=False):
            drive_number = offset + i // KITTI_FRAMES_PER_DRIVE + 1
            date = dates[(i // KITTI_FRAMES_PER_DRIVE) % len(dates)]
            drive = f"{date}_drive_{drive_number:04d}_sync"
            name = f"{i % KITTI_FRAMES_PER_DRIVE:010d}.png"
            frame = render_frame("kitti", height, width, (seed, 2 if split == "test" else 3, i),
                                 KITTI_FOCALS[date])
            rgb_rel = f"{date}/{drive}/image_02/data/{name}"
            save_image(os.path.join(output, rgb_rel), frame["rgb"])
            focal = KITTI_FOCALS[date] * width / KITTI_REFERENCE_WIDTH
            if split == "test" and i % KITTI_NO_GT_EVERY == KITTI_NO_GT_EVERY - 1:
                lines[split].append(f"{rgb_rel} None {focal:.4f}")
                continue
            gt_rel = f"{drive}/proj_depth/groundtruth/image_02/{name}"
            rng = np.random.default_rng([seed, 4, i, int(split == "test")])
            save_image(os.path.join(gt_root, gt_rel), encode_depth(sparse_lidar(frame["depth"], rng), "kitti"))
            line = f"{rgb_rel} {gt_rel} {focal:.4f}"
            if split == "train":  # + the right camera (image_03) and its ground truth, for --use_right
                right = render_frame("kitti", height, width, (seed, 3, i), KITTI_FOCALS[date],
                                     baseline=KITTI_BASELINE_M)
                right_rgb_rel = rgb_rel.replace("/image_02/", "/image_03/")
                right_gt_rel = gt_rel.replace("/image_02/", "/image_03/")
                save_image(os.path.join(output, right_rgb_rel), right["rgb"])
                right_rng = np.random.default_rng([seed, 5, i])
                save_image(os.path.join(gt_root, right_gt_rel),
                           encode_depth(sparse_lidar(right["depth"], right_rng), "kitti"))
                line += f" {right_rgb_rel} {right_gt_rel}"
            lines[split].append(line)
    paths = {
        "train_filenames": os.path.join(output, "eigen_train_files_with_gt.txt"),
        "test_filenames": os.path.join(output, "eigen_test_files_with_gt.txt"),
        "data_path": output + "/", "gt_path": gt_root + "/",
        "data_path_eval": output + "/", "gt_path_eval": gt_root + "/",
    }
    _write_list(paths["train_filenames"], lines["train"])
    if lines["test"]:
        _write_list(paths["test_filenames"], lines["test"])
    return paths


def generate_dataset(dataset: str, output_dir: str, num_train: int, num_test: int, height: int,
                     width: int, seed: int = 0) -> Dict[str, str]:
    """Write a synthetic dataset; returns the filenames files and roots.

    Keys: train_filenames, test_filenames, data_path, gt_path (train roots), data_path_eval,
    gt_path_eval (test roots), root.
    """
    if num_train < 1 or num_test < 0 or height < 8 or width < 8:
        raise ValueError("need num_train >= 1, num_test >= 0 and an image of at least 8x8 pixels")
    os.makedirs(output_dir, exist_ok=True)
    if dataset == "nyu":
        paths = _generate_nyu(output_dir, num_train, num_test, height, width, seed)
    elif dataset == "kitti":
        paths = _generate_kitti(output_dir, num_train, num_test, height, width, seed)
    else:
        raise ValueError(f"--dataset {dataset!r} is unknown; expected 'nyu' or 'kitti'")
    paths["root"] = output_dir
    log.info("wrote synthetic %s data (%d train, %d test, %dx%d) to %s", dataset, num_train, num_test,
             height, width, output_dir)
    return paths


def _validate(parser, args) -> None:
    if not args.output:
        parser.error("--output is required (folder to write the dataset to)")


def main(argv: Optional[List[str]] = None) -> Dict[str, str]:
    from utils.arguments import parse_args  # the one shared parser (flags: 'synthetic' group)

    args = parse_args(groups=("model", "data", "synthetic"), argv=argv, prog="python -m tools.synthetic_data",
                      description="Write a synthetic NYU- or KITTI-layout dataset.", validate=_validate)
    from utils.quiet import quiet_tensorflow

    quiet_tensorflow(args.verbose)  # image writing imports TF: keep its start-up lines off the bars
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    default_size = (480, 640) if args.dataset == "nyu" else (375, 1242)
    paths = generate_dataset(args.dataset, args.output, args.num_train, args.num_test,
                             args.height or default_size[0], args.width or default_size[1], args.seed or 0)
    for key, value in sorted(paths.items()):
        print(f"{key}: {value}")
    return paths


if __name__ == "__main__":
    main()

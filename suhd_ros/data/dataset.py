"""Training samples: scenes from the generator or an exported COCO folder, YOLOv5 augmentation.

Every random choice of a sample comes from `numpy.random.Generator((seed, epoch, index))`, so a
batch is the same whatever order samples are drawn in and after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from suhd_ros.data.scenes import SPLITS, SceneStyle, generate_scene, load_coco
from suhd_ros.yolo.letterbox import letterbox, letterbox_boxes

PAD_VALUE = 114  # YOLOv5's grey for letterbox borders and affine fill


@dataclass(frozen=True)
class Augmentation:
    """YOLOv5's default augmentation strengths (hyp.scratch-low), flipud on: shapes have no up."""

    hsv_h: float = 0.015  # hue gain (fraction of the hue circle)
    hsv_s: float = 0.7  # saturation gain
    hsv_v: float = 0.4  # value gain
    fliplr: float = 0.5  # probability
    flipud: float = 0.5  # probability
    scale: float = 0.5  # image scale +/- gain
    translate: float = 0.1  # image translation +/- fraction


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # [S, S, 3] uint8 RGB
    boxes_xyxy: np.ndarray  # [K, 4] float32, pixels of the network input
    class_ids: np.ndarray  # [K] int64


class SceneSource(Protocol):
    """Anything indexable that yields an RGB image with its boxes and classes."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class GeneratedScenes:
    """Scenes of one split drawn on the fly (no files); `count` limits the split's length."""

    split: str
    width: int
    height: int
    count: int | None = None
    style: SceneStyle | None = None

    def __len__(self) -> int:
        return self.count if self.count is not None else len(SPLITS[self.split])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        scene = generate_scene(SPLITS[self.split][index], self.width, self.height, self.style)
        return scene.image, scene.boxes_xyxy, scene.class_ids


class CocoScenes:
    """The images and boxes of one COCO instances JSON (for example from `export_coco`)."""

    def __init__(self, json_path: str | Path) -> None:
        self.items = load_coco(json_path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        item = self.items[index]
        bgr = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {item.path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), item.boxes_xyxy, item.class_ids


def augment_hsv(rng: np.random.Generator, image: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Random hue / saturation / value gains applied through lookup tables, as YOLOv5 does."""
    gains = rng.uniform(-1, 1, 3) * (aug.hsv_h, aug.hsv_s, aug.hsv_v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)  # OpenCV's 8-bit hue runs 0..179
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _keep_boxes(before: np.ndarray, after: np.ndarray, min_side: float = 2.0) -> np.ndarray:
    """YOLOv5's box candidates: big enough, not squashed, most of the area left after clipping."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    return (w1 > min_side) & (h1 > min_side) & (w1 * h1 / (w0 * h0 + 1e-16) > 0.1) & (aspect < 20)


def random_affine(
    rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray, aug: Augmentation
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random scale about the centre and translation; returns image, boxes, kept-box mask.

    Without rotation or shear an axis-aligned box maps to an axis-aligned box exactly, so the
    boxes stay tight, except where the image border cuts a box: clipping the box is then looser
    than the cut shape's visible part (YOLOv5 has the same limit when it has no segments).
    """
    height, width = image.shape[:2]
    s = rng.uniform(1 - aug.scale, 1 + aug.scale)
    tx, ty = rng.uniform(-aug.translate, aug.translate, 2) * (width, height)
    matrix = np.array(
        [[s, 0, (1 - s) * width / 2 + tx], [0, s, (1 - s) * height / 2 + ty]], np.float32
    )
    warped = cv2.warpAffine(
        image, matrix, (width, height), borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
    )
    moved = boxes * s + np.array([matrix[0, 2], matrix[1, 2]] * 2, np.float32)
    moved = np.clip(moved, 0, [width, height, width, height]).astype(np.float32)
    keep = _keep_boxes(boxes * s, moved)
    return warped, moved, keep


def _flip(image: np.ndarray, boxes: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right (axis=1) or up-down (axis=0), boxes included."""
    size = image.shape[axis]
    flipped = boxes.copy()
    lo, hi = (0, 2) if axis == 1 else (1, 3)
    flipped[:, lo], flipped[:, hi] = size - boxes[:, hi], size - boxes[:, lo]
    return np.ascontiguousarray(np.flip(image, axis=axis)), flipped


def load_sample(
    source: SceneSource,
    index: int,
    img_size: int,
    rng: np.random.Generator | None = None,
    aug: Augmentation | None = None,
) -> Sample:
    """Letterbox one scene to the square network input; augment when `rng` and `aug` are given."""
    image, boxes, class_ids = source[index]
    image, info = letterbox(image, img_size, color=PAD_VALUE)
    boxes = letterbox_boxes(boxes, info).reshape(-1, 4)
    if rng is not None and aug is not None:
        image, boxes, keep = random_affine(rng, image, boxes, aug)
        class_ids = class_ids[keep]
        boxes = boxes[keep]
        image = augment_hsv(rng, image, aug)
        if rng.random() < aug.fliplr:
            image, boxes = _flip(image, boxes, axis=1)
        if rng.random() < aug.flipud:
            image, boxes = _flip(image, boxes, axis=0)
    return Sample(image, boxes.astype(np.float32), np.asarray(class_ids, np.int64))


def collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, S, S] float in 0..1 and targets [M, 6] (image, class, cx, cy, w, h) in 0..1."""
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    rows = []
    for i, s in enumerate(samples):
        height, width = s.image.shape[:2]
        xy = (s.boxes_xyxy[:, :2] + s.boxes_xyxy[:, 2:]) / 2
        wh = s.boxes_xyxy[:, 2:] - s.boxes_xyxy[:, :2]
        norm = np.concatenate((xy, wh), axis=1) / np.array([width, height] * 2, np.float32)
        index = np.full((len(norm), 1), i, np.float32)
        rows.append(np.concatenate((index, s.class_ids[:, None].astype(np.float32), norm), axis=1))
    targets = torch.from_numpy(np.concatenate(rows).reshape(-1, 6)) if rows else torch.zeros(0, 6)
    return images.float().div_(255.0), targets

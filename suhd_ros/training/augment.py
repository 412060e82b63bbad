"""YOLOv5's training augmentation: mosaic, HSV gains, random scale and translation, flips.

Every function takes the sample's own `numpy.random.Generator`, so a sample's augmentation
depends only on its seed, never on the order samples are drawn in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from suhd_ros.yolo.letterbox import PAD_VALUE


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
    mosaic: float = 0.0  # probability; the benchmark's recipe has none, TrainConfig's --data 1.0


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
    rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray, aug: Augmentation,
    out_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random scale about the centre and translation; returns image, boxes, kept-box mask.

    The output is `out_size` square (default: the input's size), its centre the input's centre
    moved by the translation: a 2S mosaic canvas becomes an S sample as in YOLOv5.
    Without rotation or shear an axis-aligned box maps to an axis-aligned box exactly, so the
    boxes stay tight, except where the image border cuts a box: clipping the box is then looser
    than the cut shape's visible part (YOLOv5 has the same limit when it has no segments).
    """
    height, width = image.shape[:2]
    out_w, out_h = (width, height) if out_size is None else (out_size, out_size)
    s = rng.uniform(1 - aug.scale, 1 + aug.scale)
    tx, ty = rng.uniform(-aug.translate, aug.translate, 2) * (out_w, out_h)
    # (1 - s) * width / 2 + 0.0 when the size is kept: the same numbers as before mosaic existed
    matrix = np.array([[s, 0, (1 - s) * width / 2 + (out_w - width) / 2 + tx],
                       [0, s, (1 - s) * height / 2 + (out_h - height) / 2 + ty]], np.float32)
    warped = cv2.warpAffine(
        image, matrix, (out_w, out_h), borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
    )
    moved = boxes * s + np.array([matrix[0, 2], matrix[1, 2]] * 2, np.float32)
    moved = np.clip(moved, 0, [out_w, out_h, out_w, out_h]).astype(np.float32)
    keep = _keep_boxes(boxes * s, moved)
    return warped, moved, keep


Tile = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, boxes [K, 4] xyxy px, class ids [K]


def mosaic(rng: np.random.Generator, tiles: list[Tile], size: int) -> Tile:
    """YOLOv5's mosaic: four images (longest side `size`) meeting at a random point of a
    2size x 2size canvas, each cut only by the canvas border. Boxes are moved with their image
    and clipped to the canvas; boxes left as slivers (<= 2 px, or under a tenth of their area)
    are dropped."""
    side = 2 * size
    canvas = np.full((side, side, 3), PAD_VALUE, np.uint8)
    xc, yc = (int(v) for v in rng.uniform(size / 2, 3 * size / 2, 2))
    all_boxes, all_classes = [], []
    for k, (image, boxes, class_ids) in enumerate(tiles):  # top-left, top-right, bottom-l, -r
        h, w = image.shape[:2]
        x0 = xc - w if k % 2 == 0 else xc
        y0 = yc - h if k < 2 else yc
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, side), min(y0 + h, side)
        canvas[cy0:cy1, cx0:cx1] = image[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        shifted = boxes.reshape(-1, 4) + np.array([x0, y0, x0, y0], np.float32)
        clipped = np.clip(shifted, 0, side).astype(np.float32)
        keep = _keep_boxes(shifted, clipped)
        all_boxes.append(clipped[keep])
        all_classes.append(np.asarray(class_ids)[keep])
    return canvas, np.concatenate(all_boxes), np.concatenate(all_classes)


def flip(image: np.ndarray, boxes: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right (axis=1) or up-down (axis=0), boxes included."""
    size = image.shape[axis]
    flipped = boxes.copy()
    lo, hi = (0, 2) if axis == 1 else (1, 3)
    flipped[:, lo], flipped[:, hi] = size - boxes[:, hi], size - boxes[:, lo]
    return np.ascontiguousarray(np.flip(image, axis=axis)), flipped

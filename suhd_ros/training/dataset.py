"""Training samples: generated scenes or an exported COCO folder, letterboxed and augmented.

Every random choice of a sample comes from `numpy.random.Generator((seed, epoch, index))`, so a
batch is the same whatever order samples are drawn in and after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from suhd_ros.synthetic.scenes import SPLITS, SceneStyle, generate_scene
from suhd_ros.training.augment import Augmentation, augment_hsv, flip, random_affine
from suhd_ros.yolo.letterbox import letterbox, letterbox_boxes
from suhd_ros.yolo.preprocess import network_input


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


def load_sample(
    source: SceneSource,
    index: int,
    img_size: int,
    rng: np.random.Generator | None = None,
    aug: Augmentation | None = None,
) -> Sample:
    """Letterbox one scene to the square network input; augment when `rng` and `aug` are given."""
    image, boxes, class_ids = source[index]
    image, info = letterbox(image, img_size)
    boxes = letterbox_boxes(boxes, info).reshape(-1, 4)
    if rng is not None and aug is not None:
        image, boxes, keep = random_affine(rng, image, boxes, aug)
        class_ids = class_ids[keep]
        boxes = boxes[keep]
        image = augment_hsv(rng, image, aug)
        if rng.random() < aug.fliplr:
            image, boxes = flip(image, boxes, axis=1)
        if rng.random() < aug.flipud:
            image, boxes = flip(image, boxes, axis=0)
    return Sample(image, boxes.astype(np.float32), np.asarray(class_ids, np.int64))


def collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, S, S] float in 0..1 and targets [M, 6] (image, class, cx, cy, w, h) in 0..1.

    The samples are letterboxed already, so `network_input` passes them through unchanged: the
    same tensor inference and calibration make from the same picture.
    """
    size = samples[0].image.shape[:2]
    images, _ = network_input([s.image for s in samples], size)
    rows = []
    for i, s in enumerate(samples):
        height, width = s.image.shape[:2]
        xy = (s.boxes_xyxy[:, :2] + s.boxes_xyxy[:, 2:]) / 2
        wh = s.boxes_xyxy[:, 2:] - s.boxes_xyxy[:, :2]
        norm = np.concatenate((xy, wh), axis=1) / np.array([width, height] * 2, np.float32)
        index = np.full((len(norm), 1), i, np.float32)
        rows.append(np.concatenate((index, s.class_ids[:, None].astype(np.float32), norm), axis=1))
    targets = torch.from_numpy(np.concatenate(rows).reshape(-1, 6)) if rows else torch.zeros(0, 6)
    return images, targets

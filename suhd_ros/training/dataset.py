"""Training samples: generated scenes or a dataset (`suhd_ros.datasets`), letterboxed, augmented.

Every random choice of a sample comes from `numpy.random.Generator((seed, epoch, index))`, so a
batch is the same whatever order samples are drawn in, in however many worker processes, and
after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from suhd_ros.datasets import DatasetError, ImageReadError
from suhd_ros.synthetic.scenes import CLASS_NAMES, SPLITS, SceneStyle, generate_scene
from suhd_ros.training.augment import (
    Augmentation,
    Tile,
    augment_hsv,
    flip,
    mosaic,
    random_affine,
)
from suhd_ros.yolo.letterbox import letterbox, letterbox_boxes
from suhd_ros.yolo.preprocess import network_input

LOG = logging.getLogger("suhd_ros.training")
Scene = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # image, boxes, classes, ignore


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # [S, S, 3] uint8 RGB
    boxes_xyxy: np.ndarray  # [K, 4] float32, pixels of the network input
    class_ids: np.ndarray  # [K] int64
    ignore: np.ndarray  # [K] bool: crowd / difficult (evaluation only; training drops them)


class SceneSource(Protocol):
    """Anything indexable that yields an RGB image with its boxes, classes and ignore flags."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Scene: ...


@dataclass(frozen=True)
class GeneratedScenes:
    """Scenes of one split drawn on the fly (no files); `count` limits the split's length."""

    split: str
    width: int
    height: int
    count: int | None = None
    style: SceneStyle | None = None
    names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return self.count if self.count is not None else len(SPLITS[self.split])

    def __getitem__(self, index: int) -> Scene:
        if not 0 <= index < len(self):
            raise IndexError(index)
        scene = generate_scene(SPLITS[self.split][index], self.width, self.height, self.style)
        return scene.image, scene.boxes_xyxy, scene.class_ids, np.zeros(len(scene.class_ids), bool)


_REPORTED: set[str] = set()  # damaged images already reported (in this process)


def read_scene(source: SceneSource, index: int) -> Scene:
    """`source[index]`, or the next readable one when its image was damaged after indexing
    (reported once per image in each process), so an epoch never stops on one bad file."""
    for step in range(len(source)):
        k = (index + step) % len(source)
        try:
            return source[k]
        except ImageReadError as e:
            if str(e) not in _REPORTED:
                _REPORTED.add(str(e))
                LOG.warning("%s: skipped, another image used in its place", e)
    raise DatasetError("no image of the dataset can be read any more")


def load_sample(
    source: SceneSource,
    index: int,
    img_size: int,
    rng: np.random.Generator | None = None,
    aug: Augmentation | None = None,
) -> Sample:
    """Letterbox one scene to the square network input; augment when `rng` and `aug` are given
    (ignored boxes are then left out: they are not to be learned). With probability
    `aug.mosaic` the sample is a mosaic of this scene and three others drawn by `rng`."""
    if rng is not None and aug is not None:
        if aug.mosaic > 0 and rng.random() < aug.mosaic:
            others = rng.integers(0, len(source), 3)
            tiles = [_tile(source, int(k), img_size) for k in (index, *others)]
            image, boxes, class_ids = mosaic(rng, tiles, img_size)
        else:
            sample = _letterboxed(source, index, img_size)
            learned = ~sample.ignore
            image, boxes, class_ids = (sample.image, sample.boxes_xyxy[learned],
                                       sample.class_ids[learned])
        return _augmented(rng, image, boxes, class_ids, aug, img_size)
    return _letterboxed(source, index, img_size)


def _letterboxed(source: SceneSource, index: int, img_size: int) -> Sample:
    """The scene letterboxed to the square input, ignore flags and all."""
    image, boxes, class_ids, ignore = read_scene(source, index)
    image, info = letterbox(image, img_size)
    boxes = letterbox_boxes(boxes, info).reshape(-1, 4)
    return Sample(image, boxes, np.asarray(class_ids, np.int64), np.asarray(ignore, bool))


def _tile(source: SceneSource, index: int, size: int) -> Tile:
    """A mosaic tile: the scene resized to longest side `size` (no padding), boxes to learn."""
    image, boxes, class_ids, ignore = read_scene(source, index)
    height, width = image.shape[:2]
    r = size / max(height, width)
    image, info = letterbox(image, (max(round(height * r), 1), max(round(width * r), 1)))
    boxes = letterbox_boxes(boxes, info).reshape(-1, 4)
    return image, boxes[~ignore], class_ids[~ignore]


def _augmented(rng: np.random.Generator, image: np.ndarray, boxes: np.ndarray,
               class_ids: np.ndarray, aug: Augmentation, img_size: int) -> Sample:
    """Scale / translate (a mosaic canvas down to `img_size`), HSV, flips."""
    image, boxes, keep = random_affine(rng, image, boxes, aug, img_size)
    class_ids, boxes = class_ids[keep], boxes[keep]
    image = augment_hsv(rng, image, aug)
    if rng.random() < aug.fliplr:
        image, boxes = flip(image, boxes, axis=1)
    if rng.random() < aug.flipud:
        image, boxes = flip(image, boxes, axis=0)
    return Sample(image, boxes.astype(np.float32), np.asarray(class_ids, np.int64),
                  np.zeros(len(class_ids), bool))


class Samples(torch.utils.data.Dataset):
    """A source's samples for a DataLoader: augmented with (seed, epoch, index) when `aug`."""

    def __init__(self, source: SceneSource, img_size: int, aug: Augmentation | None = None,
                 seed: int = 0, epoch: int = 0) -> None:
        self.source, self.img_size, self.aug = source, img_size, aug
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.aug else None
        return load_sample(self.source, index, self.img_size, rng, self.aug)


def as_list(samples: list[Sample]) -> list[Sample]:
    """A DataLoader collate function that leaves the samples as they are (validation)."""
    return samples


def collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, 3, S, S] float in 0..1 and targets [M, 6] (image, class, cx, cy, w, h) in 0..1
    of the boxes to learn (ignored ones left out).

    The samples are letterboxed already, so `network_input` passes them through unchanged: the
    same tensor inference and calibration make from the same picture.
    """
    size = samples[0].image.shape[:2]
    images, _ = network_input([s.image for s in samples], size)
    rows = []
    for i, s in enumerate(samples):
        height, width = s.image.shape[:2]
        trained = ~s.ignore
        boxes, class_ids = s.boxes_xyxy[trained], s.class_ids[trained]
        xy = (boxes[:, :2] + boxes[:, 2:]) / 2
        wh = boxes[:, 2:] - boxes[:, :2]
        norm = np.concatenate((xy, wh), axis=1) / np.array([width, height] * 2, np.float32)
        index = np.full((len(norm), 1), i, np.float32)
        rows.append(np.concatenate((index, class_ids[:, None].astype(np.float32), norm), axis=1))
    targets = torch.from_numpy(np.concatenate(rows).reshape(-1, 6)) if rows else torch.zeros(0, 6)
    return images, targets

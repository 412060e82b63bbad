"""Mosaic augmentation: boxes drawn back onto the mosaic cover exactly the objects' pixels.

The scenes are solid-colour rectangles (one colour per class) on a background no class uses, of
several aspect ratios, so every object pixel of a sample can be found by its colour.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from suhd_ros.training.augment import Augmentation, mosaic
from suhd_ros.training.dataset import load_sample
from suhd_ros.training.loop import TrainConfig

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
BACKGROUND = 40  # grey, far from every class colour and from the grey padding (114)
SIZE = 128
NO_COLOUR_CHANGE = replace(Augmentation(), hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, mosaic=1.0)


class _ColouredRectangles:
    """Scenes of 1-3 separated rectangles, class = colour, sizes 96x160 .. 200x120."""

    names = ("red", "green", "blue", "yellow")
    shapes = ((96, 160), (200, 120), (128, 128), (150, 90))

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int):
        rng = np.random.default_rng(1000 + index)
        height, width = self.shapes[index % len(self.shapes)]
        image = np.full((height, width, 3), BACKGROUND, np.uint8)
        boxes, classes = [], []
        for column in range(rng.integers(1, 4)):  # side by side, 16 px apart at least
            x1 = 8 + column * (width // 3)
            x2 = x1 + int(rng.integers(10, width // 3 - 16))
            y1 = int(rng.integers(8, height // 2))
            y2 = y1 + int(rng.integers(10, height - y1 - 8))
            k = int(rng.integers(0, len(COLOURS)))
            image[y1:y2, x1:x2] = COLOURS[k]
            boxes.append([x1, y1, x2, y2])
            classes.append(k)
        return (image, np.array(boxes, np.float32), np.array(classes),
                np.zeros(len(classes), bool))


def _colour_mask(image: np.ndarray, k: int, tolerance: int = 2) -> np.ndarray:
    return np.abs(image.astype(int) - COLOURS[k]).max(axis=2) <= tolerance


def _samples(count: int, aug: Augmentation = NO_COLOUR_CHANGE):
    source = _ColouredRectangles()
    for index in range(count):
        rng = np.random.default_rng((7, 0, index))
        yield load_sample(source, index % len(source), SIZE, rng, aug)


def test_mosaic_boxes_cover_their_objects_and_nothing_else():
    covered = total = checked = 0
    for sample in _samples(40):
        assert sample.image.shape == (SIZE, SIZE, 3)
        boxes = sample.boxes_xyxy
        assert ((boxes >= 0) & (boxes <= SIZE)).all()  # clipped to the sample
        assert ((boxes[:, 2:] - boxes[:, :2]) > 2).all()  # no slivers
        for box, k in zip(boxes, sample.class_ids, strict=True):
            # the object's edges are blurred over 2-3 px by two resamplings (tile, affine):
            # the box must meet the pixels that are mostly object within a pixel
            x1, y1 = np.maximum(np.floor(box[:2]).astype(int) - 2, 0)
            x2, y2 = np.ceil(box[2:]).astype(int) + 2
            mostly = _colour_mask(sample.image[y1:y2, x1:x2], k, tolerance=80)
            rows, cols = np.flatnonzero(mostly.any(axis=1)), np.flatnonzero(mostly.any(axis=0))
            assert len(rows), f"box {box} of class {k} holds no object"
            extent = [x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1]
            np.testing.assert_allclose(box, extent, atol=1.0, err_msg=f"class {k}")
            checked += 1
        for k in range(len(COLOURS)):
            mask = _colour_mask(sample.image, k)
            in_boxes = np.zeros_like(mask)
            for x1, y1, x2, y2 in np.round(boxes[sample.class_ids == k]).astype(int):
                in_boxes[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = True
            covered += (mask & in_boxes).sum()
            total += mask.sum()
    # the only object pixels outside a box of their class are the slivers dropped on purpose
    assert checked > 60 and total > 0 and covered / total > 0.97, (checked, covered / total)


def test_a_mosaic_sample_joins_four_scenes():
    """With no scale or translation the sample is the canvas' middle, where all four meet."""
    still = replace(NO_COLOUR_CHANGE, scale=0.0, translate=0.0, fliplr=0.0, flipud=0.0)
    backgrounds = [(i, i, i) for i in (20, 50, 80, 140)]
    tiles = [(np.full((SIZE, SIZE, 3), b, np.uint8), np.zeros((0, 4), np.float32),
              np.zeros(0, np.int64)) for b in backgrounds]
    for seed in range(10):
        canvas, boxes, _ = mosaic(np.random.default_rng(seed), tiles, SIZE)
        assert canvas.shape == (2 * SIZE, 2 * SIZE, 3) and len(boxes) == 0
        middle = canvas[SIZE // 2:3 * SIZE // 2, SIZE // 2:3 * SIZE // 2, 0]
        assert set(np.unique(middle)) == {b[0] for b in backgrounds}
    sample = next(_samples(1, still))
    greys = np.unique(sample.image[(sample.image == sample.image[..., :1]).all(axis=2)][:, 0])
    assert BACKGROUND in greys and len(sample.class_ids) > 0


def test_mosaic_clips_a_box_at_the_canvas_border_and_drops_slivers():
    image = np.full((SIZE, SIZE, 3), BACKGROUND, np.uint8)
    boxes = np.array([[0, 0, 60, 60], [0, 100, 2, 128], [70, 70, 128, 128]], np.float32)
    tiles = [(image, boxes, np.array([0, 1, 2]))] + [
        (image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))] * 3
    rng = np.random.default_rng(3)
    xc, yc = (int(v) for v in np.random.default_rng(3).uniform(SIZE / 2, 3 * SIZE / 2, 2))
    _, moved, classes = mosaic(rng, tiles, SIZE)
    # the top-left tile ends at the centre: shifted by (xc - SIZE, yc - SIZE), cut at 0
    shift = np.array([xc - SIZE, yc - SIZE] * 2, np.float32)
    expected = np.clip(boxes + shift, 0, 2 * SIZE)
    sides, before = expected[:, 2:] - expected[:, :2], boxes[:, 2:] - boxes[:, :2]
    keep = [k for k in range(3) if (sides[k] > 2).all() and sides[k].max() / sides[k].min() < 20
            and sides[k].prod() > 0.1 * before[k].prod()]
    np.testing.assert_allclose(moved, expected[keep])
    np.testing.assert_array_equal(classes, keep)
    assert 1 not in keep  # 2 px wide: a sliver


@pytest.mark.parametrize(("epochs", "close", "on_until"), [(40, None, 30), (8, None, 6),
                                                           (3, None, 3), (8, 3, 5), (8, 0, 8)])
def test_mosaic_is_on_for_a_dataset_and_off_for_the_last_epochs(epochs, close, on_until):
    config = TrainConfig(data="some/data.yaml", epochs=epochs, close_mosaic=close)
    assert [config.augmentation(e).mosaic for e in range(epochs)] == (
        [1.0] * on_until + [0.0] * (epochs - on_until))


def test_the_benchmark_recipe_has_no_mosaic_unless_asked():
    assert TrainConfig().augmentation(0) == Augmentation()  # the default model's recipe
    assert TrainConfig().augmentation(0).mosaic == 0.0
    assert TrainConfig(mosaic=0.5, epochs=8).augmentation(0).mosaic == 0.5
    assert TrainConfig(data="d", mosaic=0.25, epochs=8).augmentation(0).mosaic == 0.25

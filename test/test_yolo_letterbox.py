"""Letterbox geometry and the exact inverse mapping of boxes."""

import numpy as np
import pytest

from suhd_ros.yolo.letterbox import letterbox, letterbox_boxes, unletterbox_boxes

CASES = [
    ((480, 640), 320),
    ((123, 457), (256, 320)),
    ((640, 360), (320, 320)),
    ((37, 1000), 256),
    ((300, 200), (320, 480)),  # upscaling
]


def _random_boxes(rng: np.random.Generator, h: int, w: int, k: int = 16) -> np.ndarray:
    xs = np.sort(rng.uniform(0, w, size=(k, 2)), axis=1)
    ys = np.sort(rng.uniform(0, h, size=(k, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1).astype(np.float32)


@pytest.mark.parametrize(("orig", "new"), CASES)
def test_content_is_scaled_and_centred(orig: tuple[int, int], new: int | tuple) -> None:
    h, w = orig
    new_h, new_w = (new, new) if isinstance(new, int) else new
    padded, info = letterbox(np.full((h, w, 3), 255, np.uint8), new)
    assert padded.shape == (new_h, new_w, 3)
    r = min(new_h / h, new_w / w)
    content_w, content_h = round(w * r), round(h * r)
    assert content_w == new_w or content_h == new_h  # the content fills one axis
    rows = np.flatnonzero(padded[:, :, 0].max(axis=1) == 255)
    cols = np.flatnonzero(padded[:, :, 0].max(axis=0) == 255)
    assert (rows[0], rows[-1] + 1) == (info.pad_y, info.pad_y + content_h)
    assert (cols[0], cols[-1] + 1) == (info.pad_x, info.pad_x + content_w)
    assert abs(info.pad_x - (new_w - content_w - info.pad_x)) <= 1  # centred
    assert abs(info.pad_y - (new_h - content_h - info.pad_y)) <= 1
    border = np.ones((new_h, new_w), bool)
    border[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = False
    assert np.all(padded[border] == 114)
    assert info.orig_shape == (h, w)


@pytest.mark.parametrize(("orig", "new"), CASES)
def test_boxes_map_back_exactly(orig: tuple[int, int], new: int | tuple) -> None:
    h, w = orig
    rng = np.random.default_rng(h * w)
    _, info = letterbox(np.zeros((h, w, 3), np.uint8), new)
    boxes = _random_boxes(rng, h, w)
    there = letterbox_boxes(boxes, info)
    assert not np.allclose(there, boxes)
    np.testing.assert_allclose(unletterbox_boxes(there, info), boxes, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("orig", "new"), CASES)
def test_drawn_rectangle_is_found_where_it_was(orig: tuple[int, int], new: int | tuple) -> None:
    """Independent of our own forward map: find a drawn box in the letterboxed pixels."""
    h, w = orig
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = w // 4, h // 3, 3 * w // 4, 2 * h // 3
    image[y1:y2, x1:x2] = 255
    padded, info = letterbox(image, new)
    bright = padded[:, :, 0] > 127
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    found = np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], np.float32)
    back = unletterbox_boxes(found, info)[0]
    tolerance = 1.5 / min(info.ratio) + 0.5  # one letterboxed pixel of blur, in original pixels
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=tolerance)


def test_unletterbox_clips_to_the_image() -> None:
    _, info = letterbox(np.zeros((100, 200, 3), np.uint8), 128)
    inside_pad = np.array([[0.0, 0.0, 128.0, 128.0]], np.float32)  # covers the padding too
    np.testing.assert_allclose(unletterbox_boxes(inside_pad, info), [[0, 0, 200, 100]])


def test_rejects_non_colour_images() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((10, 10), np.uint8), 32)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32), 32)

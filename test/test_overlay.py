"""The overlay draws in fixed class colours on a copy and copes with odd boxes and ids."""

from __future__ import annotations

import numpy as np
import pytest

from suhd_ros.ros.overlay import class_colour, class_label, draw_detections

NAMES = ["person", "car", "dog", "cat"]
BACKGROUND = 90


def blank(height: int = 120, width: int = 160) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND, np.uint8)


def test_box_outline_is_drawn_in_the_class_colour() -> None:
    rgb = blank()
    out = draw_detections(rgb, [[40, 50, 120, 100]], [0.9], [2], NAMES)
    colour = np.array(class_colour(2))
    assert not np.array_equal(colour, [BACKGROUND] * 3)
    np.testing.assert_array_equal(out[75, 40], colour)  # left edge, below the label
    np.testing.assert_array_equal(out[75, 120], colour)  # right edge
    np.testing.assert_array_equal(out[100, 80], colour)  # bottom edge
    np.testing.assert_array_equal(out[75, 80], [BACKGROUND] * 3)  # inside stays clear
    np.testing.assert_array_equal(out[110:, :], rgb[110:, :])  # below the box: untouched


def test_label_sits_above_the_box_on_a_class_coloured_background() -> None:
    out = draw_detections(blank(), [[40, 60, 120, 100]], [0.5], [1], NAMES)
    above = out[30:59, 40:120].reshape(-1, 3)
    colour = class_colour(1)
    assert np.all(above == colour, axis=1).sum() > 50  # filled label background
    assert np.any(np.any(above != colour, axis=1) & np.any(above != BACKGROUND, axis=1))


def test_input_is_left_unchanged() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    before = rgb.copy()
    out = draw_detections(rgb, [[5, 5, 50, 40]], [0.7], [0], NAMES, info_line="12 fps")
    np.testing.assert_array_equal(rgb, before)
    assert not np.shares_memory(out, rgb)
    assert not np.array_equal(out, rgb)


def test_same_class_gets_the_same_colour_across_calls() -> None:
    first = draw_detections(blank(), [[10, 40, 60, 90]], [0.9], [3], NAMES)
    second = draw_detections(blank(), [[80, 30, 150, 110]], [0.2], [3], NAMES)
    np.testing.assert_array_equal(first[60, 10], second[60, 80])
    np.testing.assert_array_equal(first[60, 10], class_colour(3))


def test_palette_is_deterministic_and_distinct() -> None:
    colours = [class_colour(i) for i in range(80)]
    assert colours == [class_colour(i) for i in range(80)]
    assert len(set(colours)) == 80
    assert all(0 <= c <= 255 for colour in colours for c in colour)


def test_zero_detections_change_nothing_but_the_info_line() -> None:
    rgb = blank()
    empty = draw_detections(rgb, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), NAMES)
    np.testing.assert_array_equal(empty, rgb)
    with_info = draw_detections(rgb, [], [], [], NAMES, info_line="30.0 fps | 12 ms | 1.2 mJ")
    assert not np.array_equal(with_info[:20, :100], rgb[:20, :100])
    np.testing.assert_array_equal(with_info[40:], rgb[40:])


def test_boxes_partly_outside_are_clipped_and_wholly_outside_skipped() -> None:
    rgb = blank(100, 100)
    out = draw_detections(rgb, [[-50, -50, 60, 70]], [0.8], [0], NAMES)
    np.testing.assert_array_equal(out[50, 60], class_colour(0))  # right edge inside the image
    np.testing.assert_array_equal(out[70, 30], class_colour(0))  # bottom edge
    outside = [[200, 200, 300, 300], [-80, 10, -5, 50], [np.nan, 0, 10, 10], [30, 30, 10, 10]]
    untouched = draw_detections(rgb, outside, [0.9] * 4, [1] * 4, NAMES)
    np.testing.assert_array_equal(untouched, rgb)


def test_unknown_class_ids_get_a_generic_label_and_a_colour() -> None:
    assert class_label(1, NAMES) == "car"
    assert class_label(99, NAMES) == "class 99"
    assert class_label(-1, NAMES) == "class -1"
    assert class_label(7, {7: "boat"}) == "boat"
    assert class_label(8, {7: "boat"}) == "class 8"
    out = draw_detections(blank(), [[20, 40, 100, 100]], [0.6], [99], NAMES)
    np.testing.assert_array_equal(out[70, 20], class_colour(99))


@pytest.mark.parametrize(
    ("boxes", "scores", "ids"),
    [([[0, 0, 5, 5]], [0.5, 0.6], [1]), ([[0, 0, 5]], [0.5], [1]), ([[0, 0, 5, 5]], [0.5], [])],
)
def test_mismatched_inputs_are_rejected(boxes: list, scores: list, ids: list) -> None:
    with pytest.raises(ValueError, match="expected boxes N x 4"):
        draw_detections(blank(), boxes, scores, ids, NAMES)

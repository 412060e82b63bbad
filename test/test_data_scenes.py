"""The procedural benchmark: determinism, tight boxes, occlusion rule, class and size coverage."""

from dataclasses import replace

import numpy as np
import pytest

from suhd_ros.synthetic.scenes import CLASS_NAMES, SPLITS, SceneStyle, generate_scene

# Flat background, one solid colour per object, no clutter, light, blur or noise: every pixel
# that differs from the background belongs to an object, so boxes can be checked on the image.
CLEAN = SceneStyle(
    backgrounds=("flat",),
    textures=("solid",),
    clutter=(0, 0),
    lighting=0.0,
    blur_probability=0.0,
    noise_sigma=(0.0, 0.0),
)


def _changed_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels unlike the background; a corner is never covered (objects lie inside the image)."""
    return np.any(image != image[0, 0], axis=2)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = (generate_scene(seed, 160, 120) for seed in (7, 7, 8))
    assert a.image.shape == (120, 160, 3) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(a.image, c.image)


def test_single_object_box_is_tight_on_its_drawn_pixels():
    style = replace(CLEAN, objects=(1, 1))
    for seed in range(40):
        scene = generate_scene(seed, 96, 80, style)
        assert len(np.unique(scene.image.reshape(-1, 3), axis=0)) == 2  # background + object
        rows = np.flatnonzero(_changed_pixels(scene.image).any(axis=1))
        cols = np.flatnonzero(_changed_pixels(scene.image).any(axis=0))
        expected = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        np.testing.assert_array_equal(scene.boxes_xyxy, [expected], err_msg=f"seed {seed}")


def test_overlapping_objects_keep_full_boxes_and_cover_every_drawn_pixel():
    style = replace(CLEAN, objects=(3, 8))
    occluded = 0
    for seed in range(30):
        scene = generate_scene(seed, 128, 128, style)
        changed = _changed_pixels(scene.image)
        inside_any = np.zeros_like(changed)
        for x1, y1, x2, y2 in scene.boxes_xyxy.astype(int):
            inside_any[y1:y2, x1:x2] = True
            # each border row and column of a box holds drawn pixels (of it or its occluder)
            assert changed[y1, x1:x2].any() and changed[y2 - 1, x1:x2].any()
            assert changed[y1:y2, x1].any() and changed[y1:y2, x2 - 1].any()
        assert not (changed & ~inside_any).any(), f"unlabelled drawn pixels, seed {seed}"
        assert (scene.visible_fraction >= style.min_visible).all()
        occluded += int((scene.visible_fraction < 1.0).sum())
    assert occluded > 0  # the rule above was exercised on partly hidden objects


def test_mostly_hidden_objects_are_dropped_and_the_rest_kept():
    dropped = 0
    for seed in range(40):
        strict = generate_scene(seed, 128, 128, SceneStyle(objects=(6, 12)))
        everything = generate_scene(seed, 128, 128, SceneStyle(objects=(6, 12), min_visible=0.0))
        kept = {tuple(b) for b in strict.boxes_xyxy.tolist()}
        assert kept <= {tuple(b) for b in everything.boxes_xyxy.tolist()}
        dropped += len(everything.class_ids) - len(strict.class_ids)
    assert dropped > 0


def test_all_classes_appear_and_sizes_span_the_range():
    counts = np.zeros(len(CLASS_NAMES), int)
    longer_sides = []
    for seed in range(200):
        scene = generate_scene(seed, 320, 320)
        np.add.at(counts, scene.class_ids, 1)
        longer_sides.extend((scene.boxes_xyxy[:, 2:] - scene.boxes_xyxy[:, :2]).max(axis=1))
        assert ((scene.boxes_xyxy >= 0) & (scene.boxes_xyxy <= 320)).all()
    assert len(CLASS_NAMES) >= 8 and (counts > 0).all(), counts
    assert min(longer_sides) >= 6 and min(longer_sides) <= 12
    assert max(longer_sides) >= 150


@pytest.mark.parametrize(("a", "b"), [("train", "val"), ("train", "test"), ("val", "test")])
def test_splits_are_disjoint_seed_ranges(a, b):
    assert SPLITS[a].step == SPLITS[b].step == 1 and len(SPLITS[a]) and len(SPLITS[b])
    assert SPLITS[a].stop <= SPLITS[b].start or SPLITS[b].stop <= SPLITS[a].start

"""Moving synthetic sequences: deterministic, objects move / enter / leave / occlude, the depth
image and the 3D truth agree with the pinhole model, and depth -> 3D finds the truth."""

from __future__ import annotations

import numpy as np
import pytest

from suhd_ros.geometry import Intrinsics, boxes_to_3d, depth_in_metres, project
from suhd_ros.synthetic.sequence import SceneSequence, SequenceFrame

WIDTH, HEIGHT = 160, 120


def _frames(seed: int, n: int) -> list[SequenceFrame]:
    sequence = SceneSequence(seed, WIDTH, HEIGHT)
    return [sequence.next_frame() for _ in range(n)]


@pytest.fixture(scope="module")
def frames() -> list[SequenceFrame]:
    return _frames(5, 300)


def _intrinsics() -> Intrinsics:
    return SceneSequence(0, WIDTH, HEIGHT).k


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b, c = _frames(11, 5), _frames(11, 5), _frames(12, 5)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.depth_mm, y.depth_mm)
        assert np.array_equal(x.centers_m, y.centers_m)
        assert np.array_equal(x.track_ids, y.track_ids)
    assert not np.array_equal(a[0].image, c[0].image)


def test_objects_move_enter_leave_and_occlude(frames: list[SequenceFrame]) -> None:
    first_seen: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    positions: dict[int, list[np.ndarray]] = {}
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.depth_mm.shape == (HEIGHT, WIDTH)
        for track_id, centre in zip(frame.track_ids.tolist(), frame.centers_m, strict=True):
            first_seen.setdefault(track_id, frame.index)
            last_seen[track_id] = frame.index
            positions.setdefault(track_id, []).append(centre)
        assert len(set(frame.track_ids.tolist())) == len(frame.track_ids)
    assert any(first > 0 for first in first_seen.values())  # entered later
    assert any(last < frames[-1].index for last in last_seen.values())  # left
    moved = [np.linalg.norm(p[-1] - p[0]) for p in positions.values() if len(p) > 10]
    assert moved and min(moved) > 0.1
    fractions = np.concatenate([f.visible_fraction for f in frames])
    assert (fractions < 0.95).any() and (fractions >= 0.5).all()
    assert any(len(f.hidden_boxes_xyxy) for f in frames)  # mostly hidden ones, not labelled


def test_truth_projects_onto_the_boxes_and_the_depth_image(frames: list[SequenceFrame]) -> None:
    k = _intrinsics()
    checked = 0
    for frame in frames[::10]:
        depth = depth_in_metres(frame.depth_mm)
        for box, centre, visible in zip(frame.boxes_xyxy, frame.centers_m,
                                        frame.visible_fraction, strict=True):
            inside = box[0] > 0 and box[1] > 0 and box[2] < WIDTH and box[3] < HEIGHT
            if not inside or visible < 0.99 or box[2] - box[0] < 6:
                continue
            u, v = project(centre, k)
            assert (u, v) == pytest.approx(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                                           abs=1.5)  # rasterised edges
            # unoccluded: the nearest surface in the box is the card (its centre may be a hole)
            patch = depth[int(box[1]):int(box[3]), int(box[0]):int(box[2])]
            assert np.nanpercentile(patch, 5) == pytest.approx(centre[2], rel=0.05)
            checked += 1
    assert checked >= 10


def test_depth_to_3d_finds_the_truth_within_3_percent(frames: list[SequenceFrame]) -> None:
    """The truth boxes through geometry.py: the median error is a small share of the distance
    (the issue's target is 3 %; detector boxes add their own error, see the benchmark)."""
    k = _intrinsics()
    errors = []
    for frame in frames:
        located = boxes_to_3d(depth_in_metres(frame.depth_mm), frame.boxes_xyxy, k)
        for box, centre in zip(located, frame.centers_m, strict=True):
            if box is not None:
                errors.append(np.linalg.norm(np.subtract(box.center, centre)) / centre[2])
    assert len(errors) > 200
    assert float(np.median(errors)) < 0.03

"""Tracking glue without ROS: IDs follow objects in the input order, per tracker instance."""

from __future__ import annotations

import numpy as np
import pytest

from suhd_ros.geometry import box_iou
from suhd_ros.tracking import (
    NO_ID,
    TRACKERS,
    TrackingError,
    make_tracker,
    track_detections,
)


def _frame(f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two objects moving in opposite directions; every other frame lists them reversed."""
    boxes = np.array([[10 + 4 * f, 10, 60 + 4 * f, 70], [300 - 3 * f, 100, 360 - 3 * f, 180]],
                     np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    classes = np.array([0, 1])
    if f % 2:
        return boxes[::-1], scores[::-1], classes[::-1]
    return boxes, scores, classes


@pytest.mark.parametrize("kind", [k for k in TRACKERS if k != "none"])
def test_ids_are_stable_and_follow_the_input_order(kind: str) -> None:
    tracker = make_tracker(kind)
    assert tracker is not None
    by_class: dict[int, set[int]] = {0: set(), 1: set()}
    for f in range(12):
        boxes, scores, classes = _frame(f)
        ids = tracker.update(boxes, scores, classes)
        assert ids.shape == (2,)
        for track_id, class_id in zip(ids.tolist(), classes.tolist(), strict=True):
            if track_id != NO_ID:
                by_class[class_id].add(track_id)
    # each object kept one ID, and the two IDs differ
    assert len(by_class[0]) == 1 and len(by_class[1]) == 1
    assert by_class[0] != by_class[1]


def test_an_object_that_leaves_and_a_new_one_get_different_ids() -> None:
    tracker = make_tracker("bytetrack")
    first = [tracker.update(np.array([[10.0, 10, 50, 50]]), np.array([0.9]), np.array([0]))[0]
             for _ in range(5)]
    for _ in range(60):  # longer than the lost-track buffer
        assert tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0)).shape == (0,)
    second = [tracker.update(np.array([[400.0, 300, 450, 350]]), np.array([0.9]),
                             np.array([0]))[0] for _ in range(5)]
    assert first[-1] != NO_ID and second[-1] != NO_ID and first[-1] != second[-1]


def test_two_cameras_have_their_own_trackers() -> None:
    left, right = make_tracker("bytetrack"), make_tracker("bytetrack")
    for f in range(4):
        ids_left = left.update(*_frame(f))
    ids_right = right.update(*_frame(0))
    assert (ids_right == NO_ID).all()  # a fresh tracker has confirmed nothing yet
    assert (ids_left != NO_ID).all()


def test_none_and_unknown_trackers() -> None:
    assert make_tracker("none") is None
    with pytest.raises(TrackingError, match="tracker must be one of"):
        make_tracker("deepsort")


def test_a_second_box_of_another_class_on_the_same_object_gets_no_second_id() -> None:
    """Per-class NMS can leave two boxes on one object; the object is tracked once (across
    classes, as a class-agnostic tracker sees them)."""
    tracker = make_tracker("bytetrack", per_class=False)
    for f in range(4):
        boxes = np.array([[10.0 + f, 10, 60 + f, 60], [11.0 + f, 10, 61 + f, 61],
                          [200.0, 100, 240, 160]])
        scores = np.array([0.9, 0.6, 0.8] if f % 2 else [0.6, 0.9, 0.8])
        ids = tracker.update(boxes, scores, np.array([0, 4, 1]))
    best = int(np.argmax(scores[:2]))
    assert ids[best] != NO_ID and ids[1 - best] == NO_ID and ids[2] != NO_ID
    assert ids[best] != ids[2]


def test_per_class_tracks_do_not_jump_to_a_crossing_object_of_another_class() -> None:
    """A far object (class 0) hidden while a near one (class 1) passes in front; the near one
    missed in two frames. Class-agnostic, ByteTrack moved the far one's first ID onto the near
    one here (checked when this test was written); per class, each keeps one ID."""
    tracker = make_tracker("bytetrack")
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for f in range(40):
        far = np.array([200.0 + 1.15 * f, 100, 290 + 1.15 * f, 190])
        near = np.array([258.0 - 2.79 * f, 100, 335 - 2.79 * f, 177])
        overlap = min(far[2], near[2]) - max(far[0], near[0])
        boxes, classes = ([far], [0]) if f in (18, 39) else (
            ([near], [1]) if overlap > 0.3 * 77 else ([near, far], [1, 0]))
        ids = tracker.update(np.stack(boxes), np.full(len(boxes), 0.9), np.array(classes))
        for track_id, class_id in zip(ids.tolist(), classes, strict=True):
            if track_id != NO_ID:
                seen[class_id].add(track_id)
    assert len(seen[0]) == 1 and len(seen[1]) == 1 and seen[0] != seen[1]


def test_ids_are_unique_across_classes_and_a_class_flip_starts_a_new_track() -> None:
    tracker = make_tracker("sort")
    box = np.array([[10.0, 10, 60, 60], [200.0, 10, 260, 60]])
    for _ in range(3):
        ids = tracker.update(box, np.array([0.9, 0.9]), np.array([0, 1]))
    assert ids[0] != ids[1] and (ids != NO_ID).all()
    for _ in range(3):
        flipped = tracker.update(box, np.array([0.9, 0.9]), np.array([0, 2]))
    assert flipped[0] == ids[0] and flipped[1] not in (NO_ID, ids[1])


def test_class_agnostic_a_flip_keeps_the_track_and_the_vote_keeps_its_class() -> None:
    tracker = make_tracker("bytetrack", per_class=False)
    box = np.array([[10.0, 10, 60, 60]])
    for class_id in [3, 3, 3, 3, 5, 5]:
        ids = tracker.update(box, np.array([0.9]), np.array([class_id]))
        if class_id == 3:
            first = ids[0]
    assert ids[0] == first != NO_ID
    assert tracker.classes(ids, np.array([5]))[0] == 3  # seen as 3 more often
    for _ in range(2):
        ids = tracker.update(box, np.array([0.9]), np.array([5]))
    assert tracker.classes(ids, np.array([5]))[0] == 5
    assert tracker.classes(np.array([NO_ID]), np.array([7]))[0] == 7  # untracked: its own


def _published_classes(per_class: bool, classes: list[int]) -> tuple[list[int], list[int]]:
    """The node's and suhd-bag's tracking step over frames of one box whose class the
    detector flips: track ids and the classes published."""
    tracker = make_tracker("bytetrack", per_class=per_class)
    ids, published = [], []
    for class_id in classes:
        frame_ids, frame_classes = track_detections(
            tracker, np.array([[10.0, 10, 60, 60]], np.float32), np.array([0.9], np.float32),
            np.array([class_id]))
        ids += frame_ids
        published.append(int(frame_classes[0]))
    return ids, published


def test_the_voted_class_of_a_class_agnostic_track_is_published() -> None:
    ids, published = _published_classes(False, [3, 3, 3, 5, 3])
    assert ids[1] != NO_ID and set(ids[1:]) == {ids[1]}  # ByteTrack confirms on frame 2
    assert published == [3, 3, 3, 3, 3]  # the flip to 5 is published as the track's class
    ids, published = _published_classes(True, [3, 3, 3, 5, 5, 5, 3])
    assert published == [3, 3, 3, 5, 5, 5, 3]
    assert ids[5] not in (NO_ID, ids[2])  # per class: the flip is another track
    assert track_detections(None, np.zeros((2, 4)), np.ones(2), np.array([4, 5]))[0] == [
        NO_ID, NO_ID]


def _crossing_sequence(frames: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Objects of classes 0 and 1 crossing (IoU up to 0.5, below DUPLICATE_IOU), and one of
    class 1 appearing where one of class 0 was lost; each missed now and then."""
    rng = np.random.default_rng(3)
    out = []
    for f in range(frames):
        boxes = [[100.0 + 5 * f, 100, 160 + 5 * f, 160], [300.0 - 4 * f, 120, 360 - 4 * f, 180],
                 [400.0, 300 + 3 * f, 460, 360 + 3 * f]]
        keep = [i for i in range(3) if rng.random() > 0.25 and (i < 2 or f != 25)]
        classes = np.array([0, 1, 0 if f < 25 else 1])[keep]
        out.append((np.array(boxes, np.float32)[keep] + rng.normal(0, 1, (len(keep), 4)),
                    rng.uniform(0.5, 0.9, len(keep)), classes))
    return out


@pytest.mark.parametrize("kind", ["ocsort", "bytetrack"])
def test_per_class_tracking_equals_tracking_each_class_alone(kind: str) -> None:
    """One library tracker serves all classes; each class must be tracked exactly as a tracker
    given that class alone tracks it (the same IDs up to renumbering)."""
    sequence = _crossing_sequence(50)
    assert max(box_iou(boxes[classes == 0], boxes[classes == 1]).max(initial=0.0)
               for boxes, _, classes in sequence) > 0.4
    joint = make_tracker(kind)
    joint_ids = [joint.update(*frame) for frame in sequence]
    by_class: list[set[int]] = []
    for class_id in (0, 1):
        alone = make_tracker(kind)
        pairs = set()
        for (boxes, scores, classes), ids in zip(sequence, joint_ids, strict=True):
            mine = classes == class_id
            own = alone.update(boxes[mine], scores[mine], classes[mine])
            pairs |= set(zip(ids[mine].tolist(), own.tolist(), strict=True))
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
        assert any(a != NO_ID for a, _ in pairs)
        by_class.append({a for a, _ in pairs} - {NO_ID})
    assert not by_class[0] & by_class[1]  # no ID went from one class to the other

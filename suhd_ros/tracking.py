"""Tracking IDs from a maintained library: the glue between FrameResult boxes and `trackers`.

The library is Roboflow's `trackers` (ByteTrack, SORT, OC-SORT, BoT-SORT without camera motion
compensation, C-BIoU; the successor of the ByteTrack in `supervision`), chosen because it is
maintained (monthly releases in 2026), is plain numpy + scipy (no torch, no torchvision), and
installs beside our numpy 2 and opencv-python-headless (requirements/tracking.txt says how).
`norfair` pins numpy < 2 and `boxmot` needs torchvision. Only the conversion between our arrays
and its Detections is ours.

One ObjectTracker serves one camera: IDs are per camera. The detector's NMS works per class, so
one object can come back as two boxes of different classes; the trackers are class-agnostic,
and fed both they start a second track on the same object (on the moving sequence 16 % of the
detections were such duplicates, and they caused most ID switches). So a box that overlaps a
higher-scoring one by DUPLICATE_IOU or more is not given to the tracker and gets no ID: the
object's ID is on its best box, once.
An ID is an integer >= 0 (the library counts from 0); -1 means "not tracked (yet)": a track is
confirmed after a few consecutive frames, and low-score leftovers get no ID.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from suhd_ros.geometry import box_iou

# parameter value -> class name in `trackers`; "none" assigns no IDs
TRACKERS: dict[str, str | None] = {
    "none": None,
    "bytetrack": "ByteTrackTracker",
    "sort": "SORTTracker",
    "ocsort": "OCSORTTracker",
    "botsort": "BoTSORTTracker",
    "cbiou": "CBIoUTracker",
}
NO_ID = -1
# The tracker to use (the launch file's suggestion, the benchmark's first row): OC-SORT had the
# best IDF1 on the validation sequences (benchmarks/tracking_sweep.py; seeds 7, 11-14, 400
# frames each, per class): 0.881 against ByteTrack 0.849 and C-BIoU 0.866 at their best.
DEFAULT_TRACKER = "ocsort"
DUPLICATE_IOU = 0.6  # a box overlapping a better one this much is the same object
# Per class, each class's boxes are moved this far along x (pixels; far more than any image is
# wide), so that one library tracker never associates boxes of two classes.
CLASS_PLANE = 100_000.0
# The least score that starts a track (ByteTrack / OC-SORT: also the split between their first,
# confident association and the second one that only extends tracks). The library's defaults
# (0.6-0.7) suit COCO-trained YOLOs; our detector's true objects often score 0.4-0.6.
DEFAULT_TRACK_THRESHOLD = 0.4


# Our settings of the library's trackers, chosen on the validation sequences (mean IDF1; the
# lost-track buffer, 30 or 90 frames, and giving ByteTrack the detector's boxes down to 0.1
# instead of the node's 0.25 moved it by 0.005 or less, so both stay as they are):
# - OC-SORT: an ID from the first frame (minimum_consecutive_frames 1: 0.869 against 0.862 at
#   2), association from IoU 0.2 (0.3: 0.876), direction consistency weighted 0.5 (0.2: 0.870).
# - ByteTrack, C-BIoU: a track confirmed on its second frame (1 lost 0.002-0.02 IDF1).
TUNED: dict[str, dict[str, Any]] = {
    "ocsort": {"minimum_consecutive_frames": 1, "minimum_iou_threshold": 0.2,
               "direction_consistency_weight": 0.5},
}


def _settings(kind: str, track_threshold: float, overrides: dict[str, Any]) -> dict[str, Any]:
    """The library's keyword arguments: ours (TUNED), then ``overrides`` (the library's names)."""
    settings: dict[str, Any] = {"minimum_consecutive_frames": 2} | TUNED.get(kind, {})
    if kind != "ocsort":
        settings["track_activation_threshold"] = track_threshold
    if kind != "sort":
        settings["high_conf_det_threshold"] = track_threshold
    if kind == "botsort":
        settings["enable_cmc"] = False  # camera motion compensation needs the image: not given
    return settings | overrides


class TrackingError(RuntimeError):
    """An unknown tracker or a missing library; the message says which and how to install."""


def _tracker_class(kind: str) -> Any:
    if kind not in TRACKERS or TRACKERS[kind] is None:
        raise TrackingError(f"tracker must be one of {list(TRACKERS)}, got {kind!r}")
    try:
        module = importlib.import_module("trackers")
    except ImportError as exc:
        raise TrackingError(f"tracker {kind!r} needs the 'trackers' package ({exc}); install "
                            "it with: pip install --no-deps -r requirements/tracking.txt") from exc
    return getattr(module, TRACKERS[kind])


class ObjectTracker:
    """IDs for one camera's detections, frame after frame.

    ``per_class``: a track never jumps to an object of another class. The library's trackers
    associate by IoU alone, and where a near object passes in front of a far one the far one's
    track moved onto the near one; on three validation sequences (400 frames each) per-class
    tracking raised ByteTrack's IDF1 from 0.73-0.83 to 0.87-0.95 (OC-SORT's from 0.77-0.89 to
    0.91-0.94). Its cost: a detector that flips an object's class starts a new track (ID
    switches 3-5 -> 3-19 there).

    Per class, one library tracker still serves all classes: each class's boxes are moved into
    a plane of their own, CLASS_PLANE pixels apart along x, so boxes of two classes never
    overlap and the library (whose association, motion models and track ages are all
    translation-invariant) tracks each class alone. One update per frame instead of one per
    class with tracks (4.3 per frame on the test sequence): OC-SORT costs about a third less,
    with the library's own IDs, unique per camera. OC-SORT and ByteTrack give the IDs of
    separate trackers; BoT-SORT and C-BIoU differ slightly, as they confirm the tracks of their
    first frame at once and a class's first frame is no longer its tracker's first.
    """

    def __init__(self, kind: str, track_threshold: float = DEFAULT_TRACK_THRESHOLD,
                 frame_rate: float = 30.0, per_class: bool = True, **library: Any) -> None:
        self.kind = kind
        self.per_class = per_class
        self._tracker = _tracker_class(kind)(frame_rate=frame_rate,
                                             **_settings(kind, track_threshold, library))
        self._votes: dict[int, dict[int, float]] = {}  # ID -> class -> summed score
        supervision = importlib.import_module("supervision")
        self._detections = supervision.Detections

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray,
               class_ids: np.ndarray) -> np.ndarray:
        """The ID of each detection, in the input order (int64, NO_ID for untracked).

        The library returns its detections reordered and some dropped; an index column carried
        through its data dict maps them back.
        """
        n = len(boxes_xyxy)
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(n, 4)
        confidence = np.asarray(scores, np.float32).reshape(n)
        classes = np.asarray(class_ids, np.int64).reshape(n)
        kept = self._kept(boxes, confidence)
        if self.per_class:
            boxes = boxes + (classes * CLASS_PLANE)[:, None] * np.array([1.0, 0.0, 1.0, 0.0])
        tracked = self._tracker.update(self._detections(
            xyxy=boxes[kept], confidence=confidence[kept], class_id=classes[kept],
            data={"index": kept}))
        ids = np.full(n, NO_ID, np.int64)
        ids[tracked.data.get("index", np.empty(0, np.int64))] = tracked.tracker_id
        self._vote(ids, classes, confidence)
        return ids

    def classes(self, ids: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """Each tracked detection's class by its track's vote (the class with the highest
        summed score over the track's life): class-agnostic (per_class=False), a class flip
        of the detector keeps the track, and this keeps the class published for it stable.
        Untracked ones keep their own."""
        voted = np.asarray(class_ids, np.int64).copy()
        for index, track_id in enumerate(np.asarray(ids).tolist()):
            votes = self._votes.get(track_id)
            if votes:
                voted[index] = max(votes, key=votes.__getitem__)
        return voted

    def _vote(self, ids: np.ndarray, classes: np.ndarray, confidence: np.ndarray) -> None:
        """Add this frame's scores to each track's class votes; forget the tracks the library
        dropped."""
        for track_id, class_id, score in zip(ids.tolist(), classes.tolist(),
                                             confidence.tolist(), strict=True):
            if track_id != NO_ID:
                votes = self._votes.setdefault(track_id, {})
                votes[class_id] = votes.get(class_id, 0.0) + score
        alive = {t.tracker_id for t in self._tracker.tracks}
        for gone in [i for i in self._votes if i not in alive]:
            del self._votes[gone]

    def _kept(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Indices of the boxes that are not duplicates: no higher-scoring kept box overlaps
        them by DUPLICATE_IOU or more."""
        if len(boxes) < 2:
            return np.arange(len(boxes))
        overlap = box_iou(boxes, boxes)
        kept: list[int] = []
        for i in np.argsort(-scores, kind="stable").tolist():
            if all(overlap[i, j] < DUPLICATE_IOU for j in kept):
                kept.append(i)
        return np.array(sorted(kept), np.int64)


def make_tracker(kind: str, track_threshold: float = DEFAULT_TRACK_THRESHOLD,
                 frame_rate: float = 30.0, per_class: bool = True,
                 **library: Any) -> ObjectTracker | None:
    """An ObjectTracker, or None for "none"; TrackingError for an unknown or missing one.
    ``library``: more keyword arguments of the library's tracker (the benchmark's sweeps)."""
    if kind == "none":
        return None
    return ObjectTracker(kind, track_threshold, frame_rate, per_class, **library)


def track_detections(tracker: ObjectTracker | None, boxes_xyxy: np.ndarray, scores: np.ndarray,
                     class_ids: np.ndarray) -> tuple[list[int], np.ndarray]:
    """One frame's track ids (NO_ID: untracked, or no tracker) and the class ids to publish:
    a tracked detection takes its track's voted class, so class-agnostic tracking keeps the
    class stable through a flip of the detector (per class a track only ever sees one class,
    so the vote changes nothing). What the node and suhd-bag both do with their detections."""
    if tracker is None:
        return [NO_ID] * len(scores), class_ids
    track_ids = tracker.update(boxes_xyxy, scores, class_ids)
    return np.asarray(track_ids).tolist(), tracker.classes(track_ids, class_ids)

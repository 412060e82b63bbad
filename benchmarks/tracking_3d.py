"""3D centres from depth and tracking IDs, measured on the moving synthetic sequence.

One sequence (suhd_ros/synthetic/sequence.py, 640 x 480 by default) is drawn frame by frame and
run through the Detector (the default model, fused engine, no spike counting). Then:

- 3D: each detection matched to a truth object (IoU >= 0.5, Hungarian) is located with
  geometry.boxes_to_3d on the frame's 16UC1 depth; the error is the distance between its centre
  and the truth's 3D box centre, in metres and as a share of the truth's distance. The same on
  the truth boxes says what depth -> 3D costs without the detector's box error.
- Tracking: MOTA, IDF1, ID switches (motmetrics, IoU >= 0.5) for each tracker on the detector's
  boxes, and on the truth boxes (an oracle detector: what the tracker alone loses). Tracks on
  mostly hidden objects (drawn but not labelled) are ignored, neither hits nor false positives.
- Cost per frame at the sequence's size, as the node pays it: tracker.update, and 3D
  (DepthInputs.locate with the depth Image decoded, Detection3DArray and MarkerArray built);
  p50 / p95 over the frames, one thread, as this thread's CPU time (what the step costs) and
  wall time (what it took with other processes on the cores).

The detector's boxes are cached per sequence with --cache DIR (down to score CACHE_SCORE; a
threshold is then a filter, the same as detecting at it): benchmarks/tracking_sweep.py replays
the validation sequences' caches to choose the tracker settings; this script's seed 2026 is
the test sequence, never used for choosing.

  .venv/bin/python benchmarks/tracking_3d.py --frames 1000 --cache /tmp/tracking-cache
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import motmetrics
import numpy as np
import torch
from builtin_interfaces.msg import Time
from scipy.optimize import linear_sum_assignment
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from suhd_ros.detector import Detector
from suhd_ros.geometry import Intrinsics, box_iou, boxes_to_3d, depth_in_metres
from suhd_ros.ros.depth_inputs import DepthInputs, detections_3d_to_msg
from suhd_ros.ros.markers import MarkerSet
from suhd_ros.synthetic.sequence import SceneSequence, SequenceFrame
from suhd_ros.tracking import (
    DEFAULT_TRACK_THRESHOLD,
    DEFAULT_TRACKER,
    NO_ID,
    TRACKERS,
    make_tracker,
    track_detections,
)

MATCH_IOU = 0.5
CACHE_SCORE = 0.05  # detections kept in the cache: below every threshold swept
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes xyxy, scores, class ids


def match(truth: np.ndarray, found: np.ndarray) -> list[tuple[int, int]]:
    """(truth index, detection index) pairs with IoU >= MATCH_IOU, one to one."""
    if not len(truth) or not len(found):
        return []
    overlap = box_iou(truth, found)
    rows, cols = linear_sum_assignment(-overlap)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= MATCH_IOU]


def ignored(frame: SequenceFrame, boxes: np.ndarray) -> np.ndarray:
    """Detections of mostly hidden objects (drawn, not labelled): neither hits nor false
    positives, as in MOT benchmarks' ignore regions."""
    if not len(boxes) or not len(frame.hidden_boxes_xyxy):
        return np.zeros(len(boxes), bool)
    hidden = box_iou(boxes, frame.hidden_boxes_xyxy).max(axis=1) >= MATCH_IOU
    if len(frame.boxes_xyxy):
        hidden &= box_iou(boxes, frame.boxes_xyxy).max(axis=1) < MATCH_IOU
    return hidden


class TruthFrame(NamedTuple):
    """What tracking is scored on in one frame (a SequenceFrame without its pixels)."""

    boxes_xyxy: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray
    hidden_boxes_xyxy: np.ndarray


def truth_of(frame: SequenceFrame) -> TruthFrame:
    return TruthFrame(frame.boxes_xyxy, frame.class_ids, frame.track_ids,
                      frame.hidden_boxes_xyxy)


def above(detections: Detections, threshold: float) -> Detections:
    """The detections scoring at least ``threshold``: the same as detecting at that threshold
    (greedy NMS never lets a lower-scoring box suppress a higher one)."""
    boxes, scores, class_ids = detections
    keep = scores >= threshold
    return boxes[keep], scores[keep], class_ids[keep]


def _flat(arrays: list[np.ndarray], width: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated rows and the offsets that split them again (npz holds no lists)."""
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    rows = np.concatenate([np.asarray(a, dtype).reshape(-1, width) for a in arrays]) if arrays \
        else np.zeros((0, width), dtype)
    return rows, offsets


def _split(rows: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [rows[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def save_cache(path: Path, key: dict[str, float], truth: list[TruthFrame],
               detections: list[Detections]) -> None:
    """The sequence's truth and the detector's boxes (down to CACHE_SCORE), for sweeps."""
    arrays: dict[str, np.ndarray] = {"key": np.array([key[k] for k in sorted(key)])}
    for name, width, dtype, values in (
            ("truth_boxes", 4, np.float32, [t.boxes_xyxy for t in truth]),
            ("truth_classes", 1, np.int64, [t.class_ids for t in truth]),
            ("truth_ids", 1, np.int64, [t.track_ids for t in truth]),
            ("hidden_boxes", 4, np.float32, [t.hidden_boxes_xyxy for t in truth]),
            ("boxes", 4, np.float32, [d[0] for d in detections]),
            ("scores", 1, np.float32, [d[1] for d in detections]),
            ("classes", 1, np.int64, [d[2] for d in detections])):
        arrays[name], arrays[f"{name}_offsets"] = _flat(values, width, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_cache(path: Path, key: dict[str, float]
               ) -> tuple[list[TruthFrame], list[Detections]] | None:
    """What save_cache wrote, or None when there is none for these settings."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if not np.array_equal(data["key"], [key[k] for k in sorted(key)]):
            return None
        part = {name: _split(data[name], data[f"{name}_offsets"]) for name in (
            "truth_boxes", "truth_classes", "truth_ids", "hidden_boxes", "boxes", "scores",
            "classes")}
    truth = [TruthFrame(b, c.ravel(), i.ravel(), h) for b, c, i, h in zip(
        part["truth_boxes"], part["truth_classes"], part["truth_ids"], part["hidden_boxes"],
        strict=True)]
    detections = [(b, s.ravel(), c.ravel()) for b, s, c in zip(
        part["boxes"], part["scores"], part["classes"], strict=True)]
    return truth, detections


class CentreErrors:
    """3D centre errors of matched objects, accumulated frame by frame."""

    def __init__(self) -> None:
        self.errors: list[tuple[float, float]] = []  # (error [m], truth distance [m])
        self.matched = 0
        self.missing = 0  # matched, without enough valid depth

    def add(self, frame: SequenceFrame, depth_m: np.ndarray, found: np.ndarray,
            k: Intrinsics) -> None:
        pairs = match(frame.boxes_xyxy, found)
        located = boxes_to_3d(depth_m, found[[c for _, c in pairs]], k)
        for (r, _), box in zip(pairs, located, strict=True):
            self.matched += 1
            if box is None:
                self.missing += 1
                continue
            truth = frame.centers_m[r]
            self.errors.append((float(np.linalg.norm(np.subtract(box.center, truth))),
                                float(truth[2])))

    def line(self, name: str) -> str:
        values = np.array(self.errors, np.float64).reshape(-1, 2)
        errors, fractions = values[:, 0], values[:, 0] / values[:, 1]
        return (f"  {name:15s} median {np.median(errors):.3f} m ({100 * np.median(fractions):.2f}"
                f" % of distance), p95 {np.percentile(errors, 95):.3f} m "
                f"({100 * np.percentile(fractions, 95):.2f} %); {self.matched} matched, "
                f"{self.missing} without enough depth")


class Stopwatch:
    """Appends (wall, this thread's CPU) milliseconds of a with-block to a list: on a shared
    machine the CPU time says what the step costs, the wall time what it took under load."""

    def __init__(self, times: list[tuple[float, float]]) -> None:
        self.times = times

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()

    def __exit__(self, *_exc: Any) -> None:
        self.times.append(((time.perf_counter() - self._wall) * 1e3,
                           (time.thread_time() - self._cpu) * 1e3))


def tracking_metrics(frames: Sequence[TruthFrame], detections: list[Detections],
                     kind: str = DEFAULT_TRACKER, **settings: Any
                     ) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """motmetrics' summary for one tracker over the sequence, and its times per frame (wall,
    CPU) [ms].

    ``detections`` are what the tracker is given; a detection counts as output when the
    tracker gave it an ID (an unconfirmed track's first frames count as misses, as the node
    publishes them without an ID)."""
    tracker = make_tracker(kind, **settings)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    times: list[tuple[float, float]] = []
    for frame, (boxes, scores, class_ids) in zip(frames, detections, strict=True):
        with Stopwatch(times):  # what the node pays: IDs and the voted classes
            ids = np.array(track_detections(tracker, boxes, scores, class_ids)[0], np.int64)
        tracked = (ids != NO_ID) & ~ignored(frame, boxes)
        distance = 1.0 - box_iou(frame.boxes_xyxy, boxes[tracked])
        distance[distance > 1.0 - MATCH_IOU] = np.nan
        accumulator.update(frame.track_ids.tolist(), ids[tracked].tolist(), distance)
    summary = motmetrics.metrics.create().compute(
        accumulator, metrics=["mota", "idf1", "num_switches", "recall", "precision",
                              "num_unique_objects", "mostly_tracked"], name=kind)
    return {key: float(summary[key].iloc[0]) for key in summary.columns}, times


class DepthCost:
    """ms per frame of the node's 3D step: decode, match, locate, both messages."""

    def __init__(self, k: Intrinsics) -> None:
        self.inputs = DepthInputs(queue_depth=10, window_ns=20_000_000)
        self.inputs.on_info(CameraInfo(width=k.width, height=k.height, k=k.k()))
        self.markers = MarkerSet()
        self.times: list[tuple[float, float]] = []
        self.marker_times: list[tuple[float, float]] = []

    def add(self, frame: SequenceFrame, detections: Detections) -> None:
        found, scores, class_ids = detections
        height, width = frame.depth_mm.shape
        header = Header(frame_id="camera_optical_frame", stamp=Time(sec=frame.index))
        self.inputs.on_depth(Image(header=header, height=height, width=width, encoding="16UC1",
                                   step=2 * width, data=frame.depth_mm.tobytes()))
        ids = [str(i) for i in range(len(found))]
        with Stopwatch(self.times):
            located = self.inputs.locate(header, (width, height), found)
            detections_3d_to_msg(header, located, scores, class_ids, ids)
        with Stopwatch(self.marker_times):  # the node builds them only while rviz2 listens
            self.markers.update(header, located, class_ids, list(range(len(found))),
                                ["x"] * 10)


def sequence_detections(args: argparse.Namespace, with_3d: bool
                        ) -> tuple[list[TruthFrame], list[Detections], list[str],
                                   list[tuple[float, float]]]:
    """Truth and detections (down to CACHE_SCORE) of the sequence, from the cache when it has
    them; with_3d: also the 3D errors and cost, which draw the frames (report lines, and the 3D
    step's times per frame)."""
    key = {"seed": args.seed, "frames": args.frames, "width": args.width,
           "height": args.height, "score": CACHE_SCORE, "model": float(bool(args.model))}
    path = Path(args.cache) / f"seed{args.seed}_{args.frames}_{args.width}x{args.height}.npz" \
        if args.cache else None
    cached = load_cache(path, key) if path else None
    lines: list[str] = []
    if cached is not None and not with_3d:
        return *cached, [f"detections from {path}"], []
    detector = None if cached else Detector(args.model, "cpu", threads=1)
    sequence = SceneSequence(args.seed, args.width, args.height)
    errors = {"detector boxes": CentreErrors(), "truth boxes": CentreErrors()}
    cost = DepthCost(sequence.k)
    truth, detections = [], []
    began = time.perf_counter()
    for index in range(args.frames):
        frame = sequence.next_frame()
        if cached:
            found = cached[1][index]
        else:
            result = detector.detect([frame.image], score_threshold=CACHE_SCORE,
                                     count_spikes=False)[0]
            found = (result.boxes_xyxy, result.scores, result.class_ids)
        truth.append(truth_of(frame))
        detections.append(found)
        if with_3d:
            published = above(found, args.score_threshold)
            depth_m = depth_in_metres(frame.depth_mm)
            errors["detector boxes"].add(frame, depth_m, published[0], sequence.k)
            errors["truth boxes"].add(frame, depth_m, frame.boxes_xyxy, sequence.k)
            cost.add(frame, published)
    lines.append(f"{args.frames} frames of {args.width}x{args.height} (seed {args.seed}), "
                 f"{sum(len(t.track_ids) for t in truth)} truth objects, "
                 f"{len({i for t in truth for i in t.track_ids.tolist()})} identities, "
                 f"{'read' if cached else 'detected'} in {time.perf_counter() - began:.0f} s")
    if path and not cached:
        save_cache(path, key, truth, detections)
    if with_3d:
        lines.append("\n3D centre error (matched at IoU >= 0.5)")
        lines += [e.line(name) for name, e in errors.items()]
        lines.append(f"\nAdded cost per frame of 3D at {args.width}x{args.height} [ms], one "
                     f"thread (decode depth Image, locate, Detection3DArray): "
                     f"{_percentiles(cost.times)}; markers, while rviz2 shows them: "
                     f"{_percentiles(cost.marker_times)}")
    return truth, detections, lines, cost.times


def _percentiles(times: list[tuple[float, float]]) -> str:
    wall, cpu = np.array(times).reshape(-1, 2).T
    return (f"CPU p50 {np.percentile(cpu, 50):.2f} p95 {np.percentile(cpu, 95):.2f}, wall p50 "
            f"{np.percentile(wall, 50):.2f} p95 {np.percentile(wall, 95):.2f}")


def add_sequence_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--model", default="", help="model file; empty = the embedded default")
    p.add_argument("--cache", default="",
                   help="folder of cached detections (written on the first run of a sequence, "
                   "read on the next: the detector is the slow part)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sequence_arguments(p)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--score-threshold", type=float, default=0.25,
                   help="the node's: detections published (and located in 3D)")
    p.add_argument("--trackers", nargs="+",
                   default=[DEFAULT_TRACKER, *(k for k in TRACKERS if k not in ("none",
                                                                              DEFAULT_TRACKER))])
    p.add_argument("--track-threshold", type=float, default=DEFAULT_TRACK_THRESHOLD)
    p.add_argument("--tracker-input", type=float, default=None,
                   help="least score of the detections the tracker is given (default: "
                   "--score-threshold, as the node gives it what it publishes)")
    p.add_argument("--class-agnostic", action="store_true",
                   help="one tracker for all classes (the node's track_per_class:=false)")
    args = p.parse_args()
    torch.set_num_threads(1)
    truth, found, lines, times_3d = sequence_detections(args, with_3d=True)
    print("\n".join(lines))
    oracle = [(t.boxes_xyxy, np.full(len(t.boxes_xyxy), 0.9, np.float32), t.class_ids)
              for t in truth]
    args.tracker_input = args.score_threshold if args.tracker_input is None else \
        args.tracker_input
    given = [above(d, args.tracker_input) for d in found]

    print(f"\nTracking (motmetrics, IoU >= 0.5), "
          f"{'class-agnostic' if args.class_agnostic else 'per class'}, tracker "
          f"given detections >= {args.tracker_input:g}")
    print(f"  {'tracker':10s} {'input':9s} {'MOTA':>7s} {'IDF1':>7s} {'IDsw':>5s} "
          f"{'recall':>7s} {'prec.':>7s} {'MT':>4s}/{'GT':<4s} update ms")
    combined: list[str] = []
    for kind in args.trackers:
        for source, detections in (("detector", given), ("truth", oracle)):
            m, times = tracking_metrics(truth, detections, kind,
                                        track_threshold=args.track_threshold,
                                        per_class=not args.class_agnostic)
            print(f"  {kind:10s} {source:9s} {m['mota']:7.3f} {m['idf1']:7.3f} "
                  f"{int(m['num_switches']):5d} {m['recall']:7.3f} {m['precision']:7.3f} "
                  f"{int(m['mostly_tracked']):4d}/{int(m['num_unique_objects']):<4d} "
                  f"{_percentiles(times)}")
            if source == "detector":  # the figure: both features, frame by frame
                both = np.add(np.array(times).reshape(-1, 2), np.array(times_3d).reshape(-1, 2))
                combined.append(f"  {kind:10s} + 3D  {_percentiles(both.tolist())}")
    print("\nTracking plus 3D per frame [ms] (the same frames' times added):")
    print("\n".join(combined))


if __name__ == "__main__":
    main()

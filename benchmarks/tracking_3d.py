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
  p50 / p95 over the frames, one thread (CPU noise from other processes shows in p95).

  .venv/bin/python benchmarks/tracking_3d.py --frames 1000
"""

from __future__ import annotations

import argparse
import time

import motmetrics
import numpy as np
import torch
from builtin_interfaces.msg import Time
from scipy.optimize import linear_sum_assignment
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from suhd_ros.detector import Detector
from suhd_ros.geometry import Intrinsics, boxes_to_3d, depth_in_metres
from suhd_ros.ros.depth_inputs import DepthInputs, detections_3d_to_msg
from suhd_ros.ros.markers import MarkerSet
from suhd_ros.synthetic.sequence import SceneSequence, SequenceFrame
from suhd_ros.tracking import DEFAULT_TRACK_THRESHOLD, NO_ID, TRACKERS, make_tracker

MATCH_IOU = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, [len(a), len(b)] (motmetrics' own needs numpy < 2)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(truth: np.ndarray, found: np.ndarray) -> list[tuple[int, int]]:
    """(truth index, detection index) pairs with IoU >= MATCH_IOU, one to one."""
    if not len(truth) or not len(found):
        return []
    overlap = iou(truth, found)
    rows, cols = linear_sum_assignment(-overlap)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= MATCH_IOU]


def ignored(frame: SequenceFrame, boxes: np.ndarray) -> np.ndarray:
    """Detections of mostly hidden objects (drawn, not labelled): neither hits nor false
    positives, as in MOT benchmarks' ignore regions."""
    if not len(boxes) or not len(frame.hidden_boxes_xyxy):
        return np.zeros(len(boxes), bool)
    hidden = iou(boxes, frame.hidden_boxes_xyxy).max(axis=1) >= MATCH_IOU
    if len(frame.boxes_xyxy):
        hidden &= iou(boxes, frame.boxes_xyxy).max(axis=1) < MATCH_IOU
    return hidden


def centre_errors(frames: list[SequenceFrame], boxes: list[np.ndarray], k: Intrinsics
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(errors [m], errors / distance, matched objects, matched ones without enough depth)."""
    errors, matched, missing = [], 0, 0
    for frame, found in zip(frames, boxes, strict=True):
        pairs = match(frame.boxes_xyxy, found)
        located = boxes_to_3d(depth_in_metres(frame.depth_mm), found[[c for _, c in pairs]], k)
        for (r, _), box in zip(pairs, located, strict=True):
            matched += 1
            if box is None:
                missing += 1
                continue
            truth = frame.centers_m[r]
            errors.append((np.linalg.norm(np.subtract(box.center, truth)), truth[2]))
    values = np.array(errors, np.float64).reshape(-1, 2)
    return values[:, 0], values[:, 0] / values[:, 1], matched, missing


def tracking_metrics(kind: str, frames: list[SequenceFrame],
                     detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     track_threshold: float = DEFAULT_TRACK_THRESHOLD, per_class: bool = True
                     ) -> tuple[dict[str, float], list[float]]:
    """motmetrics' summary for one tracker over the sequence, and its update times [ms]."""
    tracker = make_tracker(kind, track_threshold, per_class=per_class)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    times = []
    for frame, (boxes, scores, class_ids) in zip(frames, detections, strict=True):
        began = time.perf_counter()
        ids = tracker.update(boxes, scores, class_ids)
        times.append((time.perf_counter() - began) * 1e3)
        tracked = (ids != NO_ID) & ~ignored(frame, boxes)
        distance = 1.0 - iou(frame.boxes_xyxy, boxes[tracked])
        distance[distance > 1.0 - MATCH_IOU] = np.nan
        accumulator.update(frame.track_ids.tolist(), ids[tracked].tolist(), distance)
    summary = motmetrics.metrics.create().compute(
        accumulator, metrics=["mota", "idf1", "num_switches", "recall", "precision",
                              "num_unique_objects", "mostly_tracked"], name=kind)
    return {key: float(summary[key].iloc[0]) for key in summary.columns}, times


def depth_costs(frames: list[SequenceFrame], boxes: list[np.ndarray],
                results: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[float]:
    """ms per frame of the node's 3D step: decode, match, locate, both messages."""
    height, width = frames[0].depth_mm.shape
    seq_k = SceneSequence(0, width, height).k
    inputs = DepthInputs(queue_depth=10, window_ns=20_000_000)
    markers = MarkerSet()
    inputs.on_info(CameraInfo(width=width, height=height, k=seq_k.k()))
    times = []
    for frame, found, (_, scores, class_ids) in zip(frames, boxes, results, strict=True):
        header = Header(frame_id="camera_optical_frame", stamp=Time(sec=frame.index))
        inputs.on_depth(Image(header=header, height=height, width=width, encoding="16UC1",
                              step=2 * width, data=frame.depth_mm.tobytes()))
        ids = [str(i) for i in range(len(found))]
        began = time.perf_counter()
        located = inputs.locate(header, (width, height), found)
        detections_3d_to_msg(header, located, scores, class_ids, ids)
        markers.update(header, located, class_ids, list(range(len(found))), ["x"] * 10)
        times.append((time.perf_counter() - began) * 1e3)
    return times


def _percentiles(values: list[float] | np.ndarray) -> str:
    return f"p50 {np.percentile(values, 50):.3f}  p95 {np.percentile(values, 95):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--model", default="", help="model file; empty = the embedded default")
    p.add_argument("--score-threshold", type=float, default=0.25)
    p.add_argument("--trackers", nargs="+", default=[k for k in TRACKERS if k != "none"])
    p.add_argument("--track-threshold", type=float, default=DEFAULT_TRACK_THRESHOLD)
    p.add_argument("--class-agnostic", action="store_true",
                   help="one tracker for all classes (the node's track_per_class:=false)")
    args = p.parse_args()
    torch.set_num_threads(1)
    detector = Detector(args.model, "cpu", threads=1)
    sequence = SceneSequence(args.seed, args.width, args.height)
    k = Intrinsics(sequence.k.fx, sequence.k.fy, sequence.k.cx, sequence.k.cy,
                   args.width, args.height)
    frames, found = [], []
    began = time.perf_counter()
    for _ in range(args.frames):
        frame = sequence.next_frame()
        result = detector.detect([frame.image], score_threshold=args.score_threshold,
                                 count_spikes=False)[0]
        frames.append(frame)
        found.append((result.boxes_xyxy, result.scores, result.class_ids))
    print(f"{args.frames} frames of {args.width}x{args.height} (seed {args.seed}), "
          f"{sum(len(f.track_ids) for f in frames)} truth objects, "
          f"{len({t for f in frames for t in f.track_ids.tolist()})} identities, "
          f"detected in {time.perf_counter() - began:.0f} s")
    truth = [(f.boxes_xyxy, np.full(len(f.boxes_xyxy), 0.9, np.float32), f.class_ids)
             for f in frames]

    print("\n3D centre error (matched at IoU >= 0.5)")
    for name, boxes in (("detector boxes", [b for b, _, _ in found]),
                        ("truth boxes", [b for b, _, _ in truth])):
        errors, fractions, matched, missing = centre_errors(frames, boxes, k)
        print(f"  {name:15s} median {np.median(errors):.3f} m ({100 * np.median(fractions):.2f} "
              f"% of distance), p95 {np.percentile(errors, 95):.3f} m "
              f"({100 * np.percentile(fractions, 95):.2f} %); {matched} matched, {missing} "
              "without enough depth")

    print(f"\nTracking (motmetrics, IoU >= 0.5), "
          f"{'class-agnostic' if args.class_agnostic else 'one tracker per class'}")
    print(f"  {'tracker':10s} {'input':9s} {'MOTA':>7s} {'IDF1':>7s} {'IDsw':>5s} "
          f"{'recall':>7s} {'prec.':>7s} {'MT':>4s}/{'GT':<4s} update ms")
    for kind in args.trackers:
        for source, detections in (("detector", found), ("truth", truth)):
            m, times = tracking_metrics(kind, frames, detections, args.track_threshold,
                                        not args.class_agnostic)
            print(f"  {kind:10s} {source:9s} {m['mota']:7.3f} {m['idf1']:7.3f} "
                  f"{int(m['num_switches']):5d} {m['recall']:7.3f} {m['precision']:7.3f} "
                  f"{int(m['mostly_tracked']):4d}/{int(m['num_unique_objects']):<4d} "
                  f"{_percentiles(times)}")

    print(f"\nAdded cost per frame at {args.width}x{args.height} [ms], one thread")
    print(f"  3D (decode depth Image, locate, Detection3DArray, markers): "
          f"{_percentiles(depth_costs(frames, [b for b, _, _ in found], found))}")


if __name__ == "__main__":
    main()

"""`make demo`: the synthetic camera and the spiking detector, live, with a score at the end.

One process, one SingleThreadedExecutor spinning three nodes (inference has its own thread;
rclpy's MultiThreadedExecutor busy-waits and starved it to about 1 fps here): `suhd_camera`
(procedural scenes of the benchmark's test split, with ground truth), `suhd_detector` (the
embedded default model) and a monitor that reads only what any ROS user could read: detections,
ground truth, the overlay and /diagnostics. About once a second it prints fps, latency,
detections per frame, energy per frame and mAP@0.5 so far; it saves overlay snapshots, and ends
with a summary (Ctrl-C ends early).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.evaluation.coco import evaluate_detections
from suhd_ros.paths import resolve_model_path
from suhd_ros.ros.camera_node import SuhdCameraNode
from suhd_ros.ros.conversions import diagnostic_values, image_to_rgb, msg_to_detections, stamp_ns
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.ros.fastdds import use_package_profile
from suhd_ros.synthetic.scenes import CLASS_NAMES

NAMESPACE = "/suhd_demo"
MAX_SCORED = 1000  # frames kept for mAP, so a long run keeps a bounded cost per second
ENERGY_KEYS = {"snn": "energy per frame SNN [J]", "ann": "energy per frame ANN [J]"}


@dataclass
class Scores:
    """What the monitor has seen so far."""

    truths: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # (ground truth, detections) of the newest frames; the live mAP is taken over these
    pairs: deque[tuple[tuple, tuple]] = field(default_factory=lambda: deque(maxlen=MAX_SCORED))
    latency_ms: list[float] = field(default_factory=list)
    detections: list[int] = field(default_factory=list)
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    energy_j: dict[str, float] = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)


class DemoMonitor(Node):
    """Scores detections against the camera's ground truth, matched by header stamp."""

    def __init__(self, width: int, height: int, output: Path, snapshot_every_s: float) -> None:
        super().__init__("suhd_demo_monitor", namespace=NAMESPACE)
        self.scores = Scores()
        self._size = (width, height)
        self._output = output
        self._snapshot_every_s = snapshot_every_s
        self._next_snapshot = time.monotonic()
        self.create_subscription(Detection2DArray, "image/ground_truth", self._on_truth, 50)
        self.create_subscription(Detection2DArray, "detections", self._on_detections, 50)
        self.create_subscription(Image, "overlay", self._on_overlay, 2)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_truth(self, msg: Detection2DArray) -> None:
        boxes, _, class_ids = msg_to_detections(msg)
        truths = self.scores.truths
        truths[stamp_ns(msg.header)] = (boxes, class_ids)
        if len(truths) > MAX_SCORED:  # frames the detector dropped never get their detections
            truths.pop(next(iter(truths)))

    def _on_detections(self, msg: Detection2DArray) -> None:
        now_ns = self.get_clock().now().nanoseconds
        truth = self.scores.truths.pop(stamp_ns(msg.header), None)
        self.scores.latency_ms.append((now_ns - stamp_ns(msg.header)) / 1e6)
        self.scores.detections.append(len(msg.detections))
        self.scores.arrivals.append(time.monotonic())
        if truth is not None:
            self.scores.pairs.append(((*truth, *self._size), msg_to_detections(msg)))

    def _on_overlay(self, msg: Image) -> None:
        if time.monotonic() < self._next_snapshot:
            return
        self._next_snapshot = time.monotonic() + self._snapshot_every_s
        path = self._output / f"overlay_{len(self.scores.snapshots):03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image_to_rgb(msg), cv2.COLOR_RGB2BGR))
        self.scores.snapshots.append(path)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": energy"):
                values = diagnostic_values(status)
                self.scores.energy_j = {k: float(values[v]) for k, v in ENERGY_KEYS.items()
                                        if v in values}


def _map(scores: Scores) -> dict[str, float]:
    if not scores.pairs:
        return {"map50": float("nan"), "map50_95": float("nan")}
    truths, detections = zip(*scores.pairs, strict=True)
    return evaluate_detections(list(truths), list(detections), num_classes=len(CLASS_NAMES))


def _fps(scores: Scores) -> float:
    arrivals = scores.arrivals
    if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
        return 0.0
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def _energy_text(energy_j: dict[str, float]) -> str:
    if "snn" not in energy_j:
        return "energy n/a"
    snn, ann = energy_j["snn"], energy_j.get("ann", float("nan"))
    return f"E/frame SNN {snn * 1e3:.3f} mJ, ANN {ann * 1e3:.3f} mJ ({ann / snn:.1f}x less)"


def live_line(elapsed_s: float, scores: Scores) -> str:
    """The once-a-second status line."""
    latency = np.median(scores.latency_ms[-20:]) if scores.latency_ms else float("nan")
    per_frame = np.mean(scores.detections[-20:]) if scores.detections else float("nan")
    return (f"[{elapsed_s:5.1f} s] {_fps(scores):4.1f} fps | latency {latency:6.0f} ms | "
            f"{per_frame:4.1f} det/frame | {_energy_text(scores.energy_j)} | "
            f"mAP@0.5 {_map(scores)['map50']:.3f} over {len(scores.pairs)} frames")


def summary(elapsed_s: float, scores: Scores) -> str:
    """The closing report."""
    metrics = _map(scores)
    latency = np.percentile(scores.latency_ms, [50, 95]) if scores.latency_ms else [np.nan] * 2
    lines = [
        f"suhd demo summary after {elapsed_s:.1f} s",
        f"  frames detected   {len(scores.detections)} ({len(scores.pairs)} scored against "
        f"ground truth), {len(scores.detections) / max(elapsed_s, 1e-9):.2f} fps on average",
        f"  latency           p50 {latency[0]:.0f} ms, p95 {latency[1]:.0f} ms (now - stamp)",
        f"  accuracy          mAP@0.5 {metrics['map50']:.3f}, "
        f"mAP@0.5:0.95 {metrics['map50_95']:.3f}",
        f"  energy            {_energy_text(scores.energy_j)}",
        f"  overlay snapshots {len(scores.snapshots)} in "
        f"{scores.snapshots[0].parent if scores.snapshots else '-'}",
    ]
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds to run; 0 = until Ctrl-C (default 20)")
    parser.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=320, help="camera image width")
    parser.add_argument("--height", type=int, default=240, help="camera image height")
    parser.add_argument("--model", default="", help="model file (default: the embedded one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--engine", default="fused", help="fused, reference or ann")
    parser.add_argument("--output", type=Path, default=Path("demo_output"),
                        help="folder for overlay snapshots (default demo_output/)")
    parser.add_argument("--snapshot-every", type=float, default=5.0,
                        help="seconds between overlay snapshots")
    return parser.parse_args(argv)


def _nodes(args: argparse.Namespace) -> tuple[SuhdCameraNode, SuhdDetectorNode, DemoMonitor]:
    camera = SuhdCameraNode(namespace=NAMESPACE, parameter_overrides=[
        Parameter("rate", value=args.rate), Parameter("width", value=args.width),
        Parameter("height", value=args.height)])
    detector = SuhdDetectorNode(namespace=NAMESPACE, parameter_overrides=[
        Parameter("model_path", value=args.model), Parameter("device", value=args.device),
        Parameter("engine", value=args.engine)])
    return camera, detector, DemoMonitor(args.width, args.height, args.output,
                                         args.snapshot_every)


def run(args: argparse.Namespace) -> int:
    model = resolve_model_path(args.model)
    if not model.is_file():
        print(f"suhd demo: no model file at {model}; the embedded default model is made by the "
              "project's training/conversion tools (see the README)", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    use_package_profile()  # before the first participant: large frames go by shared memory
    rclpy.init()
    camera, detector, monitor = _nodes(args)
    executor = SingleThreadedExecutor()
    for node in (camera, detector, monitor):
        executor.add_node(node)
    print(f"suhd demo: {model.name} on the synthetic camera ({args.width}x{args.height} at "
          f"{args.rate:g} Hz), one process; Ctrl-C ends early")
    start = next_line = time.monotonic()
    try:
        while args.duration <= 0 or time.monotonic() - start < args.duration:
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() >= next_line:
                next_line += 1.0
                print(live_line(time.monotonic() - start, monitor.scores), flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        elapsed_s = time.monotonic() - start
        detector.release_all()
        executor.shutdown()
        for node in (camera, detector, monitor):
            node.destroy_node()
        rclpy.try_shutdown()
    print(summary(elapsed_s, monitor.scores))
    return 0 if monitor.scores.detections else 1


def main(argv: list[str] | None = None) -> int:
    return run(_parse(argv))


if __name__ == "__main__":
    sys.exit(main())

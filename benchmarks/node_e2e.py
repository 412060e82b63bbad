"""The node end to end: camera, detector and this monitor in three processes over real DDS.

The camera publishes 640x480 scenes at 30 Hz with their ground truth (a small message with the
image's header), replaying 60 scenes drawn at its start, so that it costs what a camera driver
costs rather than what our scene generator does. The detector node runs as shipped (autostart,
fused engine, config defaults) and, like the launch file, both get the package's Fast DDS profile
(a run without it shows what Fast DDS's defaults do to 900 KiB images). The monitor here
receives the ground truth, the detections and /diagnostics; it never subscribes to the images,
so it adds no decoding load. The window opens 2 s after the first detection arrives (model
loaded, warmed up). Per frame published in the window: was it processed, and how long from its
stamp until its detections arrived here. Node overhead = that latency minus the inference time
the node reports in /diagnostics (mean over its last 100 frames, median over the run).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suhd_ros.ros.fastdds import PROFILE_VARIABLES, profile_environment, profile_path
from suhd_ros.ros.processes import start_node, stop_node

NAMESPACE = "/suhd_bench"
REPO = Path(__file__).resolve().parent.parent
INFERENCE_KEY = "inference per frame [ms]"
SETTLE_S = 2.0  # after the first detection, before the window opens
PROFILE = profile_path()
REPLAY_SCENES = 60


@dataclass
class Observed:
    """What the monitor saw, stamps in ns."""

    published: set[int] = field(default_factory=set)  # ground truth stamps in the window
    latency_ms: dict[int, float] = field(default_factory=dict)  # stamp -> arrival - stamp
    inference_ms: list[float] = field(default_factory=list)
    node_counts: dict[str, str] = field(default_factory=dict)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)


def ros_environment(profile: Path | None = None) -> dict[str, str]:
    """A private DDS domain on localhost, logs in build/ and the Fast DDS profile (None: Fast
    DDS's defaults). The node picks its CPU threads itself (parameter `threads`)."""
    env = {key: value for key, value in os.environ.items() if key not in PROFILE_VARIABLES}
    return {**env,
            "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(random.randint(1, 101))),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOG_DIR": str(REPO / "build" / "ros_log"),
            "ROS_HOME": str(REPO / "build" / "ros_home"),
            **(profile_environment(str(profile), env) if profile else {})}


def rss_mb(pid: int) -> float:
    """Resident set size of a process now, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Monitor:
    """The benchmark's own ROS node: ground truth, detections and diagnostics."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from vision_msgs.msg import Detection2DArray

        self.node = Node("suhd_bench_monitor", namespace=NAMESPACE)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.seen = Observed()
        self.recording = False
        self.first_detection = False
        self.node.create_subscription(Detection2DArray, "image/ground_truth", self._truth, 100)
        self.node.create_subscription(Detection2DArray, "detections", self._detections, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)

    def _truth(self, msg) -> None:
        from suhd_ros.ros.conversions import stamp_ns

        if self.recording:
            self.seen.published.add(stamp_ns(msg.header))

    def _detections(self, msg) -> None:
        from suhd_ros.ros.conversions import stamp_ns

        self.first_detection = True
        stamp = stamp_ns(msg.header)
        if stamp in self.seen.published:
            self.seen.latency_ms[stamp] = (self.node.get_clock().now().nanoseconds - stamp) / 1e6

    def _diagnostics(self, msg) -> None:
        from suhd_ros.ros.conversions import diagnostic_values

        for status in msg.status:
            values = diagnostic_values(status)
            if self.recording and INFERENCE_KEY in values:
                self.seen.inference_ms.append(float(values[INFERENCE_KEY]))
            if "dropped frames" in values or "frames received" in values:
                self.seen.node_counts.update(values)
            if "CPU threads" in values:
                self.seen.node_counts["CPU threads"] = values["CPU threads"]

    def spin_until(self, done: Callable[[], bool], timeout_s: float,
                   every_s: float = 1.0, every: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        next_every = time.monotonic()
        while time.monotonic() < deadline:
            if every and time.monotonic() >= next_every:
                every()
                next_every += every_s
            self.executor.spin_once(timeout_sec=0.02)
            if done():
                return True
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def run(model: str, duration_s: float, log_dir: Path, rate_hz: float = 30.0,
        size: tuple[int, int] = (640, 480), profile: Path | None = PROFILE,
        progress: Callable[[str], None] = print,
        parameters: dict[str, object] | None = None) -> dict:
    """Run the three processes for `duration_s` of steady state; the figures as a dict.
    `parameters`: more of the detector node's parameters (e.g. backend)."""
    env = ros_environment(profile)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "ROS_LOG_DIR", "ROS_HOME")})
    import rclpy

    log_dir.mkdir(parents=True, exist_ok=True)
    detector = start_node("detector_node", log_dir / "detector_node.log", NAMESPACE,
                          {"model_path": model, "device": "cpu", **(parameters or {})}, env)
    camera = None
    rclpy.init()
    monitor = Monitor()
    try:
        if not monitor.spin_until(
                lambda: monitor.node.count_publishers(f"{NAMESPACE}/detections") > 0, 120):
            raise RuntimeError(f"the detector node did not come up: see {log_dir}")
        camera = start_node("camera_node", log_dir / "camera.log", NAMESPACE, {
            "rate": rate_hz, "width": size[0], "height": size[1],
            "replay_scenes": REPLAY_SCENES}, env)
        if not monitor.spin_until(lambda: monitor.first_detection, 120):
            raise RuntimeError(f"no detections arrived: see {log_dir}")
        monitor.spin_until(lambda: False, SETTLE_S)
        progress(f"  node running: measuring {duration_s:g} s")
        monitor.recording = True
        start = time.monotonic()

        def sample() -> None:
            monitor.seen.rss_mb.append((time.monotonic() - start, rss_mb(detector.pid)))

        monitor.spin_until(lambda: False, duration_s, every=sample)
        monitor.recording = False
        sample()
        monitor.spin_until(lambda: False, 1.0)  # detections of the last frames still in flight
        stop_node(camera)
        camera = None
        return {**summarise(monitor.seen, duration_s, rate_hz, size),
                "fastdds_profile": profile.name if profile else None}
    finally:
        if camera is not None:
            stop_node(camera)
        monitor.close()
        rclpy.try_shutdown()
        stop_node(detector)


def summarise(seen: Observed, duration_s: float, rate_hz: float,
              size: tuple[int, int]) -> dict:
    """fps, drop rate, latency percentiles, overhead and RSS growth from what was observed."""
    latency = np.asarray(list(seen.latency_ms.values()))
    p50, p95 = np.percentile(latency, [50, 95]) if latency.size else (np.nan, np.nan)
    inference = float(np.median(seen.inference_ms)) if seen.inference_ms else float("nan")
    rss = [mb for _, mb in seen.rss_mb]
    return {
        "duration_s": duration_s, "camera_hz": rate_hz, "width": size[0], "height": size[1],
        "published": len(seen.published), "processed": len(latency),
        "fps": len(latency) / duration_s,
        "drop_rate": 1 - len(latency) / len(seen.published) if seen.published else float("nan"),
        "latency_p50_ms": float(p50), "latency_p95_ms": float(p95),
        "inference_ms": inference, "overhead_p50_ms": float(p50) - inference,
        "rss_start_mb": rss[0] if rss else float("nan"),
        "rss_end_mb": rss[-1] if rss else float("nan"),
        "rss_growth": rss[-1] / rss[0] - 1 if rss else float("nan"),
        "rss_mb": seen.rss_mb,
        "node_dropped": seen.node_counts.get("dropped frames", "?"),
        "node_received": seen.node_counts.get("frames received", "?"),
        "node_threads": seen.node_counts.get("CPU threads", "?"),
    }


def main() -> None:
    """One run from the command line, e.g. on another backend:
    .venv/bin/python benchmarks/node_e2e.py --backend openvino --duration 30"""
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="model file; empty = the embedded default")
    p.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    p.add_argument("--backend", default="torch", help="the node's backend parameter")
    args = p.parse_args()
    figures = run(args.model, args.duration, REPO / "build" / "bench_logs" / args.backend,
                  parameters={"backend": args.backend})
    print(json.dumps({k: v for k, v in figures.items() if k != "rss_mb"}, indent=1))


if __name__ == "__main__":
    main()

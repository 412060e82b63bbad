"""Soak test: suhd_detector fed 30 Hz 640x480 frames by a separate suhd_camera for N minutes.

Every few seconds it samples the detector process's resident memory, open file descriptors and
thread count (from /proc) with the detection rate and the node's own diagnostics, prints a
table, and writes a "## Soak" section into a Markdown file (replacing an earlier one). A leak
shows as RSS, fds or threads that keep growing; a healthy node is flat after its warm-up.
Not part of CI:

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--model PATH]

The model defaults to the embedded one (test/test_bench_smoke.py runs a few seconds of it on
the tests' tiny random model: the plumbing, not the real compute).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from suhd_ros.ros.fastdds import use_package_profile, user_profile
from suhd_ros.ros.processes import start_node, stop_node

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "/soak"
SECTION = "## Soak"
STARTUP_TIMEOUT_S = 60.0  # the window opens at the first detection, not at a fixed delay


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    input_hz: str
    detections_hz: float
    dropped: int
    latency_p50_ms: str


def proc_resources(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open fds, threads) of a live process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    rss_mb = int(fields["VmRSS"].split()[0]) / 1024
    return rss_mb, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"])


def resolve_model(spec: str | None) -> str:
    """A model path for the node: the one given, or the embedded default."""
    from suhd_ros.paths import default_model_path

    path = Path(spec).resolve() if spec else default_model_path()
    if not path.is_file():
        raise SystemExit(f"soak: no model file {path}"
                         + ("" if spec else " (the embedded one): give one with --model"))
    return str(path)


class Monitor:
    """A ROS node in this process counting detections and keeping the newest diagnostics."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from vision_msgs.msg import Detection2DArray

        self.node = Node("suhd_soak_monitor")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.detections = 0
        self.values: dict[str, dict[str, str]] = {}
        self.node.create_subscription(Detection2DArray, f"{NAMESPACE}/detections",
                                      self._on_detections, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_detections(self, msg: object) -> None:
        self.detections += 1

    def _on_diagnostics(self, msg: object) -> None:
        from suhd_ros.ros.conversions import diagnostic_values

        for status in msg.status:
            node, _, concern = status.name.partition(": ")
            if node == f"{NAMESPACE}/suhd_detector":  # the node's fully qualified name
                self.values[concern] = diagnostic_values(status)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.1, max(deadline - time.monotonic(), 0)))

    def spin_until_detecting(self, detector: subprocess.Popen, timeout_s: float) -> bool:
        """Spin until the first detections arrive (imports, model load and discovery done, which
        on a busy machine takes from 3 s to well over 10), the detector exits or time is up."""
        deadline = time.monotonic() + timeout_s
        while not self.detections and detector.poll() is None and time.monotonic() < deadline:
            self.spin_for(0.1)
        return self.detections > 0

    def value(self, concern: str, key: str, default: str = "-") -> str:
        return self.values.get(concern, {}).get(key, default)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def sample(monitor: Monitor, pid: int, start: float, last: tuple[float, int]) -> Sample:
    now = time.monotonic()
    rss_mb, fds, threads = proc_resources(pid)
    hz = (monitor.detections - last[1]) / max(now - last[0], 1e-3)
    latency = monitor.value("latency", "latency p50 [ms]")
    input_hz = monitor.value("input", "input rate [Hz]")
    return Sample(now - start, rss_mb, fds, threads, input_hz, hz,
                  int(monitor.value("output", "dropped frames", "0")), latency)


HEADER = (f"{'t [s]':>7} {'RSS [MB]':>9} {'fds':>5} {'threads':>7} {'in [Hz]':>8} "
          f"{'det [Hz]':>8} "
          f"{'dropped':>8} {'lat p50 [ms]':>12}")


def row(s: Sample) -> str:
    return (f"{s.t_s:7.0f} {s.rss_mb:9.1f} {s.fds:5d} {s.threads:7d} {s.input_hz:>8} "
            f"{s.detections_hz:8.1f} "
            f"{s.dropped:8d} {s.latency_p50_ms:>12}")


def rss_slope_mb_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, over the second half (after the warm-up)."""
    tail = samples[len(samples) // 2:]
    if len(tail) < 2:
        return 0.0
    mean_t = sum(s.t_s for s in tail) / len(tail)
    mean_r = sum(s.rss_mb for s in tail) / len(tail)
    var = sum((s.t_s - mean_t) ** 2 for s in tail)
    cov = sum((s.t_s - mean_t) * (s.rss_mb - mean_r) for s in tail)
    return 60.0 * cov / var if var else 0.0


def summary(samples: list[Sample], monitor: Monitor, exit_codes: dict[str, int]) -> list[str]:
    first, last = samples[0], samples[-1]
    return [
        f"RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB (second-half slope "
        f"{rss_slope_mb_per_min(samples):+.2f} MB/min)",
        f"fds {min(s.fds for s in samples)}..{max(s.fds for s in samples)}, "
        f"threads {min(s.threads for s in samples)}..{max(s.threads for s in samples)}",
        f"detections received {monitor.detections}; node: processed "
        f"{monitor.value('output', 'frames processed')}, dropped "
        f"{monitor.value('output', 'dropped frames')}, rejected "
        f"{monitor.value('input', 'rejected frames')}, inference errors "
        f"{monitor.value('device and model', 'inference errors')}",
        "exit status after SIGINT: " + ", ".join(f"{k} {v}" for k, v in exit_codes.items()),
    ]


def markdown(args: argparse.Namespace, model: str, samples: list[Sample],
             lines: list[str]) -> str:
    """The "## Soak" section: settings, summary, and the samples (at most ~30 rows)."""
    every = max(1, len(samples) // 30)
    table = ["| t [s] | RSS [MB] | fds | threads | input [Hz] | detections [Hz] | dropped "
             "| latency p50 [ms] |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {s.t_s:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.threads} | {s.input_hz} | "
              f"{s.detections_hz:.1f} | {s.dropped} | {s.latency_p50_ms} |"
              for s in samples[::every]]
    return "\n".join([
        SECTION, "",
        f"`benchmarks/soak.py --minutes {args.minutes:g}` on {time.strftime('%Y-%m-%d')}: "
        f"suhd_camera {args.width}x{args.height} at {args.rate:g} Hz, suhd_detector "
        f"engine {args.engine} on {args.device}, model `{Path(model).name}`, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; sampled every {args.interval:g} s; "
        f"Fast DDS profile: `{Path(user_profile() or 'none').name}`.", "",
        *[f"- {line}" for line in lines], "", *table, ""])


def _section_span(lines: list[str]) -> tuple[int, int] | None:
    """Line range of the "## Soak" section: its heading up to the next "## " heading."""
    if SECTION not in lines:
        return None
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return start, end


def read_section(path: Path) -> str | None:
    """The file's "## Soak" section, if it has one (run_all.py keeps it when it rewrites)."""
    lines = path.read_text().splitlines() if path.exists() else []
    span = _section_span(lines)
    return "\n".join(lines[span[0]:span[1]]) + "\n" if span else None


def write_section(path: Path, section: str) -> None:
    """Replace the file's "## Soak" section (up to the next "## " heading), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    span = _section_span(lines)
    if span:
        start, end = span
        lines[start:end] = section.rstrip("\n").splitlines() + ([""] if end < len(lines) else [])
    else:
        lines += ["", *section.rstrip("\n").splitlines()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--model", default=None, help="model file (default: the embedded one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--engine", default="fused")
    p.add_argument("--markdown", type=Path, default=REPO / "docs" / "benchmarks.md",
                   help="file whose '## Soak' section is written")
    p.add_argument("--no-markdown", action="store_true")
    return p.parse_args()


def run(args: argparse.Namespace, workdir: Path) -> int:
    import rclpy

    model = resolve_model(args.model)
    rclpy.init()
    monitor = Monitor()
    detector = start_node("detector_node", workdir / "detector.log", NAMESPACE, {
        "model_path": model, "device": args.device, "engine": args.engine})
    camera = start_node("camera_node", workdir / "camera.log", NAMESPACE, {
        "rate": args.rate, "width": args.width, "height": args.height})
    samples: list[Sample] = []
    try:
        if not monitor.spin_until_detecting(detector, STARTUP_TIMEOUT_S):
            print(f"soak: no detections within {STARTUP_TIMEOUT_S:g} s of the start; see "
                  f"{workdir / 'detector.log'}")
            return 1
        start = last_t = time.monotonic()
        last_count = monitor.detections
        print(HEADER)
        while time.monotonic() - start < args.minutes * 60:
            monitor.spin_for(args.interval)
            if detector.poll() is not None:
                print(f"soak: the detector exited with {detector.returncode}; see "
                      f"{workdir / 'detector.log'}")
                return 1
            samples.append(sample(monitor, detector.pid, start, (last_t, last_count)))
            last_t, last_count = time.monotonic(), monitor.detections
            print(row(samples[-1]), flush=True)
    finally:
        exit_codes = {"camera": stop_node(camera, timeout_s=10.0),
                      "detector": stop_node(detector, timeout_s=10.0)}
        monitor.close()
        rclpy.try_shutdown()
    lines = summary(samples, monitor, exit_codes)
    print("\n".join(lines))
    if not args.no_markdown:
        write_section(args.markdown, markdown(args, model, samples, lines))
        print(f"soak: wrote the '{SECTION}' section of {args.markdown}")
    return 0 if exit_codes["detector"] == 0 else 1


def main() -> int:
    args = parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_package_profile()  # as the launch file does: 640x480 frames need it
    with tempfile.TemporaryDirectory(prefix="suhd_soak_") as workdir:
        return run(args, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())

"""The detector node's figures: frame counters per camera, windows over the last frames, errors.

No ROS here: the node updates these under its own lock and publishes them about once a second
(suhd_ros/ros/diagnostics.py makes the messages), so rates, percentiles and means have unit
tests without DDS.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields, replace

import numpy as np

from suhd_ros.snn.energy import FrameEnergy

STATS_WINDOW = 100  # frames the latency / inference / energy figures are taken over


@dataclass
class FrameCounts:
    """Frame counters of one camera; monotonic, so rates come from the difference of two."""

    received: int = 0
    rejected: int = 0
    dropped: int = 0
    processed: int = 0
    overlays: int = 0
    incompatible_qos: int = 0

    def __sub__(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(**{f.name: getattr(self, f.name) - getattr(other, f.name)
                              for f in fields(self)})


@dataclass(frozen=True)
class CameraReport:
    """One camera at one report: totals and what came since the previous report.

    A snapshot, so a diagnostics message says the same of the camera in all its statuses.
    """

    totals: FrameCounts
    new: FrameCounts
    period_s: float  # since the previous report
    idle_s: float  # since the newest frame arrived (inf: none yet)
    last_reject: str

    @property
    def input_hz(self) -> float:
        return self.new.received / self.period_s

    @property
    def output_hz(self) -> float:
        return self.new.processed / self.period_s


@dataclass
class CameraStatistics:
    """One camera's counters, when its newest frame arrived and why the last one was rejected."""

    counts: FrameCounts = field(default_factory=FrameCounts)
    last_input: float = float("-inf")  # time.monotonic() of the newest frame
    last_reject: str = ""
    output_hz: float = 0.0  # at the previous report: the overlay shows it between reports
    _reported: FrameCounts = field(default_factory=FrameCounts, init=False, repr=False)

    def receive(self, now: float) -> None:
        self.counts.received += 1
        self.last_input = now

    def reject(self, reason: str) -> None:
        self.counts.rejected += 1
        self.last_reject = reason

    def process(self, rendered: bool) -> None:
        self.counts.processed += 1
        self.counts.overlays += int(rendered)

    def report(self, now: float, period_s: float) -> CameraReport:
        """The figures since the previous report; the next report starts from here."""
        totals = replace(self.counts)
        report = CameraReport(totals, totals - self._reported, period_s, now - self.last_input,
                              self.last_reject)
        self._reported = totals
        self.output_hz = report.output_hz
        return report


class FrameStatistics:
    """What the node measures over all its cameras: latency, inference time and energy of the
    last `size` frames, which batches get their spikes counted, and the time between reports.

    Windows, not running means, so the figures follow a change of load or settings within
    seconds.
    """

    def __init__(self, now: float, size: int = STATS_WINDOW) -> None:
        self.latency_ms: deque[float] = deque(maxlen=size)
        self.inference_ms: deque[float] = deque(maxlen=size)
        self.energy: deque[FrameEnergy] = deque(maxlen=size)
        self.energy_frames = 0  # frames whose spikes were counted, ever
        self._batches = 0
        self._last_report = now

    def count_spikes(self, energy_every_n: int) -> bool:
        """Whether to count this batch's spikes: one batch in energy_every_n (0: none), since
        counting costs about as much again as the inference."""
        count = energy_every_n > 0 and self._batches % energy_every_n == 0
        self._batches += 1
        return count

    def add(self, stamp_ns: int, now_ns: int, inference_s: float,
            energy: FrameEnergy | None) -> None:
        """One processed frame: latency = now - its image stamp, unless the stamp was unset (0)."""
        if stamp_ns:
            self.latency_ms.append((now_ns - stamp_ns) / 1e6)
        self.inference_ms.append(inference_s * 1e3)
        if energy is not None:
            self.energy.append(energy)
            self.energy_frames += 1

    def report_period(self, now: float) -> float:
        """Seconds since the previous report, which ends now (at least 1 ms: rates stay finite)."""
        period_s = max(now - self._last_report, 1e-3)
        self._last_report = now
        return period_s

    def latency_percentiles_ms(self, *percents: float) -> list[float]:
        """The latency percentiles asked for; an empty window gives 0.0 for each."""
        if not self.latency_ms:
            return [0.0] * len(percents)
        return [float(p) for p in np.percentile(self.latency_ms, percents)]

    def mean_inference_ms(self) -> float:
        return float(np.mean(self.inference_ms)) if self.inference_ms else 0.0

    def mean_energy(self) -> FrameEnergy | None:
        """The energy figures averaged over the window; None before the first counted frame."""
        return FrameEnergy.mean(list(self.energy)) if self.energy else None


@dataclass
class InferenceErrors:
    """Inference failures: how many, the newest, and how many since the previous report."""

    total: int = 0
    last: str = ""
    new: int = 0

    def add(self, error: Exception) -> str:
        """Count the error; its text ("KeyError: 'x'") is returned for the log."""
        self.last = f"{type(error).__name__}: {error}"
        self.total += 1
        self.new += 1
        return self.last

    def report(self) -> InferenceErrors:
        """These figures as they stand; the next report counts new errors from here."""
        snapshot = replace(self)
        self.new = 0
        return snapshot


def engineering(value: float, unit: str) -> str:
    """A short engineering-notation figure for the overlay ("4.6 mJ"); ASCII only for OpenCV."""
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def overlay_line(output_hz: float, statistics: FrameStatistics) -> str:
    """The overlay's info line: rate, median latency and, once counted, energy per frame."""
    line = f"{output_hz:.1f} fps  latency {statistics.latency_percentiles_ms(50)[0]:.0f} ms"
    energy = statistics.mean_energy()
    if energy is not None:
        line += (f"  E/frame SNN {engineering(energy.energy_snn_j, 'J')}"
                 f" ANN {engineering(energy.energy_ann_j, 'J')}")
    return line

"""What /diagnostics says, built from plain figures: names, levels, messages and values, with no
node, no rclpy.init and no DDS."""

from __future__ import annotations

from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from suhd_ros.detector import Detector
from suhd_ros.frame_statistics import (
    CameraReport,
    CameraStatistics,
    FrameCounts,
    FrameStatistics,
    InferenceErrors,
)
from suhd_ros.ros import diagnostics
from suhd_ros.ros.conversions import diagnostic_values
from suhd_ros.snn.energy import FrameEnergy

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
NODE = "/ns/suhd_detector"


def _report(new: FrameCounts | None = None, idle_s: float = 0.1, **totals: int) -> CameraReport:
    totals_counts = FrameCounts(**totals)
    return CameraReport(totals=totals_counts, new=new or FrameCounts(), period_s=0.5,
                        idle_s=idle_s, last_reject="")


def test_status_names_are_the_node_the_concern_and_the_camera() -> None:
    assert diagnostics.status_name(NODE, "latency") == "/ns/suhd_detector: latency"
    assert diagnostics.status_name(NODE, "input", "left") == "/ns/suhd_detector: input (left)"
    statuses = diagnostics.camera_statuses(NODE, "left", "/left/image", _report(), True, True)
    assert [s.name for s in statuses] == [f"{NODE}: input (left)", f"{NODE}: output (left)"]
    single = diagnostics.camera_statuses(NODE, "", "image", _report(), True, True)
    assert [s.name for s in single] == [f"{NODE}: input", f"{NODE}: output"]


def test_input_status_reports_totals_and_the_rate_of_the_period() -> None:
    camera = CameraStatistics()
    for t in (1.0, 1.1, 1.2):
        camera.receive(t)
    camera.reject("unsupported encoding 'yuv420'")
    camera.counts.incompatible_qos = 2
    camera.report(now=1.3, period_s=1.0)  # the problems are in the previous period now
    camera.receive(1.4)
    status = diagnostics.input_status("in", "/cam/image", camera.report(1.5, 0.5), active=True)
    assert (status.name, status.level, status.message) == ("in", OK, "receiving")
    assert diagnostic_values(status) == {
        "topic": "/cam/image", "input rate [Hz]": "2", "frames received": "4",
        "rejected frames": "1", "last reject reason": "unsupported encoding 'yuv420'",
        "incompatible QoS events": "2"}


@pytest.mark.parametrize(("report", "active", "level", "message"), [
    (_report(), False, OK, "inactive"),
    (_report(idle_s=float("inf")), False, OK, "inactive"),
    (_report(new=FrameCounts(rejected=3)), True, WARN, "3 frames rejected"),
    (_report(new=FrameCounts(incompatible_qos=1)), True, WARN,
     "a publisher has an incompatible QoS"),
    (_report(idle_s=3.5), True, WARN, "no input for more than 3 s"),
    (_report(new=FrameCounts(rejected=1, incompatible_qos=1), idle_s=float("inf")), True, WARN,
     "1 frames rejected; a publisher has an incompatible QoS; no input for more than 3 s"),
])
def test_input_status_warns_on_what_is_new_or_missing(
    report: CameraReport, active: bool, level: bytes, message: str
) -> None:
    status = diagnostics.input_status("in", "image", report, active)
    assert (status.level, status.message) == (level, message)


def test_output_status_warns_on_frames_dropped_in_the_period() -> None:
    report = _report(new=FrameCounts(processed=14, dropped=2), processed=30, dropped=5,
                     overlays=7)
    status = diagnostics.output_status("out", report, enabled=True)
    assert (status.level, status.message) == (
        WARN, "2 frames dropped (detector slower than the camera)")
    assert diagnostic_values(status) == {
        "output rate [Hz]": "28", "frames processed": "30", "dropped frames": "5",
        "overlays rendered": "7", "detection enabled": "True"}
    assert diagnostics.output_status("out", _report(dropped=5), True).message == "detecting"
    paused = diagnostics.output_status("out", _report(), enabled=False)
    assert (paused.level, paused.message) == (OK, "paused through ~/enable")
    assert diagnostic_values(paused)["detection enabled"] == "False"


def test_latency_status_gives_percentiles_over_the_window() -> None:
    statistics = FrameStatistics(now=0.0)
    empty = diagnostics.latency_status("lat", statistics)
    assert (empty.level, empty.message, empty.values) == (OK, "no frames yet", [])
    for k in range(1, 11):
        statistics.add(stamp_ns=1, now_ns=1 + k * 1_000_000, inference_s=0.02, energy=None)
    status = diagnostics.latency_status("lat", statistics)
    assert (status.level, status.message) == (OK, "now - image stamp")
    assert diagnostic_values(status) == {
        "latency p50 [ms]": "5.5", "latency p95 [ms]": "9.55", "inference per frame [ms]": "20",
        "frames in window": "10"}


def test_model_status_before_configure_and_after_a_failed_one() -> None:
    status = diagnostics.model_status("model", None, "", InferenceErrors(), "")
    assert (status.level, status.message) == (OK, "not configured")
    assert diagnostic_values(status) == {"model path": "(default)", "inference errors": "0",
                                         "last error": "", "configure error": ""}
    failed = diagnostics.model_status("model", None, "m.safetensors", InferenceErrors(),
                                      "m.safetensors not found")
    assert (failed.level, failed.message) == (ERROR, "configure failed: m.safetensors not found")
    assert diagnostic_values(failed)["model path"] == "m.safetensors"


def test_model_status_describes_the_detector_and_warns_on_new_errors(model_path: Path) -> None:
    detector = Detector(model_path, device="cpu", threads=2)
    errors = InferenceErrors()
    errors.add(RuntimeError("out of memory"))
    status = diagnostics.model_status("model", detector, str(model_path), errors.report(), "")
    assert (status.level, status.message) == (WARN, "1 inference errors: RuntimeError: out of "
                                                     "memory")
    values = diagnostic_values(status)
    assert values == {
        "device": "cpu", "model path": str(detector.model_path), "engine": "fused",
        "T": str(detector.T), "f_c": str(detector.f_c), "classes": str(len(detector.names)),
        "input size [px]": "x".join(map(str, detector.input_size)), "CPU threads": "2",
        "inference errors": "1", "last error": "RuntimeError: out of memory",
        "approximation": "none", "configure error": ""}
    later = diagnostics.model_status("model", detector, str(model_path), errors.report(), "")
    assert (later.level, later.message) == (OK, "loaded")
    assert diagnostic_values(later)["inference errors"] == "1"


@pytest.mark.parametrize(("engine", "every_n", "message"), [
    ("ann", 10, "ann engine: no spikes"),
    ("fused", 0, "not counted: energy_every_n is 0"),
    ("fused", 10, "no frames yet"),
])
def test_energy_status_says_why_it_has_no_figures(engine: str, every_n: int,
                                                  message: str) -> None:
    status = diagnostics.energy_status("energy", FrameStatistics(now=0.0), engine, every_n)
    assert (status.level, status.message, status.values) == (OK, message, [])


def test_energy_status_averages_the_window() -> None:
    statistics = FrameStatistics(now=0.0)
    for spikes, snn_j in ((1e6, 1e-3), (3e6, 3e-3)):
        statistics.add(stamp_ns=0, now_ns=0, inference_s=0.01, energy=FrameEnergy(
            spikes=spikes, spikes_per_neuron_step=spikes / 1e8, sops=4 * spikes,
            macs_first_layer=1e6, macs_ann=1e9, energy_snn_j=snn_j, energy_ann_j=4.6e-3))
    status = diagnostics.energy_status("energy", statistics, "fused", 10)
    assert (status.level, status.message) == (OK, "per frame, 45 nm estimate")
    assert diagnostic_values(status) == {
        "frames counted": "2", "spikes per frame": "2e+06", "SOPs per frame": "8e+06",
        "spikes per neuron and step": "0.02", "energy per frame SNN [J]": "0.002",
        "energy per frame ANN [J]": "0.0046", "energy ratio ANN/SNN": "2.3"}


def test_energy_ratio_is_infinite_without_snn_energy() -> None:
    statistics = FrameStatistics(now=0.0)
    statistics.add(stamp_ns=0, now_ns=0, inference_s=0.01, energy=FrameEnergy(
        spikes=0.0, spikes_per_neuron_step=0.0, sops=0.0, macs_first_layer=0.0, macs_ann=1.0,
        energy_snn_j=0.0, energy_ann_j=4.6e-12))
    status = diagnostics.energy_status("energy", statistics, "fused", 1)
    assert diagnostic_values(status)["energy ratio ANN/SNN"] == "inf"

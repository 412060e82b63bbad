"""The detector node's figures without ROS: counters, rates between reports, windows, sampling."""

from __future__ import annotations

import math

import pytest

from suhd_ros.frame_statistics import (
    CameraStatistics,
    FrameCounts,
    FrameStatistics,
    InferenceErrors,
    engineering,
    overlay_line,
)
from suhd_ros.snn.energy import FrameEnergy


def _energy(snn_j: float, spikes: float = 100.0) -> FrameEnergy:
    return FrameEnergy(spikes=spikes, spikes_per_neuron_step=0.1, sops=10 * spikes,
                       macs_first_layer=5.0, macs_ann=50.0, energy_snn_j=snn_j,
                       energy_ann_j=2 * snn_j)


def test_counts_subtract_field_by_field() -> None:
    later = FrameCounts(received=10, rejected=2, dropped=3, processed=5, overlays=4,
                        incompatible_qos=1)
    assert later - FrameCounts(received=4, processed=5) == FrameCounts(
        received=6, rejected=2, dropped=3, processed=0, overlays=4, incompatible_qos=1)


def test_camera_report_gives_totals_news_and_rates_since_the_previous_report() -> None:
    camera = CameraStatistics()
    assert math.isinf(camera.report(now=1.0, period_s=1.0).idle_s)  # no frame yet
    for t in (1.1, 1.2, 1.3, 1.4):
        camera.receive(t)
    camera.reject("bad encoding")
    camera.process(rendered=True)
    camera.process(rendered=False)
    camera.counts.dropped += 1
    report = camera.report(now=2.0, period_s=0.5)
    assert report.totals == FrameCounts(received=4, rejected=1, dropped=1, processed=2,
                                        overlays=1)
    assert report.new == report.totals
    assert report.input_hz == 8.0 and report.output_hz == 4.0
    assert report.idle_s == pytest.approx(0.6) and report.last_reject == "bad encoding"
    assert camera.output_hz == 4.0  # kept for the overlay until the next report

    camera.receive(2.5)
    again = camera.report(now=3.0, period_s=1.0)
    assert again.new == FrameCounts(received=1)
    assert again.totals.received == 5 and again.output_hz == 0.0 == camera.output_hz
    assert report.totals.received == 4  # a report is a snapshot: later frames leave it alone


@pytest.mark.parametrize(("every_n", "pattern"), [
    (3, [True, False, False, True, False, False, True]),
    (1, [True] * 4),
    (0, [False] * 4),
])
def test_spikes_are_counted_on_one_batch_in_n(every_n: int, pattern: list[bool]) -> None:
    statistics = FrameStatistics(now=0.0)
    assert [statistics.count_spikes(every_n) for _ in pattern] == pattern


def test_frames_fill_the_windows_and_an_unset_stamp_gives_no_latency() -> None:
    statistics = FrameStatistics(now=0.0, size=3)
    statistics.add(stamp_ns=0, now_ns=5_000_000, inference_s=0.010, energy=None)
    assert not statistics.latency_ms and list(statistics.inference_ms) == [10.0]
    assert statistics.latency_percentiles_ms(50, 95) == [0.0, 0.0]
    assert statistics.mean_energy() is None and statistics.energy_frames == 0
    for k in range(1, 5):  # 4 frames in a window of 3: the first drops out
        statistics.add(stamp_ns=1_000_000_000, now_ns=1_000_000_000 + k * 10_000_000,
                       inference_s=k / 1000, energy=_energy(k * 1e-3))
    assert list(statistics.latency_ms) == [20.0, 30.0, 40.0]
    assert statistics.latency_percentiles_ms(50, 100) == [30.0, 40.0]
    assert statistics.mean_inference_ms() == pytest.approx(3.0)
    assert statistics.mean_energy() == FrameEnergy.mean([_energy(k * 1e-3) for k in (2, 3, 4)])
    assert statistics.energy_frames == 4  # ever, not in the window


def test_report_period_runs_from_report_to_report_and_is_never_zero() -> None:
    statistics = FrameStatistics(now=10.0)
    assert statistics.report_period(11.5) == 1.5
    assert statistics.report_period(12.0) == 0.5
    assert statistics.report_period(12.0) == 1e-3


def test_inference_errors_count_new_ones_between_reports() -> None:
    errors = InferenceErrors()
    assert errors.add(KeyError("x")) == "KeyError: 'x'"
    assert errors.add(RuntimeError("out of memory")) == "RuntimeError: out of memory"
    report = errors.report()
    assert (report.total, report.new, report.last) == (2, 2, "RuntimeError: out of memory")
    assert errors.report().new == 0 and errors.total == 2
    assert report.new == 2  # the snapshot keeps its figures


@pytest.mark.parametrize(("value", "text"), [
    (4.6e-3, "4.6 mJ"), (1.0, "1 J"), (2.28e-3, "2.28 mJ"), (7.5e-8, "75 nJ"), (0.0, "0 J"),
])
def test_engineering_notation(value: float, text: str) -> None:
    assert engineering(value, "J") == text


def test_overlay_line_shows_energy_only_once_counted() -> None:
    statistics = FrameStatistics(now=0.0)
    statistics.add(stamp_ns=1_000_000, now_ns=34_000_000, inference_s=0.03, energy=None)
    assert overlay_line(29.94, statistics) == "29.9 fps  latency 33 ms"
    statistics.add(stamp_ns=1_000_000, now_ns=36_000_000, inference_s=0.03,
                   energy=_energy(2.3e-3))
    assert overlay_line(29.94, statistics) == (
        "29.9 fps  latency 34 ms  E/frame SNN 2.3 mJ ANN 4.6 mJ")

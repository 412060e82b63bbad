"""The Detector API on a tiny converted model: engines agree, boxes map back, errors are clear."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from suhd_ros.detector import (
    DetectionCancelled,
    Detector,
    DetectorError,
    parse_device,
    resolve_device,
)
from suhd_ros.snn.energy import FrameEnergy
from suhd_ros.snn.layers import SpikeProducer
from suhd_ros.synthetic.scenes import generate_scene
from suhd_ros.tools import convert as convert_tool
from suhd_ros.tools import detect as detect_tool

from tiny_model import TINY_SIZE, make_ann_file, make_snn_file

ANY = dict(score_threshold=0.0, iou_threshold=0.7, max_detections=50)


@pytest.fixture(scope="module")
def snn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_snn_file(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [generate_scene(10 + i, w, h).image for i, (h, w) in enumerate([(48, 80), (120, 90)])]


def test_fused_and_reference_give_the_same_detections_and_spikes(snn_file, images) -> None:
    fused = Detector(snn_file, "cpu", "fused").detect(images, **ANY)
    reference = Detector(snn_file, "cpu", "reference").detect(images, **ANY)
    for f, r in zip(fused, reference, strict=True):
        assert len(f.scores) > 0
        np.testing.assert_allclose(f.scores, r.scores, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(f.boxes_xyxy, r.boxes_xyxy, atol=1e-2)
        np.testing.assert_array_equal(f.class_ids, r.class_ids)
        assert f.energy.spikes == pytest.approx(r.energy.spikes, rel=1e-3)
        assert f.energy.sops == pytest.approx(r.energy.sops, rel=1e-3)


def test_boxes_are_in_each_original_image(snn_file, images) -> None:
    for image, result in zip(images, Detector(snn_file, "cpu").detect(images, **ANY),
                             strict=True):
        h, w = image.shape[:2]
        assert (result.boxes_xyxy >= 0).all()
        assert (result.boxes_xyxy[:, [0, 2]] <= w).all()
        assert (result.boxes_xyxy[:, [1, 3]] <= h).all()
        assert np.all(np.diff(result.scores) <= 0)


def test_energy_figures_are_consistent(snn_file, images) -> None:
    detector = Detector(snn_file, "cpu")
    energy = detector.detect(images[:1], **ANY)[0].energy
    assert detector.detect(images[:1], **ANY)[0].energy == energy  # per frame, not cumulative
    assert energy.spikes > 0 and energy.sops > energy.spikes
    assert energy.energy_snn_j == pytest.approx(
        4.6e-12 * energy.macs_first_layer + 0.9e-12 * energy.sops)
    assert energy.energy_ann_j == pytest.approx(4.6e-12 * energy.macs_ann)
    assert 0 < energy.macs_first_layer < energy.macs_ann


def test_statistics_off_gives_the_same_detections_without_energy(snn_file, images) -> None:
    on = Detector(snn_file, "cpu").detect(images[:1], **ANY)[0]
    off = Detector(snn_file, "cpu", statistics=False).detect(images[:1], **ANY)[0]
    assert off.energy is None and on.energy is not None
    np.testing.assert_array_equal(off.boxes_xyxy, on.boxes_xyxy)
    np.testing.assert_array_equal(off.class_ids, on.class_ids)


def test_counting_can_be_skipped_per_call_and_resumes_exactly(snn_file, images) -> None:
    detector = Detector(snn_file, "cpu")
    producers = [m for m in detector.model.modules() if isinstance(m, SpikeProducer)]
    first = detector.detect(images[:1], **ANY)[0]
    skipped = detector.detect(images[1:2], **ANY, count_spikes=False)[0]
    assert skipped.energy is None and not any(m.record_statistics for m in producers)
    again = detector.detect(images[:1], **ANY)[0]
    assert all(m.record_statistics for m in producers)
    assert again.energy == first.energy  # nothing of the skipped frame leaks into the next count
    np.testing.assert_array_equal(again.boxes_xyxy, first.boxes_xyxy)


def _counters(detector: Detector) -> list:
    return [m.counter for m in detector.model.modules() if isinstance(m, SpikeProducer)]


def test_counting_on_its_own_thread_gives_the_figures_of_counting_inline(
        snn_file, images, monkeypatch) -> None:
    monkeypatch.setattr("suhd_ros.detector._cores", lambda: 2)
    threaded = Detector(snn_file, "cpu", threads=1)
    inline = Detector(snn_file, "cpu", threads=1, counting_thread=False)
    assert all(c is not None for c in _counters(threaded))
    assert _counters(inline) == [None] * len(_counters(threaded))
    assert set(_counters(Detector(snn_file, "cpu", threads=2))) == {None}  # no core to spare
    for batch in (images[:1], images):
        for a, b in zip(threaded.detect(batch, **ANY), inline.detect(batch, **ANY), strict=True):
            assert a.energy == b.energy and a.energy.spikes > 0
            np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)


def test_a_detection_cancelled_midway_leaves_no_counts_behind(snn_file, images,
                                                              monkeypatch) -> None:
    monkeypatch.setattr("suhd_ros.detector._cores", lambda: 2)
    detector = Detector(snn_file, "cpu", threads=1)  # counting on a thread of its own
    expected = detector.detect(images[:1], **ANY)[0]
    cancel = threading.Event()
    producers = [m for m in detector.model.modules() if isinstance(m, SpikeProducer)]
    hook = producers[2].register_forward_hook(lambda *_: cancel.set())
    with pytest.raises(DetectionCancelled):
        detector.detect(images[:1], cancel=cancel, **ANY)
    assert any(m.tally.pending or m.tally.samples for m in producers[:3])  # counted, not read
    hook.remove()
    cancel.clear()
    assert detector.detect(images[:1], cancel=cancel, **ANY)[0].energy == expected.energy


def test_ann_engine_and_timestep_override(snn_file, images) -> None:
    ann = Detector(snn_file, "cpu", "ann")
    assert ann.detect(images[:1], **ANY)[0].energy is None
    det = Detector(snn_file, "cpu", timesteps=2, compression=1)
    assert (det.T, det.f_c, det.coding.L) == (2, 1, 3)
    assert det.input_size == TINY_SIZE


def test_allowlist_and_max_detections(snn_file, images) -> None:
    detector = Detector(snn_file, "cpu")
    everything = detector.detect(images[:1], 0.0, 0.7, 100)[0]
    assert set(everything.class_ids.tolist()) - {2, 3}  # the allowlist has boxes to remove
    result = detector.detect(images[:1], 0.0, 0.7, 5, classes=[2, 3])[0]
    assert len(result.scores) == 5 and set(result.class_ids.tolist()) <= {2, 3}


def test_errors_are_clear(snn_file, tmp_path) -> None:
    with pytest.raises(DetectorError, match="not found"):
        Detector(tmp_path / "missing.safetensors", "cpu")
    with pytest.raises(DetectorError, match="no calibrated thresholds"):
        Detector(make_ann_file(tmp_path / "ann.safetensors"), "cpu")
    with pytest.raises(DetectorError, match="engine"):
        Detector(snn_file, "cpu", "magic")
    with pytest.raises(DetectorError, match="device"):
        resolve_device("tpu")
    with pytest.raises(DetectorError, match="RGB uint8"):
        Detector(snn_file, "cpu").detect([np.zeros((10, 10), np.uint8)])


def test_missing_cuda_falls_back_to_cpu_with_a_warning() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_device("cuda:0").type == "cpu"
    assert any("using the CPU" in str(w.message) for w in caught)
    assert resolve_device("auto").type == "cpu"


def test_convert_and_detect_command_lines(tmp_path, images) -> None:
    ann = make_ann_file(tmp_path / "ann.safetensors")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(calib / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "snn.safetensors"
    assert convert_tool.main([str(ann), "--images", str(calib), "-o", str(out), "-T", "3",
                              "--fc", "2", "--per-channel", "--quiet"]) == 0
    det = Detector(out, "cpu")
    assert (det.T, det.f_c) == (3, 2)
    assert detect_tool.main([str(calib), "-o", str(tmp_path / "out"), "--model", str(out),
                             "--score-threshold", "0"]) == 0
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [r["image"] for r in records] == ["0", "1"]
    assert records[0]["detections"] and records[0]["energy"]["spikes"] > 0
    assert (tmp_path / "out" / "0.png").is_file()
    assert convert_tool.main([str(tmp_path / "nope.pt"), "--images", str(calib),
                              "-o", str(out)]) == 2


def test_device_strings_are_parsed_in_one_place() -> None:
    assert [parse_device(s) for s in (" CPU ", "auto", "cuda", "cuda:3")] == [
        "cpu", "auto", "cuda", "cuda:3"]
    for bad in ("tpu", "cuda:", "cuda:x", "", 3, None):
        with pytest.raises(DetectorError, match="device must be"):
            parse_device(bad)


def test_the_detector_sets_its_threads_when_it_runs(snn_file, images) -> None:
    before = torch.get_num_threads()
    try:
        detector = Detector(snn_file, "cpu", threads=2)
        torch.set_num_threads(1)  # e.g. another detector ran in between
        detector.detect(images[:1], **ANY)
        assert torch.get_num_threads() == 2
        Detector(snn_file, "cpu").detect(images[:1], **ANY)  # None: leaves it alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(DetectorError, match="threads"):
        Detector(snn_file, "cpu", threads=0)


def test_a_set_cancel_event_abandons_detection_and_the_next_call_works(snn_file, images) -> None:
    detector = Detector(snn_file, "cpu", engine="reference")
    expected = detector.detect(images[:1], **ANY)[0]
    layers_run = []
    for module in detector.model.modules():
        module.register_forward_pre_hook(lambda m, _i: layers_run.append(m))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DetectionCancelled):
        detector.detect(images[:1], cancel=cancel, **ANY)
    assert len(layers_run) <= 1  # stopped before the first layer's work
    again = detector.detect(images[:1], cancel=threading.Event(), **ANY)[0]
    np.testing.assert_array_equal(again.boxes_xyxy, expected.boxes_xyxy)
    assert again.energy == expected.energy


def test_frame_energy_mean_is_per_figure() -> None:
    a = FrameEnergy(1.0, 0.1, 10.0, 5.0, 50.0, 2e-9, 4e-9)
    b = FrameEnergy(3.0, 0.3, 30.0, 5.0, 50.0, 4e-9, 4e-9)
    mean = FrameEnergy.mean([a, b])
    assert (mean.spikes, mean.sops, mean.macs_ann) == (2.0, 20.0, 50.0)
    assert mean.energy_snn_j == pytest.approx(3e-9)
    with pytest.raises(ValueError):
        FrameEnergy.mean([])

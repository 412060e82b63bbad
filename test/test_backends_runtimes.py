"""Detector(backend=...): the exported graph in ONNX Runtime and OpenVINO against PyTorch.

The ANN has no thresholds, so a backend must find the same objects as PyTorch within 0.5 px.
The fused SNN floors every membrane: a convolution that sums in another order moves about one
neuron in a million across a level, and that change spreads through the layers after it (a few
hundred neurons per layer, each by a level or two). So on the embedded model the test asks what
that allows: spike totals within 0.05 %, and every confident detection (score >= 0.5) found
again with its class within 3 px (measured on 20 test scenes: spikes within 0.021 %, boxes
within 2.1 px; benchmarks/backends.py counts the scenes that agree exactly).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from suhd_ros.backends.agreement import detections_agree, max_box_difference
from suhd_ros.backends.onnx_export import ExportInfo
from suhd_ros.backends.runtimes import BackendError, make_backend
from suhd_ros.detector import Detector, DetectorError
from suhd_ros.synthetic.scenes import generate_scene, split_seed
from suhd_ros.yolo.model_file import sha256_file

GRAPH_BACKENDS = ("onnxruntime", "openvino")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One cache for the module's exports, not the user's."""
    monkeypatch.setenv("SUHD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "suhd_cache"))


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [generate_scene(split_seed("test", i), 320, 320).image for i in range(3)]


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_ann_finds_what_pytorch_finds(backend: str, scenes: list[np.ndarray]) -> None:
    reference = Detector("", "cpu", "ann").detect(scenes)
    results = Detector("", "cpu", "ann", backend=backend).detect(scenes)
    assert all(len(r.class_ids) > 0 for r in reference)
    for got, expected in zip(results, reference, strict=True):
        assert detections_agree(expected.boxes_xyxy, expected.class_ids, got.boxes_xyxy,
                                got.class_ids)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
        assert got.energy is None


def test_fused_snn_on_each_backend_within_threshold_flips(scenes: list[np.ndarray]) -> None:
    reference = Detector("", "cpu", "fused", threads=1).detect(scenes)
    assert all(r.energy is not None and len(r.class_ids) > 0 for r in reference)
    for backend in GRAPH_BACKENDS:
        detector = Detector("", "cpu", "fused", threads=1, backend=backend)
        for got, expected in zip(detector.detect(scenes), reference, strict=True):
            assert got.energy is not None, backend
            assert got.energy.spikes == pytest.approx(expected.energy.spikes, rel=5e-4)
            assert got.energy.sops == pytest.approx(expected.energy.sops, rel=5e-4)
            confident = expected.scores >= 0.5
            assert max_box_difference(expected.boxes_xyxy[confident],
                                      expected.class_ids[confident], got.boxes_xyxy,
                                      got.class_ids) <= 3.0, backend
        plain = detector.detect(scenes[:1], count_spikes=False)[0]
        assert plain.energy is None and len(plain.class_ids) > 0


def test_export_is_cached_by_model_and_settings(model_path: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUHD_CACHE_DIR", str(cache))
    Detector(model_path, "cpu", "fused", backend="onnxruntime")
    files = sorted((cache / "onnx").glob(f"{sha256_file(model_path)[:16]}-*.onnx"))
    assert len(files) == 1 and "stdi-T4" in files[0].name
    stamp = files[0].stat().st_mtime_ns
    Detector(model_path, "cpu", "fused", backend="openvino").detect(
        [generate_scene(3, 96, 64).image])  # counts: a second graph with the levels out
    Detector(model_path, "cpu", "fused", timesteps=2, backend="onnxruntime")
    names = sorted(p.name for p in (cache / "onnx").glob("*.onnx"))
    assert len(names) == 3 and sum("-levels-" in n for n in names) == 1
    assert sum("stdi-T2" in n for n in names) == 1
    assert files[0].stat().st_mtime_ns == stamp  # reused, not exported again


def test_missing_runtime_is_an_error_not_a_fallback(model_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(DetectorError, match="openvino package, which is not installed"):
        Detector(model_path, "cpu", "fused", backend="openvino")
    with pytest.raises(DetectorError, match="backend must be one of"):
        Detector(model_path, "cpu", "fused", backend="tensorrt")
    with pytest.raises(DetectorError, match="reference engine"):
        Detector(model_path, "cpu", "reference", backend="onnxruntime")


@pytest.mark.parametrize(("backend", "reason"), [("onnxruntime", "CUDA execution provider"),
                                                 ("openvino", "no CUDA device")])
def test_a_gpu_the_runtime_cannot_use_is_refused(model_path: Path, backend: str,
                                                 reason: str) -> None:
    detector = Detector(model_path, "cpu", "fused")
    info = ExportInfo(tuple(detector.names), detector.input_size, "fused", detector.coding,
                      sha256_file(model_path))
    try:
        make_backend(backend, detector.model, info, torch.device("cuda"), None)
    except BackendError as e:
        assert reason in str(e)
    else:
        import onnxruntime

        assert "CUDAExecutionProvider" in onnxruntime.get_available_providers()

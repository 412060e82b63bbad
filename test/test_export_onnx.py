"""ONNX export (suhd-export, backends/onnx_export): a plain graph that other runtimes read.

On the tiny model (random weights): the file passes onnx.checker, uses only standard operators
at opset 17, carries its metadata, and runs in ONNX Runtime and OpenVINO with the predictions
and in-graph spike counts of the PyTorch network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
import torch

from suhd_ros.backends.onnx_export import (
    ExportError,
    ExportInfo,
    export_onnx,
    read_metadata,
    spiking_layers,
)
from suhd_ros.detector import Detector
from suhd_ros.snn.layers import level_spike_counts, reset_statistics
from suhd_ros.synthetic.scenes import generate_scene
from suhd_ros.tools import export as export_tool
from suhd_ros.yolo.model_file import sha256_file

# what the graphs may contain: plain operators every ONNX runtime and TensorRT implement
PLAIN_OPS = {"Add", "Cast", "Clip", "Concat", "Constant", "Conv", "Div", "Expand", "Floor",
             "Gather", "Identity", "MaxPool", "Mul", "Pow", "Range", "ReduceSum", "Relu",
             "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Slice", "Sub", "Transpose",
             "Unsqueeze"}


def _info(detector: Detector) -> ExportInfo:
    return ExportInfo(tuple(detector.names), detector.input_size, detector.engine,
                      None if detector.engine == "ann" else detector.coding,
                      sha256_file(detector.model_path))


@pytest.fixture(scope="module")
def fused(model_path: Path) -> Detector:
    return Detector(model_path, "cpu", "fused")


@pytest.fixture(scope="module")
def batch(fused: Detector) -> torch.Tensor:
    images = [generate_scene(seed, 120, 90).image for seed in (11, 12)]
    return fused.preprocess(images)[0]


@pytest.fixture(scope="module")
def counted_file(fused: Detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny_spikes.onnx"
    return export_onnx(fused.model, _info(fused), path, spikes="counts", dynamic_batch=True)


def _torch_outputs(detector: Detector, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    reset_statistics(detector.model)
    with torch.no_grad():
        predictions = detector.model(batch)[0].numpy()
    counts = np.stack([layer.spike_counts.numpy()
                       for _, layer in spiking_layers(detector.model)], axis=1)
    return predictions, counts


def test_file_is_plain_onnx_with_metadata(counted_file: Path, fused: Detector) -> None:
    proto = onnx.load(str(counted_file))
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= PLAIN_OPS, ops - PLAIN_OPS
    assert {"Floor", "Clip", "Div"} <= ops  # the quantiser is in the graph
    meta = read_metadata(counted_file)
    assert json.loads(meta["names"]) == fused.names
    assert json.loads(meta["input_size"]) == list(fused.input_size)
    assert (meta["T"], meta["f_c"], meta["coding"]) == (str(fused.T), str(fused.f_c), "stdi")
    assert meta["source_sha256"] == sha256_file(fused.model_path)
    layers = [name for name, _ in spiking_layers(fused.model)]
    assert json.loads(meta["spike_layers"]) == layers
    outputs = {o.name: o for o in proto.graph.output}
    assert set(outputs) == {"predictions", "spike_counts"}
    dims = outputs["spike_counts"].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [len(layers),
                                                                                  fused.T]


def test_onnxruntime_and_openvino_match_pytorch(counted_file: Path, fused: Detector,
                                                batch: torch.Tensor) -> None:
    predictions, counts = _torch_outputs(fused, batch)
    feed = np.ascontiguousarray(batch.numpy())
    session = ort.InferenceSession(str(counted_file), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(counted_file), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(feed)
    runs = {"onnxruntime": session.run(["predictions", "spike_counts"], {"images": feed}),
            "openvino": [result["predictions"], result["spike_counts"]]}
    for name, (got_predictions, got_counts) in runs.items():
        assert got_counts.shape == counts.shape, name
        # float reordering may move a neuron across a threshold: a few spikes, never more
        assert abs(got_counts.sum() - counts.sum()) <= 1e-3 * counts.sum(), name
        close = np.isclose(got_predictions, predictions, rtol=1e-3, atol=1e-2)
        assert close.mean() > 0.99, (name, close.mean())


def test_levels_file_counts_what_the_counts_file_counts(counted_file: Path, fused: Detector,
                                                        batch: torch.Tensor,
                                                        tmp_path: Path) -> None:
    """The levels out of the graph, counted by histogram, give the spike counts the graph
    computes itself in the same runtime, to the spike (the same convolutions, so the same
    levels), for every layer including SPPF's pool, which fires three times a frame."""
    path = export_onnx(fused.model, _info(fused), tmp_path / "levels.onnx", spikes="levels",
                       dynamic_batch=True)
    onnx.checker.check_model(str(path), full_check=True)
    meta = read_metadata(path)
    owners = json.loads(meta["spike_layers"])
    layers = dict(spiking_layers(fused.model))
    assert meta["spike_outputs"] == "levels" and set(owners) == set(layers)
    assert len(owners) == len(layers) + 2  # the pool's three calls are three outputs
    feed = np.ascontiguousarray(batch.numpy())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"images": feed}), strict=True))
    assert len(outputs) == len(owners) + 1
    counts: dict[str, torch.Tensor] = {}
    for i, owner in enumerate(owners):
        levels = outputs[f"spike_levels_{i}"]
        assert levels.dtype == np.uint8 and levels.shape[0] == len(batch)
        layer_counts = level_spike_counts(torch.from_numpy(levels), fused.coding)
        counts[owner] = counts.get(owner, 0) + layer_counts
    in_graph = ort.InferenceSession(str(counted_file), providers=["CPUExecutionProvider"]).run(
        ["spike_counts"], {"images": feed})[0]
    expected = json.loads(read_metadata(counted_file)["spike_layers"])
    got = np.stack([counts[name].numpy() for name in expected], axis=1)
    np.testing.assert_array_equal(got, in_graph)
    assert got.sum() > 0


def test_ann_export_runs_in_onnxruntime(model_path: Path, batch: torch.Tensor,
                                        tmp_path: Path) -> None:
    ann = Detector(model_path, "cpu", "ann")
    path = export_onnx(ann.model, _info(ann), tmp_path / "ann.onnx", dynamic_batch=True)
    with torch.no_grad():
        expected = ann.model(batch)[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["predictions"], {"images": np.ascontiguousarray(batch.numpy())})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)  # nothing quantised
    assert read_metadata(path)["T"] == ""


def test_export_refuses_what_it_cannot_write(model_path: Path, fused: Detector,
                                             tmp_path: Path) -> None:
    ann = Detector(model_path, "cpu", "ann")
    with pytest.raises(ExportError, match="fused"):
        export_onnx(ann.model, _info(ann), tmp_path / "a.onnx", spikes="counts")
    with pytest.raises(ExportError, match="spikes must be one of"):
        export_onnx(fused.model, _info(fused), tmp_path / "c.onnx", spikes="histogram")
    with pytest.raises(ExportError, match="opset"):
        export_onnx(fused.model, _info(fused), tmp_path / "b.onnx", opset=13)
    assert not list(tmp_path.iterdir())


def test_tool_writes_a_file_and_exits_2_on_bad_input(model_path: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "model.onnx"
    assert export_tool.main([str(model_path), "-o", str(out)]) == 0
    onnx.checker.check_model(str(out))
    assert read_metadata(out)["engine"] == "fused"
    missing = tmp_path / "missing.safetensors"
    assert export_tool.main([str(missing), "-o", str(tmp_path / "x.onnx")]) == 2
    assert export_tool.main([str(model_path), "-o", str(tmp_path / "y.onnx"), "--engine",
                             "ann", "--spike-counts"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("suhd-export: error:") for e in errors)
    assert "missing.safetensors" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]

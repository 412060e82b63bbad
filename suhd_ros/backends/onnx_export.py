"""The fused SNN (or the ANN) as a plain ONNX graph that any ONNX runtime or TensorRT can read.

The fused engine is already plain tensor algebra: convolutions, the quantiser
clip(floor(V / theta + 1/2), 0, L) (Div, Add, Floor, Clip), max-pooling, nearest Resize,
Concat, Add and the Detect head's decoding. So the graph is a trace of the PyTorch modules
themselves (no second copy of the network), written with opset 17. Outputs:

- `predictions` [N, M, 5 + nc]: decoded boxes (input pixels), objectness and class scores,
  before NMS (what `Detector` hands to `yolo.postprocess`);
- with spike counts, `spike_counts` [N, P, T] (float, exact integers): each spiking layer's
  spikes per step, computed inside the graph by the greedy rule step by step
  (`snn.neurons.step_spike_counts`); the layers' names, in order, are in the metadata.

The file's metadata_props carry what a reader needs without our code: names (JSON), input_size
(JSON [H, W]), T, f_c, coding, half_start, engine, spike_layers (JSON), source_sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.layers import SpikeProducer, set_statistics
from suhd_ros.snn.neurons import step_spike_counts

OPSET = 17
INPUT_NAME = "images"
PREDICTIONS = "predictions"
SPIKE_COUNTS = "spike_counts"
EXPORT_VERSION = 1  # part of the cache key of files built on the fly: bump when the graph changes


class ExportError(ValueError):
    """The network cannot be exported as asked."""


@dataclass(frozen=True)
class ExportInfo:
    """What the file's metadata records, and what a runtime needs to feed and read it."""

    names: tuple[str, ...]
    input_size: tuple[int, int]
    engine: str
    coding: SpikeCoding | None  # None for the ANN
    source_sha256: str

    def metadata(self, spike_layers: list[str]) -> dict[str, str]:
        coding = self.coding
        return {
            "names": json.dumps(list(self.names)),
            "input_size": json.dumps(list(self.input_size)),
            "engine": self.engine,
            "T": str(coding.T) if coding else "",
            "f_c": str(coding.f_c) if coding else "",
            "coding": coding.kind if coding else "",
            "half_start": str(coding.half_start).lower() if coding else "",
            "spike_layers": json.dumps(spike_layers),
            "source_sha256": self.source_sha256,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def spiking_layers(model: nn.Module) -> list[tuple[str, SpikeProducer]]:
    """The layers that fire, in module order (the order of `spike_counts`' second axis)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SpikeProducer)]


@contextlib.contextmanager
def _counting_into(layers: list[tuple[str, SpikeProducer]],
                   sink: dict[str, list[Tensor]]) -> Iterator[None]:
    """While tracing, each layer's levels go to `step_spike_counts` (plain ops, so they land in
    the graph) instead of the layer's own statistics; a layer called k times adds k entries."""
    def recorder(name: str, layer: SpikeProducer):
        return lambda n: sink.setdefault(name, []).append(step_spike_counts(n, layer.coding))

    for name, layer in layers:
        layer._record_levels = recorder(name, layer)  # shadows the method on this instance
        layer.record_statistics = True
    try:
        yield
    finally:
        for _, layer in layers:
            del layer._record_levels


class _Graph(nn.Module):
    """The traced function: images -> predictions (, spike counts [N, P, T])."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, SpikeProducer]]) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.sink: dict[str, list[Tensor]] = {}

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        self.sink.clear()
        predictions, _raw = self.model(images)
        if not self.layers:
            return predictions
        per_layer = [torch.stack(self.sink[name]).sum(dim=0) for name, _ in self.layers]
        return predictions, torch.stack(per_layer, dim=1).float()


def export_onnx(model: nn.Module, info: ExportInfo, path: str | Path, spike_counts: bool = False,
                dynamic_batch: bool = False, opset: int = OPSET) -> Path:
    """Write `model` (a Detector's network, in eval mode) as an ONNX file; returns its path.
    The network's own statistics switches are restored afterwards."""
    if spike_counts and info.engine != "fused":
        raise ExportError(f"spike counts need the fused engine, not {info.engine!r}")
    if info.engine == "reference":
        raise ExportError("the reference engine is a time loop for checking; export fused")
    if opset < OPSET:
        raise ExportError(f"opset must be {OPSET} or later, got {opset}")
    path = Path(path)
    layers = spiking_layers(model) if spike_counts else []
    saved = {layer: layer.record_statistics for _, layer in spiking_layers(model)}
    graph = _Graph(model, layers).eval()
    outputs = [PREDICTIONS] + ([SPIKE_COUNTS] if layers else [])
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]} if dynamic_batch else None
    example = torch.zeros(1, 3, *info.input_size, device=next(model.parameters()).device)
    set_statistics(model, False)
    try:
        with _counting_into(layers, graph.sink) if layers else contextlib.nullcontext(), \
                torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(graph, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=outputs, dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
    finally:
        for layer, record in saved.items():
            layer.record_statistics = record
    _finish(path, info.metadata([name for name, _ in layers]))
    return path


def _finish(path: Path, metadata: dict[str, str]) -> None:
    """Metadata in, then onnx.checker with full shape inference (what a runtime will run)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path}: the exported graph fails onnx.checker: {e}") from e


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file, as written by `export_onnx`."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}

"""The fused SNN (or the ANN) as a plain ONNX graph that any ONNX runtime or TensorRT can read.

The fused engine is already plain tensor algebra: convolutions, the quantiser
clip(floor(V / theta + 1/2), 0, L) (Div, Add, Floor, Clip), max-pooling, nearest Resize,
Concat, Add and the Detect head's decoding. So the graph is a trace of the PyTorch modules
themselves (no second copy of the network), written with opset 17. Outputs:

- `predictions` [N, M, 5 + nc]: decoded boxes (input pixels), objectness and class scores,
  before NMS (what `Detector` hands to `yolo.postprocess`);
- with spikes="counts", `spike_counts` [N, P, T] (float, exact integers): each spiking layer's
  spikes per step, computed inside the graph by the greedy rule step by step
  (`snn.neurons.step_spike_counts`); the layers' names, in order, are in the metadata;
- with spikes="levels", `spike_levels_0`, `spike_levels_1`, ...: the integer levels 0..L
  of each spiking layer's call, as uint8 (int32 where L > 255), for the reader to count
  (`snn.layers.level_spike_counts`: one histogram, where the counts in the graph take T
  elementwise passes); `spike_layers` names the layer of each output (SPPF's pool thrice).

The file's metadata_props carry what a reader needs without our code: names (JSON), input_size
(JSON [H, W]), T, f_c, coding, half_start, engine, spike_outputs (counts, levels or empty),
spike_layers (JSON), source_sha256.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.layers import SpikeProducer, set_statistics
from suhd_ros.snn.neurons import step_spike_counts

OPSET = 17
INPUT_NAME = "images"
PREDICTIONS = "predictions"
SPIKE_COUNTS = "spike_counts"
SPIKE_LEVELS = "spike_levels"  # prefix: spike_levels_0, spike_levels_1, ...
SpikeOutputs = Literal["counts", "levels"]
SPIKE_OUTPUTS: tuple[SpikeOutputs, ...] = ("counts", "levels")
EXPORT_VERSION = 2  # part of the cache key of files built on the fly: bump when the graph changes


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

    def metadata(self, spikes: SpikeOutputs | None, spike_layers: list[str]) -> dict[str, str]:
        coding = self.coding
        return {
            "names": json.dumps(list(self.names)),
            "input_size": json.dumps(list(self.input_size)),
            "engine": self.engine,
            "T": str(coding.T) if coding else "",
            "f_c": str(coding.f_c) if coding else "",
            "coding": coding.kind if coding else "",
            "half_start": str(coding.half_start).lower() if coding else "",
            "spike_outputs": spikes or "",
            "spike_layers": json.dumps(spike_layers),
            "source_sha256": self.source_sha256,
        }


def spiking_layers(model: nn.Module) -> list[tuple[str, SpikeProducer]]:
    """The layers that fire, in module order (the order of `spike_counts`' second axis)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SpikeProducer)]


def level_dtype(coding: SpikeCoding) -> torch.dtype:
    """The type of a levels output: uint8 holds L <= 255 (T <= 6 at f_c = 8), int32 the rest."""
    return torch.uint8 if coding.L <= 255 else torch.int32


@contextlib.contextmanager
def _counting_into(layers: list[tuple[str, SpikeProducer]], sink: dict[str, list[Tensor]],
                   spikes: SpikeOutputs) -> Iterator[None]:
    """While tracing, each layer's levels go to `step_spike_counts` (plain ops, so they land in
    the graph), or out as they are, instead of into the layer's own statistics; a layer called
    k times adds k entries."""
    def recorder(name: str, layer: SpikeProducer):
        def record(n: Tensor) -> bool:
            kept = step_spike_counts(n, layer.coding) if spikes == "counts" else \
                n.to(level_dtype(layer.coding))
            sink.setdefault(name, []).append(kept)
            return False  # counted in the graph: the layer may decode n in place
        return record

    for name, layer in layers:
        layer.record_levels = recorder(name, layer)  # shadows the method on this instance
        layer.record_statistics = True
    try:
        yield
    finally:
        for _, layer in layers:
            del layer.record_levels


class _Graph(nn.Module):
    """The traced function: images -> predictions (, spike counts [N, P, T] | levels...)."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, SpikeProducer]],
                 spikes: SpikeOutputs | None) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.spikes = spikes
        self.sink: dict[str, list[Tensor]] = {}

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, ...]:
        self.sink.clear()
        predictions, _raw = self.model(images)
        if self.spikes is None:
            return predictions
        if self.spikes == "levels":
            return predictions, *(n for name, _ in self.layers for n in self.sink[name])
        per_layer = [torch.stack(self.sink[name]).sum(dim=0) for name, _ in self.layers]
        return predictions, torch.stack(per_layer, dim=1).float()

    def spike_outputs(self) -> tuple[list[str], list[str]]:
        """After a call: the spike outputs' names and the layer each belongs to."""
        if self.spikes == "counts":
            return [SPIKE_COUNTS], [name for name, _ in self.layers]
        owners = [name for name, _ in self.layers for _ in self.sink.get(name, [])]
        return [f"{SPIKE_LEVELS}_{i}" for i in range(len(owners))], owners


def export_onnx(model: nn.Module, info: ExportInfo, path: str | Path,
                spikes: SpikeOutputs | None = None, dynamic_batch: bool = False,
                opset: int = OPSET) -> Path:
    """Write `model` (a Detector's network, in eval mode) as an ONNX file; returns its path.
    spikes: also output the spike counts per layer and step ("counts"), or every spiking
    layer's levels ("levels"). The network's own statistics switches are restored afterwards."""
    if spikes is not None and spikes not in SPIKE_OUTPUTS:
        raise ExportError(f"spikes must be one of {SPIKE_OUTPUTS} or None, got {spikes!r}")
    if spikes and info.engine != "fused":
        raise ExportError(f"spike outputs need the fused engine, not {info.engine!r}")
    if info.engine == "reference":
        raise ExportError("the reference engine is a time loop for checking; export fused")
    if opset < OPSET:
        raise ExportError(f"opset must be {OPSET} or later, got {opset}")
    path = Path(path)
    layers = spiking_layers(model) if spikes else []
    saved = {layer: layer.record_statistics for _, layer in spiking_layers(model)}
    graph = _Graph(model, layers, spikes).eval()
    example = torch.zeros(1, 3, *info.input_size, device=next(model.parameters()).device)
    set_statistics(model, False)
    try:
        with _counting_into(layers, graph.sink, spikes) if spikes else contextlib.nullcontext(), \
                torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            graph(example)  # which layers fire how often: the outputs' names
            spike_names, owners = graph.spike_outputs() if spikes else ([], [])
            outputs = [PREDICTIONS, *spike_names]
            axes = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]} if dynamic_batch \
                else None
            torch.onnx.export(graph, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=outputs, dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
    finally:
        for layer, record in saved.items():
            layer.record_statistics = record
    _finish(path, info.metadata(spikes, owners))
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

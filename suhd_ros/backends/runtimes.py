"""Runtimes behind `Detector`: one object per backend with `run(images, count_spikes)`.

`torch` calls the network itself. `onnxruntime` and `openvino` run the exported graph
(`onnx_export`), built on the fly from the model file and cached under a key of the model file's
hash and every export setting, so a second start skips the export. A runtime that is not
installed, or a device it cannot serve, is a BackendError: never a silent run on PyTorch or
on the CPU instead of the asked-for GPU. With spike counts wanted, a second graph that also
outputs every spiking layer's levels is built on the first call that counts; the caller counts
them by histogram (counting inside the graph took T elementwise passes per layer, 1.7-1.9x
the inference). Frames that do not count run the plain graph.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from suhd_ros.backends.onnx_export import (
    EXPORT_VERSION,
    INPUT_NAME,
    PREDICTIONS,
    SPIKE_LEVELS,
    ExportInfo,
    SpikeOutputs,
    export_onnx,
    read_metadata,
)

BACKENDS = ("torch", "onnxruntime", "openvino")
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
CACHE_ENV = "SUHD_CACHE_DIR"


class BackendError(ValueError):
    """The backend cannot run as asked: not installed, or not on this device."""


def check_backend(name: Any) -> str:
    if name not in BACKENDS:
        raise BackendError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def _import(name: str) -> Any:
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as e:
        raise BackendError(f"backend {name!r} needs the {_MODULES[name]} package, which is not "
                           "installed (pip install -r requirements/backends.txt)") from e


def cache_dir() -> Path:
    """$SUHD_CACHE_DIR, else $XDG_CACHE_HOME/suhd_ros, else ~/.cache/suhd_ros."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "suhd_ros"


def cached_export(model: nn.Module, info: ExportInfo, spikes: SpikeOutputs | None) -> Path:
    """The ONNX file of this model and settings (dynamic batch), exported once per key."""
    c = info.coding
    coding = f"{c.kind}-T{c.T}-fc{c.f_c}-{'half' if c.half_start else 'floor'}" if c else "ann"
    key = (f"{info.source_sha256[:16]}-{info.engine}-{coding}-{info.input_size[0]}x"
           f"{info.input_size[1]}{f'-{spikes}' if spikes else ''}-v{EXPORT_VERSION}"
           f"-torch{torch.__version__.split('+')[0]}")
    path = cache_dir() / "onnx" / f"{key}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # no half-written file
            written = export_onnx(model, info, Path(tmp) / path.name, spikes, True)
            os.replace(written, path)
    return path


Levels = list[tuple[str, Tensor]]  # (spiking layer's name, its integer levels), call by call


class TorchBackend:
    """The network in PyTorch (eager): the reference every other backend is checked against."""

    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def run(self, images: Tensor, count_spikes: bool) -> tuple[Tensor, Levels | None]:
        """Predictions [N, M, 5 + nc]; spike counts stay in the layers' own statistics."""
        return self.model(images)[0], None


class _GraphBackend:
    """A runtime that runs the exported graph; `_compile` and `_infer` are the runtime's own."""

    name = ""

    def __init__(self, model: nn.Module, info: ExportInfo, device: torch.device,
                 threads: int | None) -> None:
        self.module = _import(self.name)
        self.model = model
        self.info = info
        self.device = device
        self.threads = threads
        self._check_device()
        self._graphs = {False: self._compile(cached_export(model, info, None))}
        self._level_outputs: list[tuple[str, str]] = []  # (output, layer)

    def run(self, images: Tensor, count_spikes: bool) -> tuple[Tensor, Levels | None]:
        """Predictions [N, M, 5 + nc] and, if asked, each spiking layer's levels."""
        if count_spikes not in self._graphs:
            path = cached_export(self.model, self.info, "levels")
            layers = json.loads(read_metadata(path)["spike_layers"])
            self._level_outputs = [(f"{SPIKE_LEVELS}_{i}", layer)
                                   for i, layer in enumerate(layers)]
            self._graphs[count_spikes] = self._compile(path)
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        outputs = self._infer(self._graphs[count_spikes], array)
        predictions = torch.from_numpy(outputs[PREDICTIONS]).to(images.device)
        if not count_spikes:
            return predictions, None
        return predictions, [(layer, torch.from_numpy(outputs[output]))
                             for output, layer in self._level_outputs]

    def _check_device(self) -> None:
        raise NotImplementedError

    def _compile(self, path: Path) -> Any:
        raise NotImplementedError

    def _infer(self, graph: Any, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name."""
        raise NotImplementedError


class OnnxRuntimeBackend(_GraphBackend):
    """ONNX Runtime: CPU, or CUDA / TensorRT execution providers on a GPU when installed."""

    name = "onnxruntime"

    def _check_device(self) -> None:
        self.providers = self._providers()

    def _providers(self) -> list[Any]:
        available = self.module.get_available_providers()
        if self.device.type == "cpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in available:
            raise BackendError(f"device {self.device} asked for, but this onnxruntime has no "
                               f"CUDA execution provider (it has {available}); install "
                               "onnxruntime-gpu or use device cpu")
        index = {"device_id": self.device.index or 0}
        gpu = [("CUDAExecutionProvider", index)]
        if "TensorrtExecutionProvider" in available:
            gpu.insert(0, ("TensorrtExecutionProvider", index))
        return gpu

    def _compile(self, path: Path) -> Any:
        options = self.module.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        return self.module.InferenceSession(str(path), options, providers=self.providers)

    def _infer(self, graph: Any, images: np.ndarray) -> dict[str, np.ndarray]:
        names = [o.name for o in graph.get_outputs()]
        return dict(zip(names, graph.run(names, {INPUT_NAME: images}), strict=True))


class OpenVinoBackend(_GraphBackend):
    """OpenVINO on the CPU, in float32 (its default on CPUs with bf16 units is bf16, which moves
    boxes by pixels and spike levels across thresholds)."""

    name = "openvino"

    def _check_device(self) -> None:
        if self.device.type != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU here, not {self.device} "
                               "(OpenVINO has no CUDA device; use onnxruntime on NVIDIA GPUs)")

    def _compile(self, path: Path) -> _StaticBatches:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return _StaticBatches(self.module.Core(), path, config)

    def _infer(self, graph: _StaticBatches, images: np.ndarray) -> dict[str, np.ndarray]:
        result = graph.request(images.shape).infer({INPUT_NAME: images})
        return {name: value for port, value in result.items() for name in port.names}


class _StaticBatches:
    """An OpenVINO graph compiled once per input shape (batch size), batch 1 at once.

    The file has a free batch; compiled so, OpenVINO cannot fuse the quantiser's elementwise
    operations into one kernel and runs the levels' Convert in its reference kernel (measured,
    1 thread: the fused SNN 59.2 ms dynamic against 54.5 ms static, with the levels out 94.7
    against 61.8 ms). Each infer request holds its compiled model; used by one thread."""

    def __init__(self, core: Any, path: Path, config: dict[str, Any]) -> None:
        self.core = core
        self.path = path
        self.config = config
        model = self.core.read_model(str(path))
        dims = list(model.input(0).get_partial_shape())[1:]
        shape = (1, *(d.get_length() for d in dims))
        self.requests: dict[tuple[int, ...], Any] = {shape: self._compile(model, shape)}

    def request(self, shape: tuple[int, ...]) -> Any:
        if shape not in self.requests:
            self.requests[shape] = self._compile(self.core.read_model(str(self.path)), shape)
        return self.requests[shape]

    def _compile(self, model: Any, shape: tuple[int, ...]) -> Any:
        model.reshape({INPUT_NAME: list(shape)})
        return self.core.compile_model(model, "CPU", self.config).create_infer_request()


def make_backend(name: str, model: nn.Module, info: ExportInfo | None, device: torch.device,
                 threads: int | None) -> TorchBackend | _GraphBackend:
    """The backend object `Detector` calls (info: what to export; only graph backends need
    it); BackendError if it cannot run here."""
    name = check_backend(name)
    if name == "torch":
        return TorchBackend(model)
    if info is None:
        raise BackendError(f"backend {name!r} needs the export settings (ExportInfo)")
    backend = OnnxRuntimeBackend if name == "onnxruntime" else OpenVinoBackend
    return backend(model, info, device, threads)

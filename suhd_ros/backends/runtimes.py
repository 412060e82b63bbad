"""Runtimes behind `Detector`: one object per backend with `run(images, count_spikes)`.

`torch` calls the network itself. `onnxruntime` and `openvino` run the exported graph
(`onnx_export`), built on the fly from the model file and cached under a key of the model file's
hash and every export setting, so a second start skips the export. A runtime that is not
installed, or a device it cannot serve, is a BackendError: never a silent run on PyTorch or
on the CPU instead of the asked-for GPU. With spike counts wanted, a second graph that also
computes them is built on the first call that counts (counting costs time, so frames that do
not count run the plain graph).
"""

from __future__ import annotations

import importlib
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
    SPIKE_COUNTS,
    ExportInfo,
    export_onnx,
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


def cached_export(model: nn.Module, info: ExportInfo, spike_counts: bool) -> Path:
    """The ONNX file of this model and settings (dynamic batch), exported once per key."""
    c = info.coding
    coding = f"{c.kind}-T{c.T}-fc{c.f_c}-{'half' if c.half_start else 'floor'}" if c else "ann"
    key = (f"{info.source_sha256[:16]}-{info.engine}-{coding}-{info.input_size[0]}x"
           f"{info.input_size[1]}{'-spikes' if spike_counts else ''}-v{EXPORT_VERSION}"
           f"-torch{torch.__version__.split('+')[0]}")
    path = cache_dir() / "onnx" / f"{key}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # no half-written file
            written = export_onnx(model, info, Path(tmp) / path.name, spike_counts, True)
            os.replace(written, path)
    return path


class TorchBackend:
    """The network in PyTorch (eager): the reference every other backend is checked against."""

    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def run(self, images: Tensor, count_spikes: bool) -> tuple[Tensor, Tensor | None]:
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
        self._graphs = {False: self._compile(cached_export(model, info, False))}

    def run(self, images: Tensor, count_spikes: bool) -> tuple[Tensor, Tensor | None]:
        """Predictions [N, M, 5 + nc] and, if asked, spike counts [N, P, T] (float)."""
        if count_spikes not in self._graphs:
            self._graphs[count_spikes] = self._compile(
                cached_export(self.model, self.info, count_spikes))
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        outputs = self._infer(self._graphs[count_spikes], array)
        predictions = torch.from_numpy(outputs[0]).to(images.device)
        counts = torch.from_numpy(outputs[1]) if count_spikes else None
        return predictions, counts

    def _check_device(self) -> None:
        raise NotImplementedError

    def _compile(self, path: Path) -> Any:
        raise NotImplementedError

    def _infer(self, graph: Any, images: np.ndarray) -> list[np.ndarray]:
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

    def _infer(self, graph: Any, images: np.ndarray) -> list[np.ndarray]:
        names = [o.name for o in graph.get_outputs()]
        return graph.run(names, {INPUT_NAME: images})


class OpenVinoBackend(_GraphBackend):
    """OpenVINO on the CPU, in float32 (its default on CPUs with bf16 units is bf16, which moves
    boxes by pixels and spike levels across thresholds)."""

    name = "openvino"

    def _check_device(self) -> None:
        if self.device.type != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU here, not {self.device} "
                               "(OpenVINO has no CUDA device; use onnxruntime on NVIDIA GPUs)")

    def _compile(self, path: Path) -> Any:
        """One infer request per graph (it holds its compiled model); used by one thread."""
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return self.module.Core().compile_model(str(path), "CPU", config).create_infer_request()

    def _infer(self, graph: Any, images: np.ndarray) -> list[np.ndarray]:
        result = graph.infer({INPUT_NAME: images})
        by_name = {name: value for port, value in result.items() for name in port.names}
        wanted = [PREDICTIONS, SPIKE_COUNTS] if SPIKE_COUNTS in by_name else [PREDICTIONS]
        return [by_name[name] for name in wanted]


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

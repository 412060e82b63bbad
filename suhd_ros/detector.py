"""The Detector API: a model file in, detections and spike statistics per image out.

Pure PyTorch + numpy: the ROS nodes and the command-line tools both sit on top of this. It is
also the one home of the run-time choices every caller shares: the engine names (`ENGINES`),
device strings (`parse_device`, `resolve_device`), the CPU threads of inference and the way
to abandon an inference (`detect(cancel=...)`). The network itself runs behind a backend
(`backends.runtimes`: PyTorch, or the exported graph in ONNX Runtime or OpenVINO).
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from suhd_ros.backends.onnx_export import ExportInfo, spiking_layers
from suhd_ros.backends.runtimes import BACKENDS, BackendError, Levels, make_backend
from suhd_ros.paths import default_model_path, resolve_model_path
from suhd_ros.snn.coding import DEFAULT_T, SpikeCoding
from suhd_ros.snn.convert import conv_blocks, convert_to_snn, fold_batchnorm
from suhd_ros.snn.energy import EnergyMeter, FrameEnergy
from suhd_ros.snn.layers import SPIKING_ENGINES, set_counter, set_statistics
from suhd_ros.yolo.config import DEFAULT_INPUT_SIZE
from suhd_ros.yolo.letterbox import unletterbox_boxes
from suhd_ros.yolo.model_file import (
    SILU_APPROXIMATION,
    SILU_AS_RELU,
    ModelFile,
    ModelFileError,
    build_model,
    load_model_file,
    sha256_file,
)
from suhd_ros.yolo.postprocess import postprocess
from suhd_ros.yolo.preprocess import network_input

ENGINES = (*SPIKING_ENGINES, "ann")  # "ann": the source network with BN folded, to compare
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
__all__ = ["BACKENDS", "ENGINES", "DetectionCancelled", "Detector", "DetectorError", "FrameResult",
           "default_model_path", "parse_device", "resolve_device"]


class DetectorError(ValueError):
    """The detector cannot be built as asked: bad model file, device or setting."""


class DetectionCancelled(Exception):
    """detect() was abandoned between two layers because its `cancel` event was set."""


@dataclass
class FrameResult:
    """One image's detections (original image pixels) and the frame's spike statistics."""

    boxes_xyxy: np.ndarray  # [K, 4] float32
    scores: np.ndarray  # [K] float32, descending
    class_ids: np.ndarray  # [K] int64
    energy: FrameEnergy | None  # None for the ANN engine and frames not counted
    inference_s: float  # time of the batch this frame was in, divided by its size


def parse_device(spec: Any) -> str:
    """The normalised device string (auto / cpu / cuda / cuda:N); DetectorError if it is none.

    Needs no GPU, so a node can check a parameter before anything is loaded.
    """
    text = spec.strip().lower() if isinstance(spec, str) else ""
    if not _DEVICE.fullmatch(text):
        raise DetectorError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return text


def resolve_device(spec: str) -> torch.device:
    """auto / cpu / cuda / cuda:N -> a usable device; CUDA missing falls back to the CPU."""
    spec = parse_device(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            warnings.warn(f"{spec} is not available ({count} CUDA devices): using the CPU",
                          stacklevel=2)
            return torch.device("cpu")
    return device


def _coding(kind: str, T: Any, f_c: Any, half_start: bool) -> SpikeCoding:
    """The spike coding asked for; f_c None = the coding's own default."""
    try:
        return SpikeCoding(kind=kind, T=int(T), f_c=None if f_c is None else int(f_c),
                           half_start=half_start)
    except ValueError as e:
        raise DetectorError(f"invalid spike coding: {e}") from e


def _check_lambdas(ann: nn.Module, lambdas: dict[str, torch.Tensor], path: Path) -> None:
    """A layer's lambda is one value or one per output channel (else: a shape error later)."""
    for name, block in conv_blocks(ann).items():
        channels = block.conv.out_channels
        if name in lambdas and lambdas[name].numel() not in (1, channels):
            raise DetectorError(f"{path}: lambda of {name} has {lambdas[name].numel()} values, "
                                f"expected 1 or {channels} (its output channels)")


def _read_model_file(path: Path) -> tuple[ModelFile, nn.Module]:
    """The checked model file and its ANN; every way a file can be unusable is a DetectorError."""
    try:
        model_file = load_model_file(path)
        return model_file, build_model(model_file)
    except ModelFileError as e:
        raise DetectorError(str(e)) from e


def _approximation(path: Path, activation: str, snn_meta: dict, engine: str) -> str | None:
    """What the spiking network approximates beyond SUHD's quantisation, if anything: only a
    file that suhd-convert --allow-silu marked may run SiLU layers as spiking (ReLU) neurons."""
    if activation == "relu" or engine == "ann":
        return None
    if snn_meta.get(SILU_AS_RELU) is not True:
        raise DetectorError(f"{path} is a {activation} network; only ReLU layers become spiking "
                            "neurons: run it with engine 'ann', fine-tune it as ReLU, or "
                            "convert it with suhd-convert --allow-silu (an approximation)")
    return SILU_APPROXIMATION


def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0):
        shape = getattr(image, "shape", None)
        raise DetectorError(f"expected an RGB uint8 HxWx3 image, got {shape} "
                            f"{getattr(image, 'dtype', type(image).__name__)}")


def _cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Detector:
    """A YOLOv5 model file run as the SUHD spiking network (or as the ANN, to compare).

    engine: "fused" (fast, same meaning as the time loop), "reference" (the literal time loop
    over T steps) or "ann" (the source network with BN folded). timesteps / compression /
    coding ("stdi" or "rate") override the model file's; thresholds come from its calibrated
    lambdas, so any of them work (theta = lambda / L). `approximation` says (and a warning at
    construction states once) what else the SNN approximates: a SiLU network that suhd-convert
    --allow-silu converted runs its SiLU layers as ReLU neurons. statistics=False skips spike
    counting and energy figures (the fastest fused engine; FrameResult.energy is then None);
    with it on, detect(count_spikes=False) skips them for one call, so a caller can sample
    frames.
    threads: CPU threads of inference, set before each detect() in the thread that calls it
    (torch's OpenMP thread count belongs to the thread that sets it, so a node's worker thread
    must set its own); None leaves torch's setting alone.
    backend: "torch" runs the network in PyTorch; "onnxruntime" / "openvino" run its exported
    graph (built from the model file on first use and cached, see backends.runtimes), with the
    PyTorch network kept on the CPU for the export and the energy model. A runtime that is
    missing or cannot use the device is a DetectorError, never a quiet fallback. Foreign
    runtimes check `cancel` before and after the forward pass, not between layers.
    counting_thread: on the CPU, when inference leaves a core free (fewer `threads` than the
    cores this process may use), the PyTorch fused engine's spike histograms run on a thread of
    their own, beside the layers that follow: a counted frame takes less wall time, for more
    CPU time (the two threads slow each other where the cores share caches or are SMT twins).
    """

    def __init__(self, model_path: str | Path, device: str = "auto", engine: str = "fused",
                 timesteps: int | None = None, compression: int | None = None,
                 coding: str | None = None, statistics: bool = True,
                 threads: int | None = None, backend: str = "torch",
                 counting_thread: bool = True) -> None:
        if backend not in BACKENDS:
            raise DetectorError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend != "torch" and engine == "reference":
            raise DetectorError("the reference engine runs only in PyTorch (backend torch)")
        if engine not in ENGINES:
            raise DetectorError(f"engine must be one of {ENGINES}, got {engine!r}")
        if threads is not None and threads < 1:
            raise DetectorError(f"threads must be at least 1 (or None), got {threads}")
        self.threads = threads
        self.model_path = resolve_model_path(model_path)
        model_file, ann = _read_model_file(self.model_path)
        meta = model_file.metadata
        snn_meta = meta.get("snn", {})
        self.names: list[str] = list(meta["names"])
        size = meta.get("input_size") or DEFAULT_INPUT_SIZE
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.engine = engine
        self.approximation = _approximation(self.model_path, ann.activation, snn_meta, engine)
        if self.approximation:
            warnings.warn(f"{self.model_path.name}: {self.approximation}", stacklevel=2)
        self.device = resolve_device(device)
        self.coding = _coding(coding or snn_meta.get("coding", "stdi"),
                              timesteps or snn_meta.get("T", DEFAULT_T),
                              compression or snn_meta.get("f_c"),
                              bool(snn_meta.get("half_start", False)))
        model_device = self.device if backend == "torch" else torch.device("cpu")
        self.model = self._build(ann, model_file.lambdas).to(model_device).eval()
        self.backend = self._backend(backend)
        self._cancel: threading.Event | None = None
        self._cancel_hooks = False
        self._counting = statistics
        set_statistics(self.model, statistics)
        self.energy_meter = EnergyMeter(self.model) if engine != "ann" and statistics else None
        if self.energy_meter:  # probe the graph now, not on frame 1, on `threads` threads
            caller_threads = torch.get_num_threads()
            torch.set_num_threads(threads or caller_threads)
            try:
                self.energy_meter.graph((3, *self.input_size))
            finally:
                torch.set_num_threads(caller_threads)
        self._layers = dict(spiking_layers(self.model))
        if (self.energy_meter and counting_thread and backend == "torch" and engine == "fused"
                and self.device.type == "cpu" and (threads or torch.get_num_threads()) < _cores()):
            counter = ThreadPoolExecutor(1, "suhd-spike-counts", torch.set_num_threads, (1,))
            weakref.finalize(self, counter.shutdown, False)
            set_counter(self.model, counter)

    @property
    def T(self) -> int:
        return self.coding.T

    @property
    def f_c(self) -> int:
        return self.coding.f_c

    def _build(self, ann: nn.Module, lambdas: dict[str, torch.Tensor]) -> nn.Module:
        ann.eval()
        if self.engine == "ann":
            return fold_batchnorm(ann)
        if not lambdas:
            raise DetectorError(f"{self.model_path} has no calibrated thresholds: "
                                "make an SNN model file with suhd-convert")
        _check_lambdas(ann, lambdas, self.model_path)
        try:
            return convert_to_snn(ann, lambdas, self.coding, engine=self.engine,
                                  allow_silu=self.approximation is not None)
        except (KeyError, ValueError) as e:
            raise DetectorError(f"cannot convert {self.model_path} to an SNN: {e}") from e

    def _backend(self, name: str) -> Any:
        info = None if name == "torch" else ExportInfo(
            tuple(self.names), self.input_size, self.engine,
            None if self.engine == "ann" else self.coding, sha256_file(self.model_path))
        try:
            return make_backend(name, self.model, info, self.device, self.threads)
        except BackendError as e:
            raise DetectorError(str(e)) from e

    def _forward(self, x: torch.Tensor, count_spikes: bool) -> torch.Tensor:
        """Predictions from the backend; the levels a graph returns are counted into the layers'
        statistics, where the energy meter reads them as it reads PyTorch's own."""
        if self.backend.name != "torch":
            self._check_cancel(None, None)
        predictions, levels = self.backend.run(x, count_spikes)
        if levels is not None:
            self._count_levels(levels)
        if self.backend.name != "torch":
            self._check_cancel(None, None)
        return predictions

    def _count_levels(self, levels: Levels) -> None:
        """Count a graph's levels into the layers' statistics, here (splitting them with the
        counting thread measured no faster: the two cores slow each other)."""
        for name, n in levels:
            self._layers[name].record_levels(n)

    def _meter_for_call(self, count_spikes: bool) -> EnergyMeter | None:
        """Spike counting on or off for the next forward pass; the meter to read it, if on."""
        meter = self.energy_meter if count_spikes else None
        if (meter is not None) != self._counting:
            self._counting = meter is not None
            set_statistics(self.model, self._counting)
        if meter is not None:
            meter.reset()  # counts accumulate per sample: one frame's only
        return meter

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list]:
        """Letterbox each RGB image to the model's input size -> a [N, 3, H, W] float batch."""
        for image in images:
            _check_image(image)
        return network_input(images, self.input_size, self.device)

    def _watch(self, cancel: threading.Event | None) -> None:
        """Arm `cancel` for the next forward pass; the hooks go in on the first call that
        passes one, so callers that never cancel pay nothing."""
        self._cancel = cancel
        if cancel is not None and not self._cancel_hooks:
            for module in self.model.modules():
                module.register_forward_pre_hook(self._check_cancel)
            self._cancel_hooks = True

    def _check_cancel(self, _module: nn.Module, _inputs: Any) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise DetectionCancelled("detection cancelled")

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray], score_threshold: float = 0.25,
               iou_threshold: float = 0.45, max_detections: int = 100,
               classes: Sequence[int] | None = None,
               count_spikes: bool = True, multi_label: bool = False,
               cancel: threading.Event | None = None) -> list[FrameResult]:
        """Detections per image, boxes in that image's own pixels, with its spike statistics
        (count_spikes=False: none this call, at the speed of statistics=False; multi_label:
        every class above the threshold per box, as YOLOv5 scores mAP). Setting `cancel`
        (from another thread) abandons the call before the next layer: DetectionCancelled."""
        if len(images) == 0:
            return []
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        start = time.perf_counter()
        x, infos = self.preprocess(images)
        meter = self._meter_for_call(count_spikes)
        self._watch(cancel)
        predictions = self._forward(x, meter is not None)
        per_image = postprocess(predictions, score_threshold, iou_threshold,
                                list(classes) if classes else None, max_detections, multi_label)
        energy = [FrameEnergy.from_report(meter.report(x.shape, i)) if meter else None
                  for i in range(len(images))]
        elapsed = (time.perf_counter() - start) / len(images)
        return [
            FrameResult(unletterbox_boxes(d.boxes_xyxy, info), d.scores, d.class_ids, e, elapsed)
            for d, info, e in zip(per_image, infos, energy, strict=True)
        ]

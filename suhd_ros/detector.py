"""The Detector API: a model file in, detections and spike statistics per image out.

Pure PyTorch + numpy: the ROS nodes and the command-line tools both sit on top of this.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from suhd_ros.paths import default_model_path, resolve_model_path
from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import conv_blocks, convert_to_snn, fold_batchnorm
from suhd_ros.snn.energy import EnergyMeter
from suhd_ros.snn.layers import reset_statistics, set_statistics
from suhd_ros.yolo.letterbox import letterbox, unletterbox_boxes
from suhd_ros.yolo.model_file import ModelFile, ModelFileError, build_model, load_model_file
from suhd_ros.yolo.postprocess import postprocess

ENGINES = ("fused", "reference", "ann")
__all__ = ["Detector", "DetectorError", "FrameResult", "default_model_path", "resolve_device"]


class DetectorError(ValueError):
    """The detector cannot be built as asked: bad model file, device or setting."""


@dataclass
class FrameResult:
    """One image's detections (original image pixels) and the frame's spike statistics."""

    boxes_xyxy: np.ndarray  # [K, 4] float32
    scores: np.ndarray  # [K] float32, descending
    class_ids: np.ndarray  # [K] int64
    energy: dict[str, float] | None  # None for the ANN engine
    inference_s: float  # time of the batch this frame was in, divided by its size


def resolve_device(spec: str) -> torch.device:
    """auto / cpu / cuda / cuda:N -> a usable device; CUDA missing falls back to the CPU."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise DetectorError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}") from e
    if device.type not in ("cpu", "cuda"):
        raise DetectorError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            warnings.warn(f"{spec} is not available ({count} CUDA devices): using the CPU",
                          stacklevel=2)
            return torch.device("cpu")
    return device


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


def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0):
        shape = getattr(image, "shape", None)
        raise DetectorError(f"expected an RGB uint8 HxWx3 image, got {shape} "
                            f"{getattr(image, 'dtype', type(image).__name__)}")


class Detector:
    """A YOLOv5 model file run as the SUHD spiking network (or as the ANN, to compare).

    engine: "fused" (fast, same meaning as the time loop), "reference" (the literal time loop
    over T steps) or "ann" (the source network with BN folded). timesteps / compression /
    coding ("stdi" or "rate") override the model file's; thresholds come from its calibrated
    lambdas, so any of them work (theta = lambda / L). statistics=False skips spike counting
    and energy figures (the fastest fused engine; FrameResult.energy is then None); with it on,
    detect(count_spikes=False) skips them for one call, so a caller can sample frames.
    """

    def __init__(self, model_path: str | Path, device: str = "auto", engine: str = "fused",
                 timesteps: int | None = None, compression: int | None = None,
                 coding: str | None = None, half: bool = False,
                 statistics: bool = True) -> None:
        if engine not in ENGINES:
            raise DetectorError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.model_path = resolve_model_path(model_path)
        model_file, ann = _read_model_file(self.model_path)
        meta = model_file.metadata
        snn_meta = meta.get("snn", {})
        self.names: list[str] = list(meta["names"])
        size = meta.get("input_size") or [640, 640]
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.engine = engine
        self.device = resolve_device(device)
        self.half = half and self.device.type == "cuda"
        try:
            self.coding = SpikeCoding(
                kind=coding or snn_meta.get("coding", "stdi"),
                T=int(timesteps or snn_meta.get("T", 4)),
                f_c=int(compression or snn_meta.get("f_c", 4)),
                half_start=bool(snn_meta.get("half_start", False)),
            )
        except ValueError as e:
            raise DetectorError(f"invalid spike coding: {e}") from e
        self.model = self._build(ann, model_file.lambdas).to(self.device).eval()
        if self.half:
            self.model.half()
        self._counting = statistics
        set_statistics(self.model, statistics)
        self.energy_meter = EnergyMeter(self.model) if engine != "ann" and statistics else None
        if self.energy_meter:
            self.energy_meter.graph((3, *self.input_size))  # probe the graph now, not on frame 1

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
            return convert_to_snn(ann, lambdas, self.coding, engine=self.engine)
        except (KeyError, ValueError) as e:
            raise DetectorError(f"cannot convert {self.model_path} to an SNN: {e}") from e

    def _meter_for_call(self, count_spikes: bool) -> EnergyMeter | None:
        """Spike counting on or off for the next forward pass; the meter to read it, if on."""
        meter = self.energy_meter if count_spikes else None
        if (meter is not None) != self._counting:
            self._counting = meter is not None
            set_statistics(self.model, self._counting)
        if meter is not None:
            reset_statistics(self.model)  # counts accumulate per sample: one frame's only
        return meter

    @staticmethod
    def _energy(meter: EnergyMeter, input_shape: torch.Size, sample: int) -> dict[str, float]:
        """The frame's totals: what a node publishes (per-layer figures via energy_meter)."""
        report = meter.report(input_shape, sample)
        neurons = sum(layer.neurons for layer in report.layers)
        return {
            "spikes": report.spikes,
            "spikes_per_neuron_step": report.spikes / (neurons * report.T) if neurons else 0.0,
            "sops": report.sops,
            "macs_first_layer": float(report.macs_first),
            "macs_ann": float(report.macs_ann),
            "energy_snn_j": report.energy_snn,
            "energy_ann_j": report.energy_ann,
        }

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list]:
        """Letterbox each RGB image to the model's input size -> a [N, 3, H, W] float batch."""
        batch, infos = [], []
        for image in images:
            _check_image(image)
            padded, info = letterbox(image, self.input_size)
            batch.append(padded)
            infos.append(info)
        x = torch.from_numpy(np.stack(batch)).to(self.device).permute(0, 3, 1, 2)
        x = x.half() if self.half else x.float()
        return x / 255.0, infos

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray], score_threshold: float = 0.25,
               iou_threshold: float = 0.45, max_detections: int = 100,
               classes: Sequence[int] | None = None,
               count_spikes: bool = True, multi_label: bool = False) -> list[FrameResult]:
        """Detections per image, boxes in that image's own pixels, with its spike statistics
        (count_spikes=False: none this call, at the speed of statistics=False; multi_label:
        every class above the threshold per box, as YOLOv5 scores mAP)."""
        if len(images) == 0:
            return []
        start = time.perf_counter()
        x, infos = self.preprocess(images)
        meter = self._meter_for_call(count_spikes)
        predictions, _raw = self.model(x)
        per_image = postprocess(predictions, score_threshold, iou_threshold,
                                list(classes) if classes else None, max_detections, multi_label)
        energy = [self._energy(meter, x.shape, i) if meter else None for i in range(len(images))]
        elapsed = (time.perf_counter() - start) / len(images)
        return [
            FrameResult(unletterbox_boxes(d.boxes_xyxy, info), d.scores, d.class_ids, e, elapsed)
            for d, info, e in zip(per_image, infos, energy, strict=True)
        ]

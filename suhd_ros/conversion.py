"""ANN weights + calibration images -> an SNN model file (what `suhd-convert` runs).

Sources: one of our model files (e.g. what `suhd-train` writes) or an Ultralytics YOLOv5 `.pt`
checkpoint, read without executing pickled code. Calibration images: a folder of pictures, a
sample of a labelled dataset's split (`suhd_ros.datasets`), or scenes of the project's own
benchmark generator.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from suhd_ros.datasets import ImageReadError, LabelledDataset
from suhd_ros.snn.coding import DEFAULT_F_C, DEFAULT_T, SpikeCoding
from suhd_ros.snn.convert import calibrate_thresholds, convert_to_snn
from suhd_ros.yolo.checkpoint import import_ultralytics_checkpoint, yolov5_from_checkpoint
from suhd_ros.yolo.config import DEFAULT_INPUT_SIZE
from suhd_ros.yolo.model import YOLOv5
from suhd_ros.yolo.model_file import (
    SILU_APPROXIMATION,
    SILU_AS_RELU,
    build_model,
    load_model_file,
    model_metadata,
    save_model_file,
    sha256_file,
)
from suhd_ros.yolo.preprocess import network_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class ConversionSettings:
    """What the SNN is made with; T and f_c can still be overridden when the file is loaded."""

    T: int = DEFAULT_T
    f_c: int = DEFAULT_F_C
    coding: str = "stdi"
    half_start: bool = False
    percentile: float = 99.99
    per_channel: bool = False
    allow_silu: bool = False


def load_ann(path: str | Path) -> tuple[YOLOv5, list[int] | None]:
    """The ANN and its input size (None when the source does not say) from a weights file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        model_file = load_model_file(path)
        return build_model(model_file), model_file.metadata.get("input_size")
    return yolov5_from_checkpoint(import_ultralytics_checkpoint(path)), None


def image_files(folder: str | Path) -> list[Path]:
    """Calibration pictures in a folder (recursively), in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def dataset_calibration(dataset: LabelledDataset, count: int, seed: int = 0
                        ) -> Iterator[np.ndarray]:
    """`count` images of a dataset split drawn at random (seeded) without repeats, read in file
    order: thresholds see the whole split, not its first folder. An image damaged since it was
    indexed is reported and left out."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(dataset), min(count, len(dataset)), replace=False))
    for index in picked.tolist():
        try:
            yield dataset.read_image(index)
        except ImageReadError as e:
            warnings.warn(f"{e}: left out of the calibration", stacklevel=2)


def batches_of(images: Sequence[np.ndarray] | Iterator[np.ndarray], input_size: Sequence[int],
               batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Network input batches [B, 3, H, W] made by `network_input`, as the Detector makes them."""
    chunk: list[np.ndarray] = []
    for image in images:
        chunk.append(image)
        if len(chunk) == batch_size:
            yield network_input(chunk, input_size)[0]
            chunk = []
    if chunk:
        yield network_input(chunk, input_size)[0]


def convert(source: str | Path, calibration: Sequence[np.ndarray] | Iterator[np.ndarray],
            output: str | Path, settings: ConversionSettings,
            input_size: Sequence[int] | None = None, progress: bool = True) -> Path:
    """Calibrate lambda per conv block, check the SNN builds, write the SNN model file."""
    ann, stored_size = load_ann(source)
    silu_as_relu = ann.activation != "relu"
    if silu_as_relu:
        if not settings.allow_silu:
            raise ValueError(f"{source} uses {ann.activation}, which does not convert well; "
                             "fine-tune it as ReLU, or pass --allow-silu to convert it anyway")
        warnings.warn(SILU_APPROXIMATION, stacklevel=2)
    size = list(input_size or stored_size or DEFAULT_INPUT_SIZE)
    coding = SpikeCoding(settings.coding, settings.T, settings.f_c, settings.half_start)
    lambdas = calibrate_thresholds(ann.eval(), batches_of(calibration, size),
                                   settings.percentile, settings.per_channel, progress)
    convert_to_snn(ann, lambdas, coding, allow_silu=settings.allow_silu)  # fails early if not
    metadata = snn_model_metadata(ann, size, coding, lambdas, settings.percentile,
                                  settings.per_channel, source_sha256=sha256_file(source))
    save_model_file(output, ann.state_dict(), metadata, lambdas)
    return Path(output)


def snn_model_metadata(ann: YOLOv5, input_size: Sequence[int], coding: SpikeCoding,
                       lambdas: dict[str, torch.Tensor], percentile: float, per_channel: bool,
                       source_sha256: str | None = None, **snn_extra: object) -> dict:
    """An SNN model file's metadata: the ANN's, plus the coding it runs with and what its
    thresholds were calibrated with (what the Detector reads back)."""
    snn_meta = {"T": coding.T, "f_c": coding.f_c, "coding": coding.kind,
                "half_start": coding.half_start, "percentile": percentile,
                "per_channel": per_channel, SILU_AS_RELU: ann.activation != "relu", **snn_extra}
    calibration = {"lambda_max": {name: float(lam.max()) for name, lam in lambdas.items()}}
    return model_metadata(ann, list(input_size), snn=snn_meta, calibration=calibration,
                          source_sha256=source_sha256)

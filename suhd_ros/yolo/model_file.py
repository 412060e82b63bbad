"""The project's model file: one safetensors file, tensors plus JSON metadata; never unpickled.

Layout: the network's state dict under its own names ("model.0.conv.weight", ...), per-layer
SNN thresholds lambda under ``snn.lambda.<layer name>``, and in the safetensors header metadata
the key "suhd" holding a JSON object (format version, class names, input size, description,
activation, anchors, strides, SNN settings, calibration statistics, sha256 of the source weights).
"""

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from suhd_ros.yolo.model import YOLOv5, load_checked_state_dict

FORMAT_VERSION = 1
METADATA_KEY = "suhd"
LAMBDA_PREFIX = "snn.lambda."
REQUIRED_METADATA = ("format_version", "names", "description", "activation")
# metadata["snn"][SILU_AS_RELU] = True: suhd-convert --allow-silu made this SNN from a SiLU
# network, whose SiLU layers then run as ReLU spiking neurons (an approximation, stated once
# wherever the file is loaded)
SILU_AS_RELU = "silu_as_relu"
SILU_APPROXIMATION = ("approximation: this SiLU network's activations run as ReLU spiking "
                      "neurons (converted with --allow-silu); expect lower accuracy than a "
                      "ReLU-trained model")
INPUT_SIDE_RANGE = (32, 4096)  # px: one cell of YOLOv5's coarsest stride .. sane memory
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip, raw pickle


class ModelFileError(ValueError):
    """A model file is missing, damaged, of another format, or does not fit its description."""


@dataclass
class ModelFile:
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    lambdas: dict[str, torch.Tensor] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, to record which source weights a model file came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_metadata(
    model: YOLOv5,
    input_size: tuple[int, int],
    snn: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    source_sha256: str | None = None,
) -> dict[str, Any]:
    """The metadata dict for ``model``; ``snn`` holds T, f_c, coding, engine, percentile, ..."""
    detect = model.detect
    anchors_px = detect.anchors * detect.stride.view(-1, 1, 1)
    return {
        "format_version": FORMAT_VERSION,
        "names": list(model.names),
        "input_size": [int(s) for s in input_size],
        "description": model.description,
        "activation": model.activation,
        "anchors": anchors_px.tolist(),
        "strides": detect.stride.tolist(),
        "snn": dict(snn or {}),
        "calibration": dict(calibration or {}),
        "source_sha256": source_sha256,
    }


def _check_metadata(metadata: Mapping[str, Any], path: Path) -> None:
    """What the readers rely on: a string of names would silently become one class per letter,
    and an absurd input size would fail (or allocate gigabytes) only at the first frame."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: unsupported model file format version {metadata['format_version']!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    names, size = metadata["names"], metadata.get("input_size")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{path}: metadata 'names' must be a list of strings, "
                             f"got {names!r:.80}")
    low, high = INPUT_SIDE_RANGE
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            type(v) is int and low <= v <= high for v in size)):
        raise ModelFileError(f"{path}: metadata 'input_size' must be [H, W], integers in "
                             f"{low}..{high}, got {size!r:.80}")
    for key in ("snn", "calibration", "description"):
        if not isinstance(metadata.get(key, {}), dict):
            raise ModelFileError(f"{path}: metadata '{key}' must be an object, "
                                 f"got {metadata[key]!r:.80}")


def save_model_file(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    lambdas: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write tensors and metadata atomically (temporary file, then rename)."""
    path = Path(path)
    metadata = {"format_version": FORMAT_VERSION, **metadata}
    _check_metadata(metadata, path)
    clashes = [k for k in state_dict if k.startswith(LAMBDA_PREFIX)]
    if clashes:
        raise ModelFileError(f"state dict keys clash with the lambda prefix: {clashes[:4]}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    for name, value in (lambdas or {}).items():
        tensors[LAMBDA_PREFIX + name] = torch.as_tensor(value).detach().cpu().contiguous()
    try:
        header = {METADATA_KEY: json.dumps(metadata)}
    except TypeError as e:
        raise ModelFileError(f"metadata is not JSON-serialisable: {e}") from e
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)


def _read_header(path: Path) -> dict[str, Any]:
    """Validate the safetensors framing ourselves so each failure gets a plain message."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path} is empty")
    with open(path, "rb") as f:
        head = f.read(9)
        # A safetensors header is JSON right after its 8-byte length. Only without that brace
        # does a pickle's first byte mean a pickle: a length like 0x...80 starts with 0x80 too.
        if head[8:9] != b"{" and head.startswith(_PICKLE_MAGIC):
            raise ModelFileError(
                f"{path} is not a safetensors model file: this looks like a PyTorch pickle; "
                "use suhd-convert to make a model file from it"
            )
        if len(head) < 9:
            raise ModelFileError(f"{path} is truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", head[:8])
        f.seek(8)
        if n > _MAX_HEADER_BYTES:
            raise ModelFileError(f"{path} is not a safetensors file (bad header length)")
        if 8 + n > size:
            raise ModelFileError(f"{path} is truncated: header needs {n} bytes")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ModelFileError(f"{path} is not a safetensors file (header: {e})") from e
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a safetensors file (header is not an object)")
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise ModelFileError(f"{path} is not a safetensors file (tensor entry: {e})") from e
    if 8 + n + max(ends, default=0) > size:
        raise ModelFileError(f"{path} is truncated: tensor data ends early")
    return header


def _parse_metadata(header: Mapping[str, Any], path: Path) -> dict[str, Any]:
    extra = header.get("__metadata__") or {}
    raw = extra.get(METADATA_KEY) if isinstance(extra, dict) else None
    if not isinstance(raw, str):
        raise ModelFileError(f"{path}: no '{METADATA_KEY}' metadata; not a suhd_ros model file")
    try:
        metadata = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:  # hostile: nested past the limit
        raise ModelFileError(f"{path}: invalid '{METADATA_KEY}' metadata JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: '{METADATA_KEY}' metadata is not a JSON object")
    _check_metadata(metadata, path)
    return metadata


def load_model_file(path: str | Path) -> ModelFile:
    """Read a model file; safetensors only parses raw tensor bytes, nothing is unpickled."""
    path = Path(path)
    metadata = _parse_metadata(_read_header(path), path)
    try:
        tensors = load_file(str(path))
    except SafetensorError as e:
        raise ModelFileError(f"{path}: damaged safetensors file: {e}") from e
    lambdas = {
        k[len(LAMBDA_PREFIX):]: v for k, v in tensors.items() if k.startswith(LAMBDA_PREFIX)
    }
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:  # NaN weights or thresholds give no detections at all, with no error
        raise ModelFileError(f"{path}: non-finite values in {len(bad)} tensor(s): {bad[:4]}")
    state_dict = {k: v for k, v in tensors.items() if not k.startswith(LAMBDA_PREFIX)}
    return ModelFile(state_dict=state_dict, metadata=metadata, lambdas=lambdas)


def build_model(model_file: ModelFile) -> YOLOv5:
    """The ANN described by the file, with its weights; mismatched tensors are named."""
    meta = model_file.metadata
    try:
        model = YOLOv5(meta["description"], activation=meta["activation"], names=meta["names"])
        load_checked_state_dict(model, model_file.state_dict)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ModelFileError(f"model file does not match its description: {e}") from e
    return model

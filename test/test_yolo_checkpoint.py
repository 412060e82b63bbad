"""Ultralytics checkpoint import: a stand-in checkpoint imports, hostile pickles are refused."""

import contextlib
import functools
import os
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from suhd_ros.yolo import blocks
from suhd_ros.yolo.checkpoint import (
    CheckpointImportError,
    UnsafeCheckpointError,
    import_ultralytics_checkpoint,
    yolov5_from_checkpoint,
)
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5

torch.set_num_threads(1)

_COMMON = ("Conv", "Bottleneck", "C3", "SPPF", "Concat")


@contextlib.contextmanager
def _ultralytics_modules() -> Iterator[dict[type, type]]:
    """Fake 'models.yolo' / 'models.common' modules holding stand-in classes, only while open."""
    names = ("models", "models.yolo", "models.common")
    fakes = {n: types.ModuleType(n) for n in names}
    standins: dict[type, type] = {}
    for base, module, name in [
        *[(getattr(blocks, n), "models.common", n) for n in _COMMON],
        (blocks.Detect, "models.yolo", "Detect"),
        (YOLOv5, "models.yolo", "DetectionModel"),
    ]:
        cls = type(name, (base,), {"__module__": module, "__qualname__": name})
        setattr(fakes[module], name, cls)
        standins[base] = cls
    sys.modules.update(fakes)
    try:
        yield standins
    finally:
        for n in names:
            sys.modules.pop(n, None)


def _write_ultralytics_like(path: Path, model: YOLOv5) -> None:
    """torch.save a dict shaped like a stripped YOLOv5 training checkpoint (fp16 model)."""
    model.yaml = model.description  # Ultralytics keeps the description as .yaml
    with _ultralytics_modules() as standins:
        for m in model.modules():
            if type(m) in standins:
                m.__class__ = standins[type(m)]
        checkpoint = {
            "epoch": -1,
            "best_fitness": np.array([0.42]),
            "model": model,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "opt": {"imgsz": 64, "weights": "yolov5n.pt"},
            "date": "2024-01-01T00:00:00",
        }
        torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def stand_in_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    torch.manual_seed(0)
    desc = yolov5_description("n", 2)
    model = YOLOv5(desc, activation="silu", names=["cat", "dog"]).half()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
    expected = {
        k: (v.float() if v.is_floating_point() else v).clone()
        for k, v in model.state_dict().items()
    }
    path = tmp_path_factory.mktemp("ckpt") / "yolov5n_standin.pt"
    _write_ultralytics_like(path, model)
    return path, desc, expected


def test_stand_in_checkpoint_imports(stand_in_checkpoint: tuple[Path, dict, dict]) -> None:
    path, desc, expected = stand_in_checkpoint
    assert "models.yolo" not in sys.modules  # nothing to import the real classes from
    imported = import_ultralytics_checkpoint(path)
    assert imported.description == {**desc, "bn_eps": 1e-3, "bn_momentum": 0.03}
    assert imported.names == ["cat", "dog"]
    assert imported.activation == "silu"
    assert list(imported.state_dict) == list(expected)
    for key, tensor in expected.items():
        got = imported.state_dict[key]
        assert got.dtype == tensor.dtype, key
        assert torch.equal(got, tensor), key
    assert imported.state_dict["model.0.conv.weight"].dtype == torch.float32


def test_imported_checkpoint_builds_our_model(
    stand_in_checkpoint: tuple[Path, dict, dict],
) -> None:
    path, desc, expected = stand_in_checkpoint
    model = yolov5_from_checkpoint(import_ultralytics_checkpoint(path)).eval()
    assert isinstance(model.model[0].act, nn.SiLU)
    reference = YOLOv5(desc, activation="silu").eval()
    reference.load_state_dict(expected)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)[0], reference(x)[0])


def test_mismatched_description_is_named(stand_in_checkpoint: tuple[Path, dict, dict]) -> None:
    imported = import_ultralytics_checkpoint(stand_in_checkpoint[0])
    imported.description["width_multiple"] = 0.5
    with pytest.raises(ValueError, match=r"model\.0\.conv\.weight: shape \(16, 3, 6, 6\)"):
        yolov5_from_checkpoint(imported)


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('pwned')"

    def __reduce__(self) -> tuple:
        return exec, (self.code,)


class _System:
    def __init__(self, marker: Path) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


@pytest.mark.parametrize(("payload", "global_name"), [
    (_Exec, "builtins.exec"),
    (_System, f"{os.system.__module__}.system"),
])
def test_hostile_pickle_is_refused(tmp_path: Path, payload: type, global_name: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"model": payload(marker), "epoch": 0}, path)
    with pytest.raises(UnsafeCheckpointError, match=global_name.replace(".", r"\.")):
        import_ultralytics_checkpoint(path)
    assert not marker.exists()
    # the payload is live: an unrestricted unpickler would have run it
    pickle.loads(pickle.dumps(payload(marker)))
    assert marker.exists()


def test_hidden_callable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"model": None, "opt": [{"hook": functools.partial(print, "x")}]}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"functools\.partial"):
        import_ultralytics_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"model": {"a": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointImportError, match="DetectionModel"):
        import_ultralytics_checkpoint(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointImportError, match="not a zip"):
        import_ultralytics_checkpoint(path)

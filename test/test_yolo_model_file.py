"""Model files: a good one round-trips; damaged or foreign ones give clear ModelFileErrors."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5
from suhd_ros.yolo.model_file import (
    LAMBDA_PREFIX,
    ModelFileError,
    build_model,
    load_model_file,
    model_metadata,
    save_model_file,
    sha256_file,
)

torch.set_num_threads(1)

SNN = {"T": 4, "f_c": 4, "coding": "stdi", "engine": "fused", "percentile": 99.99,
       "per_channel": False}


@pytest.fixture(scope="module")
def model() -> YOLOv5:
    torch.manual_seed(0)
    return YOLOv5(yolov5_description("n", 2), names=["a", "b"]).eval()


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory, model: YOLOv5) -> Path:
    path = tmp_path_factory.mktemp("mf") / "model.safetensors"
    source = path.with_name("source.pt")
    source.write_bytes(b"weights")
    meta = model_metadata(model, (320, 320), snn=SNN, calibration={"images": 8},
                          source_sha256=sha256_file(source))
    lambdas = {"model.0": torch.tensor(3.5), "model.1": torch.arange(32, dtype=torch.float32)}
    save_model_file(path, model.state_dict(), meta, lambdas=lambdas)
    return path


def test_round_trip(good_file: Path, model: YOLOv5) -> None:
    loaded = load_model_file(good_file)
    expected = model.state_dict()
    assert sorted(loaded.state_dict) == sorted(expected)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in expected.items())
    assert loaded.lambdas.keys() == {"model.0", "model.1"}
    assert loaded.lambdas["model.0"].item() == 3.5
    assert torch.equal(loaded.lambdas["model.1"], torch.arange(32, dtype=torch.float32))
    meta = loaded.metadata
    assert meta["format_version"] == 1 and meta["names"] == ["a", "b"]
    assert meta["input_size"] == [320, 320] and meta["snn"] == SNN
    assert meta["description"] == yolov5_description("n", 2)
    assert meta["strides"] == [8.0, 16.0, 32.0]
    assert meta["anchors"][2][2] == [373.0, 326.0]
    assert meta["source_sha256"] == hashlib.sha256(b"weights").hexdigest()
    rebuilt = build_model(loaded).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x)[0], model(x)[0])


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_model_file(tmp_path / "nope.safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_model_file(empty)


@pytest.mark.parametrize("keep", [4, 100, 0.5, -1])
def test_truncated(tmp_path: Path, good_file: Path, keep: float) -> None:
    data = good_file.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model_file(path)


def test_pytorch_pickle_is_recognised(tmp_path: Path, model: YOLOv5) -> None:
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelFileError, match="PyTorch pickle; use suhd-convert"):
        load_model_file(path)


def test_header_length_starting_like_a_pickle_still_loads(tmp_path: Path, model: YOLOv5) -> None:
    """A header length whose low byte is 0x80 (a pickle's first byte) is a valid file."""
    path = tmp_path / "m.safetensors"
    for pad in range(0, 512, 8):
        meta = {**model_metadata(model, (320, 320)), "note": "x" * pad}
        save_model_file(path, model.state_dict(), meta)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert load_model_file(path).metadata["note"] == "x" * pad


def test_garbage_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes((20).to_bytes(8, "little") + b"{this is not json!!}" + b"\0" * 8)
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model_file(path)


def _plain_safetensors(path: Path, metadata: dict[str, str] | None) -> Path:
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


def test_missing_or_invalid_metadata(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no 'suhd' metadata"):
        load_model_file(_plain_safetensors(tmp_path / "a.safetensors", None))
    with pytest.raises(ModelFileError, match="invalid 'suhd' metadata JSON"):
        load_model_file(_plain_safetensors(tmp_path / "b.safetensors", {"suhd": "{oops"}))
    incomplete = {"suhd": json.dumps({"format_version": 1, "names": []})}
    with pytest.raises(ModelFileError, match="metadata lacks"):
        load_model_file(_plain_safetensors(tmp_path / "c.safetensors", incomplete))


def test_unsupported_format_version(tmp_path: Path, good_file: Path) -> None:
    meta = load_model_file(good_file).metadata | {"format_version": 99}
    path = _plain_safetensors(tmp_path / "v99.safetensors", {"suhd": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="unsupported model file format version 99"):
        load_model_file(path)


def test_shapes_must_match_the_description(tmp_path: Path, good_file: Path) -> None:
    loaded = load_model_file(good_file)
    loaded.metadata["description"] = yolov5_description("s", 2)
    with pytest.raises(ModelFileError, match=r"model\.0\.conv\.weight: shape \(16, 3, 6, 6\)"):
        build_model(loaded)
    del loaded.state_dict["model.24.anchors"]
    loaded.metadata["description"] = yolov5_description("n", 2)
    with pytest.raises(ModelFileError, match=r"missing model\.24\.anchors"):
        build_model(loaded)


def test_save_refuses_bad_input(tmp_path: Path, model: YOLOv5) -> None:
    meta = model_metadata(model, (64, 64))
    with pytest.raises(ModelFileError, match="lambda prefix"):
        save_model_file(tmp_path / "x.safetensors", {LAMBDA_PREFIX + "x": torch.zeros(1)}, meta)
    with pytest.raises(ModelFileError, match="JSON"):
        save_model_file(tmp_path / "y.safetensors", {}, meta | {"calibration": {1j: 0}})
    assert not list(tmp_path.iterdir())

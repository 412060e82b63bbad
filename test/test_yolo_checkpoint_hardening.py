"""Ultralytics checkpoints the importer once got wrong, made by stand-in classes that share no
code with suhd_ros's model (test/ultralytics_standin.py): BN eps other than YOLOv5's, AutoAnchor's
`anchors: 3`, damaged archives, a decompression bomb, and SiLU files converted with --allow-silu.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from suhd_ros.detector import Detector
from suhd_ros.frame_statistics import InferenceErrors
from suhd_ros.ros import diagnostics
from suhd_ros.tools.convert import main as suhd_convert
from suhd_ros.yolo.checkpoint import (
    CheckpointImportError,
    import_ultralytics_checkpoint,
    yolov5_from_checkpoint,
)
from suhd_ros.yolo.model_file import SILU_AS_RELU, load_model_file

import ultralytics_standin as standin
from tiny_model import TINY_SIZE

torch.set_num_threads(1)
INPUT = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def _raw_outputs(model: nn.Module) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(INPUT)
    return out[1] if isinstance(out, tuple) else out  # ours in eval: (decoded, raw)


def _assert_same_outputs(ours: nn.Module, theirs: nn.Module) -> None:
    for got, want in zip(_raw_outputs(ours.eval()), _raw_outputs(theirs), strict=True):
        assert got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()


def test_bn_eps_of_the_checkpoint_is_carried_over(tmp_path: Path) -> None:
    theirs = standin.build(bn_eps=1e-5)
    path = standin.save_checkpoint(tmp_path / "eps1e-5.pt", theirs)
    imported = import_ultralytics_checkpoint(path)
    assert imported.description["bn_eps"] == pytest.approx(1e-5)
    ours = yolov5_from_checkpoint(imported)
    assert {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}
    _assert_same_outputs(ours, theirs)


def test_several_bn_eps_values_are_refused(tmp_path: Path) -> None:
    theirs = standin.build()
    theirs.model[3].bn.eps = 1e-5
    path = standin.save_checkpoint(tmp_path / "mixed_eps.pt", theirs)
    with pytest.raises(CheckpointImportError, match=r"mixed_eps\.pt: .*2 different eps values"):
        import_ultralytics_checkpoint(path)


def test_integer_anchors_come_from_the_detect_buffer(tmp_path: Path) -> None:
    theirs = standin.build(anchors=3)
    evolved = torch.tensor([[[9.5, 12.0], [17.2, 28.9], [31.0, 24.4]],
                            [[29.6, 60.1], [63.3, 44.0], [58.8, 121.7]],
                            [[112.4, 87.3], [160.0, 201.5], [370.2, 330.9]]])
    detect = theirs.model[-1]
    detect.anchors.copy_(evolved / detect.stride.view(-1, 1, 1))  # what AutoAnchor leaves
    path = standin.save_checkpoint(tmp_path / "autoanchor.pt", theirs, half=False)
    imported = import_ultralytics_checkpoint(path)
    assert torch.allclose(torch.tensor(imported.description["anchors"]).view(3, 3, 2), evolved,
                          atol=1e-3)
    ours = yolov5_from_checkpoint(imported)
    assert torch.equal(ours.detect.anchors, detect.anchors)
    _assert_same_outputs(ours, theirs)


def test_ema_only_relu_checkpoint_imports_names_and_outputs(tmp_path: Path) -> None:
    theirs = standin.build(nc=3)
    theirs.names = {0: "person", 1: "bicycle", 2: "car"}  # v7 keeps a dict
    path = standin.save_checkpoint(tmp_path / "ema.pt", theirs, ema_only=True)
    ours = yolov5_from_checkpoint(import_ultralytics_checkpoint(path))
    assert ours.names == ["person", "bicycle", "car"]
    assert ours.activation == "relu"
    _assert_same_outputs(ours, theirs)


# --- damaged and hostile archives: one line naming the file, exit status 2 ---------------------

def _rezip(src: Path, dst: Path, change: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info.filename)))
    return dst


def _truncated_pickle(good: Path, dst: Path) -> Path:
    with zipfile.ZipFile(good) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)
    return _rezip(good, dst, {name: data[: len(data) // 2]})


def _flipped_storage_byte(good: Path, dst: Path) -> Path:
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    header = info.header_offset
    name_len = int.from_bytes(raw[header + 26:header + 28], "little")
    extra_len = int.from_bytes(raw[header + 28:header + 30], "little")
    raw[header + 30 + name_len + extra_len + info.file_size // 2] ^= 0x40
    dst.write_bytes(bytes(raw))
    return dst


class _OversizedView:
    """Pickles as a tensor record whose size reaches past the end of its storage."""

    def __reduce__(self) -> tuple:
        storage = torch.storage.TypedStorage(wrap_storage=torch.zeros(4).untyped_storage(),
                                             dtype=torch.float32, _internal=True)
        return torch._utils._rebuild_tensor_v2, (storage, 0, (1000,), (1,), False,
                                                 collections.OrderedDict())


def _oversized_view(_good: Path, dst: Path) -> Path:
    torch.save({"model": _OversizedView()}, dst)
    return dst


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standin.save_checkpoint(tmp_path_factory.mktemp("good") / "good.pt", standin.build())


@pytest.mark.parametrize(("damage", "reason"), [
    (_truncated_pickle, "damaged checkpoint"),
    (_flipped_storage_byte, "damaged checkpoint (BadZipFile"),
    (_oversized_view, "reaches element 1000 of a storage of 4"),
])
def test_damaged_checkpoint_ends_in_one_line(damage, reason: str, good_checkpoint: Path,
                                             tmp_path: Path, capsys) -> None:
    bad = damage(good_checkpoint, tmp_path / "bad.pt")
    status = suhd_convert([str(bad), "--synthetic", "1", "--input-size", "64", "64", "--quiet",
                           "-o", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(bad) in err and reason in err, err
    assert not (tmp_path / "out.safetensors").exists()


def test_good_checkpoint_still_converts(good_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "good.safetensors"
    assert suhd_convert([str(good_checkpoint), "--synthetic", "1", "--input-size", "64", "64",
                         "--quiet", "-o", str(out)]) == 0
    assert load_model_file(out).metadata["snn"][SILU_AS_RELU] is False


class _StorageRef:
    pass


def _bomb(path: Path, inflated_bytes: int) -> Path:
    """A valid-looking torch zip whose one storage inflates from ~1/1000 of its size."""
    numel = inflated_bytes // 4
    record = (torch._utils._rebuild_tensor_v2,
              (_StorageRef(), 0, (numel,), (1,), False, collections.OrderedDict()))

    class Bomb:
        def __reduce__(self) -> tuple:
            return record

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _StorageRef):
                return ("storage", torch.FloatStorage, "0", "cpu", numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"model": Bomb()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/data.pkl", buffer.getvalue())
        with z.open("bomb/data/0", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(inflated_bytes >> 20):
                member.write(zeros)
    return path


def test_decompression_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.pt", 256 << 20)
    assert bomb.stat().st_size < 1 << 20
    probe = (
        "import json, resource, sys\n"
        "from suhd_ros.tools.convert import main\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"status = main([{str(bomb)!r}, '--synthetic', '1', '-o', {str(tmp_path / 'o')!r}])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps([status, (after - before) / 1024]))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300, check=True)
    status, grown_mib = json.loads(run.stdout.strip().splitlines()[-1])
    assert status == 2
    assert "decompression bomb" in run.stderr, run.stderr
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB reading a bomb"


# --- SiLU: the file --allow-silu writes is one the Detector (and so the node) loads ------------

def test_allow_silu_file_loads_with_the_approximation_stated_once(tmp_path: Path,
                                                                  capsys) -> None:
    source = standin.save_checkpoint(tmp_path / "silu.pt", standin.build(activation=nn.SiLU))
    out = tmp_path / "silu.safetensors"
    assert suhd_convert([str(source), "--synthetic", "1", "--input-size", *map(str, TINY_SIZE),
                         "--quiet", "-o", str(out)]) == 2  # not without permission
    assert "--allow-silu" in capsys.readouterr().err
    assert suhd_convert([str(source), "--synthetic", "1", "--input-size", *map(str, TINY_SIZE),
                         "--quiet", "--allow-silu", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and err.count("\n") == 1, err
    assert load_model_file(out).metadata["snn"][SILU_AS_RELU] is True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector(out, device="cpu")  # the node's default engine
    assert [str(w.message) for w in caught] == [f"silu.safetensors: {detector.approximation}"]
    assert "SiLU" in detector.approximation and detector.engine == "fused"
    assert detector.detect([torch.zeros(64, 96, 3, dtype=torch.uint8).numpy()]) is not None
    status = diagnostics.model_status("model", detector, str(out),
                                      InferenceErrors().report(), "")
    assert detector.approximation in status.message
    assert Detector(out, device="cpu", engine="ann").approximation is None  # SiLU runs exactly

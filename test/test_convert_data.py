"""suhd-convert --data: calibration images drawn from a dataset's train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suhd_ros.conversion import dataset_calibration
from suhd_ros.datasets import open_dataset
from suhd_ros.detector import Detector
from suhd_ros.synthetic.export import export_yolo
from suhd_ros.tools.convert import main
from suhd_ros.yolo.model_file import load_model_file

from tiny_model import TINY_SIZE, make_ann_file

COUNT = 6


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A YOLO-layout export whose train and val splits differ."""
    for split in ("train", "val"):
        yaml_path = export_yolo(tmp_path / "data", split, COUNT, TINY_SIZE[1], TINY_SIZE[0],
                                progress=False)
    return yaml_path


def _lambdas(path: Path) -> dict[str, float]:
    return load_model_file(path).metadata["calibration"]["lambda_max"]


def test_the_draw_is_seeded_spread_and_capped(data: Path) -> None:
    train = open_dataset(data, "train")
    drawn = list(dataset_calibration(train, 3, seed=0))
    assert len(drawn) == 3
    everything = [train.read_image(k) for k in range(len(train))]
    picked = [next(k for k, image in enumerate(everything) if np.array_equal(image, d))
              for d in drawn]
    assert picked == sorted(set(picked))  # distinct, in file order
    again = list(dataset_calibration(train, 3, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(drawn, again, strict=True))
    seeds = {tuple(next(k for k, image in enumerate(everything) if np.array_equal(image, d))
                   for d in dataset_calibration(train, 3, seed)) for seed in range(6)}
    assert len(seeds) > 1  # the seed chooses the images
    assert len(list(dataset_calibration(train, 100))) == COUNT


def test_convert_data_calibrates_on_the_train_split(data: Path, tmp_path: Path) -> None:
    """Every train image (the cap above the split's size) calibrates exactly as the same
    images given as a folder; --split val calibrates on other images."""
    ann = make_ann_file(tmp_path / "ann.safetensors")
    from_data = tmp_path / "from_data.safetensors"
    assert main([str(ann), "--data", str(data), "-o", str(from_data), "--quiet"]) == 0
    from_folder = tmp_path / "from_folder.safetensors"
    assert main([str(ann), "--images", str(data.parent / "images" / "train"), "-o",
                 str(from_folder), "--quiet"]) == 0
    assert _lambdas(from_data) == _lambdas(from_folder)
    from_val = tmp_path / "from_val.safetensors"
    assert main([str(ann), "--data", str(data), "--split", "val", "-o", str(from_val),
                 "--quiet"]) == 0
    assert _lambdas(from_val) != _lambdas(from_data)
    capped = tmp_path / "capped.safetensors"
    assert main([str(ann), "--data", str(data), "--max-images", "2", "-o", str(capped),
                 "--quiet"]) == 0
    assert _lambdas(capped) != _lambdas(from_data)
    assert Detector(from_data, "cpu", "fused").names == list(open_dataset(data).names)


def test_data_is_exclusive_with_the_other_sources(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.safetensors"
    for other in (["--images", str(tmp_path)], ["--synthetic", "4"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["w.safetensors", "--data", str(data), *other, "-o", str(out)])
        assert exit_info.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err
    assert not out.exists()


def test_bad_data_is_one_error_line(tmp_path: Path, capsys) -> None:
    ann = make_ann_file(tmp_path / "ann.safetensors")
    out = tmp_path / "x.safetensors"
    assert main([str(ann), "--data", str(tmp_path / "nothing"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("suhd-convert: error:") and \
        "no dataset layout recognised" in err[0]
    with pytest.raises(SystemExit) as stop:
        main([str(ann), "--synthetic", "2", "--threads", "0", "-o", str(out)])
    assert stop.value.code == 2
    assert "argument --threads: must be at least 1, found 0" in capsys.readouterr().err
    assert not out.exists()

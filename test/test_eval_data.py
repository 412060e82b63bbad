"""suhd-eval on a user's dataset (--data), per-class AP, --compare rows.

The default model scores benchmark test scenes exported to each layout: they must score as the
built-in benchmark scores the same scenes, so the dataset path adds nothing and loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from suhd_ros.conversion import ConversionSettings, convert
from suhd_ros.datasets import open_dataset
from suhd_ros.detector import Detector
from suhd_ros.evaluation.coco import evaluate_detections
from suhd_ros.evaluation.sweep import SpreadSubset, benchmark_scenes, evaluate
from suhd_ros.paths import default_model_path
from suhd_ros.synthetic.export import EXPORTERS
from suhd_ros.synthetic.scenes import CLASS_NAMES
from suhd_ros.tools.evaluate import main

from tiny_model import make_ann_file

torch.set_num_threads(1)

COUNT = 4  # test scenes exported (320 x 320, the benchmark's size)
OTHER_NAMES = [f"part{k}" for k in range(len(CLASS_NAMES))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first COUNT benchmark test scenes in each layout."""
    root = tmp_path_factory.mktemp("exported")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUHD_DATASET_CACHE", str(root / "cache"))
        for layout, export in EXPORTERS.items():
            export(root / layout, "test", COUNT, 320, 320, progress=False)
    return {layout: root / layout for layout in EXPORTERS}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def benchmark_row() -> dict:
    """The ANN of the default model on the same scenes, read from memory."""
    return evaluate(Detector(default_model_path(), "cpu", "ann"), benchmark_scenes(COUNT))


def test_per_class_ap_of_a_hand_checkable_case() -> None:
    """Class 0: one object found, and a higher-scored box inside a crowd region (ignored, not
    a false positive): AP 1. Class 1: two objects, one found: precision 1 up to recall 0.5, so
    COCO's 101-point AP is 51/101. Class 2 has no object: left out of the means. Were the crowd
    region an object, the box inside it would be a false positive ranked first (IoU 0.25):
    precision 1/2 up to recall 1/2, AP 51/202."""
    crowd, car, bike, bike2 = [0, 0, 40, 40], [50, 50, 90, 90], [0, 50, 30, 90], [60, 0, 99, 30]
    gt = [(np.array([crowd, car, bike, bike2], float), np.array([0, 0, 1, 1]), 100, 100,
           np.array([True, False, False, False]))]
    in_crowd = [5, 5, 25, 25]
    dets = [(np.array([in_crowd, car, bike], float), np.array([0.9, 0.8, 0.7]),
             np.array([0, 0, 1]))]
    result = evaluate_detections(gt, dets, 3, ["car", "bike", "boat"])
    assert result["per_class"] == {
        "car": {"map50": 1.0, "map50_95": 1.0, "instances": 1},
        "bike": {"map50": pytest.approx(51 / 101), "map50_95": pytest.approx(51 / 101),
                 "instances": 2}}
    assert result["map50"] == pytest.approx((1 + 51 / 101) / 2)
    not_crowd = [(*gt[0][:4], np.zeros(4, bool))]
    assert evaluate_detections(not_crowd, dets, 3)["per_class"]["0"]["map50"] == \
        pytest.approx(51 / 202)


def test_a_capped_split_is_spread_evenly_over_it() -> None:
    items = list(range(10))
    assert [SpreadSubset(items, 4)[k] for k in range(4)] == [0, 2, 5, 7]
    assert len(SpreadSubset(items, 50)) == 10 and SpreadSubset(items, 50)[9] == 9
    with pytest.raises(IndexError):
        SpreadSubset(items, 4)[4]


@pytest.mark.parametrize("layout", sorted(EXPORTERS))
def test_each_layout_scores_as_the_benchmark(layout: str, exported: dict[str, Path],
                                             benchmark_row: dict) -> None:
    assert benchmark_row["map50"] > 0.5  # a real detector, not zeros compared with zeros
    dataset = open_dataset(exported[layout], "test")
    row = evaluate(Detector(default_model_path(), "cpu", "ann"), dataset, names=dataset.names)
    for key in ("map50", "map50_95", "map50_small", "map50_any_class"):
        assert row[key] == pytest.approx(benchmark_row[key], abs=1e-3), key
    assert row["per_class"].keys() == benchmark_row["per_class"].keys()


def test_data_report_with_compare_rows(exported: dict[str, Path], benchmark_row: dict,
                                       tmp_path: Path, capsys) -> None:
    """Same class count, other names: one warning line, per-class AP under the data's names.
    --compare: the model file itself scores as its own-setting row; a T=2 file is a row of its
    own, its ratio taken against the ANN of --model."""
    data = yaml.safe_load((exported["yolo"] / "data.yaml").read_text())
    renamed = exported["yolo"] / "renamed.yaml"
    renamed.write_text(yaml.safe_dump({**data, "names": OTHER_NAMES}))
    t2 = convert(default_model_path(), [s.image for s in benchmark_scenes(4, split="val")],
                 tmp_path / "t2.safetensors", ConversionSettings(T=2, f_c=4), progress=False)
    out = tmp_path / "report"
    assert main(["--model", str(default_model_path()), "--data", str(renamed), "--split", "test",
                 "--quick", "--out", str(out), "--compare", str(default_model_path()),
                 str(t2)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 3  # the model, and each compared file
    assert "part0" in warnings[0] and CLASS_NAMES[0] in warnings[0]

    results = json.loads((out / "results.json").read_text())
    rows = results["yolov5_val"]
    own = Detector(default_model_path(), "cpu", "fused", statistics=False)
    setting = f"STDI T={own.T} f_c={own.f_c}"
    labels = ["ANN", setting, f"{default_model_path().name}: {setting}",
              "t2.safetensors: STDI T=2 f_c=4"]
    assert [r["label"] for r in rows] == labels
    assert [r["label"] for r in results["single_label"]] == labels
    ann, model_row, same_file, t2_row = rows
    for key in ("map50", "map50_95", "spikes", "energy_snn_j"):
        assert same_file[key] == model_row[key], key
    assert t2_row["T"] == 2 and t2_row["spikes"] < model_row["spikes"]

    assert ann["map50"] == pytest.approx(benchmark_row["map50"], abs=1e-3)
    by_index = {OTHER_NAMES[CLASS_NAMES.index(name)]: value
                for name, value in benchmark_row["per_class"].items()}
    assert ann["per_class"].keys() == by_index.keys()
    for name, value in by_index.items():
        assert ann["per_class"][name]["map50"] == pytest.approx(value["map50"], abs=1e-3)

    report = (out / "conversion.md").read_text()
    ratio = t2_row["map50"] / ann["map50"]
    assert f"| t2.safetensors: STDI T=2 f_c=4 | {t2_row['map50']:.4f} | {ratio:.3f} |" in report
    assert f"--data {renamed}" in report
    table = report[report.index("AP per class"):]
    assert all(label in table.splitlines()[2] for label in labels)  # the header row
    for name in by_index:
        assert f"| {name} | {by_index[name]['instances']} | " in table
    assert (out / "map_vs_T.png").is_file()


def test_default_out_dir_is_not_docs_results(exported: dict[str, Path], model_path: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.chdir(tmp_path)
    coco_json = exported["coco"] / "annotations" / "instances_test.json"
    assert main(["--model", str(model_path), "--data", str(coco_json), "--split", "test",
                 "--quick", "--images", "2", "--threads", "1"]) == 0
    results = json.loads((tmp_path / "runs/eval/coco/results.json").read_text())
    assert not (tmp_path / "docs").exists()
    assert "2 images spread evenly over its 4" in \
        (tmp_path / "runs/eval/coco/conversion.md").read_text()
    assert set(results["yolov5_val"][0]["per_class"]) <= set(CLASS_NAMES)


def test_a_model_for_other_classes_is_one_error_line(exported: dict[str, Path], model_path: Path,
                                                     tmp_path: Path, capsys) -> None:
    four = exported["yolo"] / "four.yaml"
    four.write_text(yaml.safe_dump({"path": ".", "test": "images/test",
                                    "names": ["a", "b", "c", "d"]}))
    out = tmp_path / "r"
    assert main(["--model", str(model_path), "--data", str(four), "--split", "test", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 10 classes, the dataset has 4 (a, b, c, d)" in err[0]
    assert not out.exists()
    assert main(["--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no dataset layout recognised" in capsys.readouterr().err


def test_compare_needs_an_snn_file(model_path: Path, tmp_path: Path, capsys) -> None:
    ann = make_ann_file(tmp_path / "ann.safetensors")
    assert main(["--model", str(model_path), "--images", "1", "--quick", "--compare", str(ann),
                 "--out", str(tmp_path / "r")]) == 2
    assert "no calibrated thresholds" in capsys.readouterr().err

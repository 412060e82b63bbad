"""suhd-eval end to end on a tiny model: both scoring protocols reach the report and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from suhd_ros.detector import Detector
from suhd_ros.paths import default_model_path, reference_model_path
from suhd_ros.tools.evaluate import _models, _parser, main


def test_report_has_the_yolov5_and_the_node_protocols(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["--model", str(model_path), "--images", "3", "--quick", "--scene-size", "64",
                 "96", "--out", str(out)]) == 0
    snn = Detector(model_path, "cpu", "fused")
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results["yolov5_val"]] == ["ANN", "STDI T=4 f_c=4"]
    assert [r["label"] for r in results["single_label"]] == \
        ["ANN", f"STDI T={snn.T} f_c={snn.f_c}"]
    for row in results["yolov5_val"] + results["single_label"]:
        assert 0.0 <= row["map50_95"] <= row["map50"] <= 1.0
    report = (out / "conversion.md").read_text()
    assert "multi-label" in report and "one class per box" in report
    assert report.count("| ANN |") == 3  # the sweep, the node's protocol, the size table


def test_a_missing_model_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--model", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]) == 2
    assert "suhd-eval: error:" in capsys.readouterr().err


def test_without_a_model_the_float_ann_is_swept_and_the_default_model_compared() -> None:
    assert _models(_parser().parse_args([])) == (
        str(reference_model_path()), [str(default_model_path())])
    given = _parser().parse_args(["--model", "a.safetensors", "--compare", "b.safetensors"])
    assert _models(given) == ("a.safetensors", ["b.safetensors"])

"""The embedded default model keeps the float ANN's accuracy at T = 4 on the 500 test images.

The default model is the float ANN (the reference file) fine-tuned with the SUHD quantiser at
T = 4, f_c = 4. Measured on the committed files, on the same 500 test images as the model card:
its mAP@0.5 is at least 0.997 x the float ANN's and its mAP@0.5:0.95 at least 0.993 x (measured
0.999 x / 0.996 x; the issue's target is 0.995 x, and the test leaves 0.002 for float rounding
on other CPUs), scored as YOLOv5 scores mAP (multi-label); at least 0.99 x / 0.97 x as the node
publishes (one class per box); with at most 0.6 x the spikes of the reference file's
post-training conversion at f_c = 8.
"""

from __future__ import annotations

import pytest
import torch

from suhd_ros.detector import Detector, default_model_path
from suhd_ros.evaluation.sweep import benchmark_scenes, evaluate
from suhd_ros.paths import reference_model_path
from suhd_ros.yolo.model_file import load_model_file

IMAGES = 500


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    torch.set_num_threads(2)
    path, reference = default_model_path(), reference_model_path()
    for file in (path, reference):
        assert file.is_file(), f"an embedded model is missing: {file}"
    ann = Detector(reference, "cpu", "ann")
    snn = Detector(path, "cpu", "fused")
    scenes = benchmark_scenes(IMAGES)
    return {"ann": evaluate(ann, scenes), "snn": evaluate(snn, scenes),
            "ann_single": evaluate(ann, scenes, multi_label=False),
            "snn_single": evaluate(snn, scenes, multi_label=False),
            "post_training": evaluate(Detector(reference, "cpu", "fused"), scenes),
            "T": snn.T, "f_c": snn.f_c,
            "quantisation_aware": load_model_file(path).metadata["snn"].get("quantisation_aware")}


def test_default_model_is_fine_tuned_for_four_timesteps_and_a_burst_cap_of_four(results) -> None:
    assert results["T"] == 4 and results["f_c"] <= 4
    assert results["quantisation_aware"] is True


def test_snn_keeps_the_ann_map50(results) -> None:
    ann, snn = results["ann"], results["snn"]
    # the project's target for the committed model (measured 0.922 on these images)
    assert ann["map50"] >= 0.90, ann
    assert snn["map50"] >= 0.997 * ann["map50"], (snn["map50"], ann["map50"])


def test_snn_keeps_the_ann_map50_95(results) -> None:
    ann, snn = results["ann"], results["snn"]
    assert snn["map50_95"] >= 0.993 * ann["map50_95"], (snn["map50_95"], ann["map50_95"])


def test_fine_tuning_halves_the_spikes_of_the_post_training_conversion(results) -> None:
    spikes, post_training = results["snn"]["spikes"], results["post_training"]["spikes"]
    assert spikes <= 0.6 * post_training, (spikes, post_training)


def test_snn_keeps_the_ann_map_as_the_node_publishes(results) -> None:
    # one class per box, as on /suhd/detections
    ann, snn = results["ann_single"], results["snn_single"]
    assert ann["map50"] < results["ann"]["map50"]  # the multi-label protocol ranks more boxes
    assert snn["map50"] >= 0.99 * ann["map50"], (snn["map50"], ann["map50"])
    assert snn["map50_95"] >= 0.97 * ann["map50_95"], (snn["map50_95"], ann["map50_95"])


def test_snn_energy_is_reported_and_below_the_ann(results) -> None:
    snn = results["snn"]
    assert snn["spikes"] > 0 and snn["sops"] > 0
    assert snn["energy_snn_j"] < snn["energy_ann_j"]

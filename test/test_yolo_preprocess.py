"""One input pipeline: inference, calibration and training collation make the same tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suhd_ros.conversion import batches_of
from suhd_ros.detector import Detector
from suhd_ros.synthetic.scenes import generate_scene
from suhd_ros.training.dataset import GeneratedScenes, collate, load_sample
from suhd_ros.yolo.letterbox import letterbox
from suhd_ros.yolo.preprocess import network_input

from tiny_model import make_snn_file


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return Detector(model_path, "cpu")


def test_network_input_is_letterboxed_rgb_nchw_in_0_to_1() -> None:
    image = generate_scene(3, 90, 50).image
    x, (info,) = network_input([image], (64, 96), dtype=torch.float64)
    padded, expected = letterbox(image, (64, 96))
    assert x.shape == (1, 3, 64, 96) and x.dtype == torch.float64
    assert info == expected
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy() * 255.0, padded)


def test_calibration_and_inference_get_identical_tensors(detector: Detector) -> None:
    images = [generate_scene(seed, w, h).image for seed, (h, w) in
              enumerate([(48, 80), (120, 90), (64, 96)])]
    inference, _ = detector.preprocess(images)
    (calibration,) = list(batches_of(images, detector.input_size))
    assert inference.dtype == calibration.dtype == torch.float32
    assert torch.equal(inference, calibration)


def test_training_collation_matches_inference(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Training letterboxes to a square; a square model's Detector sees the same tensor."""
    square = Detector(make_snn_file(tmp_path_factory.mktemp("square"), size=(64, 64)), "cpu")
    source = GeneratedScenes("val", 80, 48, count=3)
    samples = [load_sample(source, i, 64) for i in range(3)]
    images, _ = collate(samples)
    inference, _ = square.preprocess([source[i][0] for i in range(3)])
    assert torch.equal(images, inference)

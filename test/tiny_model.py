"""A tiny YOLOv5 (ReLU) made and converted through the real pipeline, for fast tests.

Its weights are random, so its detections are not meaningful: tests use it for plumbing
(shapes, engines, files, nodes), never for accuracy. At 1/8 width and a 64 x 96 input, calibrated
on four scenes, it loads in well under a second and infers in milliseconds, and with a score
threshold of 0 it always returns boxes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from suhd_ros.conversion import ConversionSettings, convert
from suhd_ros.synthetic.scenes import CLASS_NAMES, generate_scene
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5
from suhd_ros.yolo.model_file import model_metadata, save_model_file

TINY_SIZE = (64, 96)  # network input (H, W)


def make_ann_file(path: Path, size: tuple[int, int] = TINY_SIZE, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    description = yolov5_description("n", len(CLASS_NAMES))
    description["width_multiple"] = 0.125
    model = YOLOv5(description, names=list(CLASS_NAMES)).eval()
    for module in model.modules():  # non-trivial BN statistics, so folding matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    save_model_file(path, model.state_dict(), model_metadata(model, size))
    return path


def make_snn_file(folder: Path, size: tuple[int, int] = TINY_SIZE,
                  settings: ConversionSettings | None = None) -> Path:
    ann = make_ann_file(folder / "tiny_ann.safetensors", size)
    images = [generate_scene(seed, size[1], size[0]).image for seed in range(4)]
    return convert(ann, images, folder / "tiny_snn.safetensors",
                   settings or ConversionSettings(), progress=False)

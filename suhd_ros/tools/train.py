"""suhd-train: train a ReLU YOLOv5 on the built-in benchmark or on a dataset (YOLO, COCO, VOC).

All options: suhd-train --help (one per `TrainConfig` field). The best weights are written as a
model file, with the dataset's class names, that suhd-convert turns into a spiking model. Bad
input (dataset, device, weights or checkpoint, resume) is one line on stderr and exit status 2,
before any training starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import fields

import torch

from suhd_ros.datasets import DatasetError
from suhd_ros.detector import DetectorError
from suhd_ros.training.loop import ResumeError, TrainConfig, train
from suhd_ros.yolo.checkpoint import CheckpointImportError
from suhd_ros.yolo.model_file import ModelFileError

BAD_INPUT = (DatasetError, DetectorError, ModelFileError, CheckpointImportError, ResumeError)


def _argument_type(hint) -> type:
    """The plain type behind `X | None`."""
    if isinstance(hint, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suhd-train",
        description="Train a ReLU YOLOv5 on a dataset (--data) or the procedural benchmark."
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if hints[f.name] is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
        else:
            kind = _argument_type(hints[f.name])
            parser.add_argument(flag, type=kind, default=f.default, help=help_text,
                                choices=f.metadata.get("choices"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TrainConfig(**vars(args))
    torch.set_num_threads(config.threads)
    logging.basicConfig(format="%(name)s: %(message)s", level=logging.INFO)
    try:
        print(train(config))
    except BAD_INPUT as e:
        print(f"suhd-train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

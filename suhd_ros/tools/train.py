"""suhd-train: train a ReLU YOLOv5 on the built-in benchmark or on a dataset (YOLO, COCO, VOC).

All options: suhd-train --help (one per `TrainConfig` field). The best weights are written as a
model file, with the dataset's class names, that suhd-convert turns into a spiking model.
`suhd-train --out-dir RUN --resume` continues a run with its saved settings (`--epochs N` may
extend it). Bad input (dataset, device, weights or checkpoint, resume) is one line on stderr and
exit status 2, before any training starts.
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
from suhd_ros.training.loop import ResumeError, TrainConfig, resumed_config, train
from suhd_ros.yolo.checkpoint import CheckpointImportError
from suhd_ros.yolo.model_file import ModelFileError

BAD_INPUT = (DatasetError, DetectorError, ModelFileError, CheckpointImportError, ResumeError)


def _argument_type(hint) -> type:
    """The plain type behind `X | None`."""
    if isinstance(hint, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """One option per `TrainConfig` field; without `defaults`, only the options given appear."""
    parser = argparse.ArgumentParser(
        prog="suhd-train",
        description="Train a ReLU YOLOv5 on a dataset (--data) or the procedural benchmark."
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        default = f.default if defaults else argparse.SUPPRESS
        if hints[f.name] is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            kind = _argument_type(hints[f.name])
            parser.add_argument(flag, type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))
    return parser


def _config(argv: Sequence[str] | None) -> TrainConfig:
    """The options given; with --resume, the saved run's settings for those not given."""
    args = build_parser().parse_args(argv)
    if not args.resume:
        return TrainConfig(**vars(args))
    return resumed_config(vars(build_parser(defaults=False).parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="%(name)s: %(message)s", level=logging.INFO)
    try:
        config = _config(argv)
        torch.set_num_threads(config.threads)
        print(train(config))
    except BAD_INPUT as e:
        print(f"suhd-train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

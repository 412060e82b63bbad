"""suhd-convert: YOLOv5 (ReLU) weights + calibration images -> a SUHD spiking model file.

Examples:
  suhd-convert runs/train/best.safetensors --images calib/ -o models/my.safetensors
  suhd-convert yolov5n_relu.pt --images calib/ --timesteps 4 --compression 4 -o my.safetensors
  suhd-convert best.safetensors --synthetic 64 -o my.safetensors   # benchmark scenes
  suhd-convert best.safetensors --data datasets/fruit/data.yaml -o my.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from suhd_ros.conversion import (
    ConversionSettings,
    convert,
    dataset_calibration,
    image_files,
    read_rgb,
)
from suhd_ros.datasets import open_dataset
from suhd_ros.snn.coding import DEFAULT_F_C, DEFAULT_T
from suhd_ros.tools.arguments import at_least_one
from suhd_ros.yolo.config import DEFAULT_INPUT_SIZE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suhd-convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path,
                   help="source weights: a suhd_ros .safetensors model file or a YOLOv5 .pt")
    p.add_argument("-o", "--output", type=Path, required=True, help="SNN model file to write")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of calibration images (png/jpg)")
    src.add_argument("--synthetic", type=int, metavar="N",
                     help="calibrate on N scenes of the built-in benchmark (validation split)")
    src.add_argument("--data", type=Path,
                     help="calibrate on your dataset (YOLO data.yaml or folder, COCO JSON or "
                          "folder, VOC folder): --max-images images drawn from --split")
    p.add_argument("--split", default="train",
                   help="split of --data to draw calibration images from (default train)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the draw from --data (default 0)")
    p.add_argument("--max-images", type=at_least_one, default=256,
                   help="use at most this many calibration images (default 256)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="network input size (default: the source's, else "
                        f"{DEFAULT_INPUT_SIZE[0]} {DEFAULT_INPUT_SIZE[1]})")
    p.add_argument("--timesteps", "-T", type=int, default=DEFAULT_T,
                   help=f"T (default {DEFAULT_T})")
    p.add_argument("--compression", "--fc", type=int, default=DEFAULT_F_C,
                   help=f"f_c, the burst cap per step (default {DEFAULT_F_C}; 1 = binary spikes)")
    p.add_argument("--coding", choices=("stdi", "rate"), default="stdi",
                   help="spike coding (default stdi; rate = the rate-coding baseline)")
    p.add_argument("--half-start", action="store_true",
                   help="membrane starts at theta/2 (rounding instead of flooring)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="activation percentile that sets each threshold (default 99.99)")
    p.add_argument("--per-channel", action="store_true", help="one threshold per channel")
    p.add_argument("--allow-silu", action="store_true",
                   help="convert a SiLU network, its SiLU layers run as ReLU spiking neurons: "
                        "an approximation the file records and the node states (accuracy "
                        "drops; fine-tuning as ReLU is the better route)")
    p.add_argument("--threads", type=at_least_one,
                   help="CPU threads of torch (default: torch's; 1 is steadiest on a shared "
                        "machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _calibration_images(args: argparse.Namespace) -> Iterator[np.ndarray]:
    if args.images is not None:
        files = image_files(args.images)[: args.max_images]
        return (read_rgb(f) for f in files)
    if args.data is not None:
        dataset = open_dataset(args.data, args.split)
        dataset.report()
        return dataset_calibration(dataset, args.max_images, args.seed)
    from suhd_ros.synthetic.scenes import SPLITS, generate_scene

    size = args.input_size or (320, 320)
    seeds = itertools.islice(iter(SPLITS["val"]), min(args.synthetic, args.max_images))
    return (generate_scene(seed, size[1], size[0]).image for seed in seeds)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(format="suhd-convert: %(message)s", level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ConversionSettings(
        T=args.timesteps, f_c=1 if args.coding == "rate" else args.compression,
        coding=args.coding, half_start=args.half_start, percentile=args.percentile,
        per_channel=args.per_channel, allow_silu=args.allow_silu)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = convert(args.weights, _calibration_images(args), args.output, settings,
                          args.input_size, progress=not args.quiet)
    except (OSError, ValueError, KeyError) as e:  # DatasetError is a ValueError
        print(f"suhd-convert: error: {e}", file=sys.stderr)
        return 2
    for warning in caught:  # one line each (e.g. the --allow-silu approximation), no source line
        print(f"suhd-convert: warning: {warning.message}", file=sys.stderr)
    print(f"suhd-convert: wrote {out} (T={settings.T}, f_c={settings.f_c}, {settings.coding})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

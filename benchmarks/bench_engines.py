"""Time the ANN, the fused SNN and the reference SNN on one network, side by side, in one run.

Prints figures and ratios (a benchmark, not a test). Default: a YOLOv5s-sized network with
random weights at 640x640, T = 4, f_c = 4, batch 1, 2 CPU threads.

    .venv/bin/python benchmarks/bench_engines.py [--size s] [--img 640] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from suhd_ros.data.scenes import generate_scene
from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import calibrate_thresholds, convert_to_snn, fold_batchnorm
from suhd_ros.snn.layers import set_statistics
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5


def time_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    """Wall times of `repeats` forward passes after one warm-up pass."""
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="s", help="YOLOv5 size (default s)")
    p.add_argument("--img", type=int, default=640, help="input size (default 640)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-T", type=int, default=4)
    p.add_argument("--fc", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ann = YOLOv5(yolov5_description(args.size, 80)).eval()
    calib = [torch.from_numpy(generate_scene(s, args.img, args.img).image).permute(2, 0, 1)
             .float().unsqueeze(0) / 255 for s in range(2)]
    lambdas = calibrate_thresholds(ann, calib, progress=False)
    coding = SpikeCoding("stdi", args.T, args.fc)
    x = calib[0]
    rows = {"ANN (BN folded)": fold_batchnorm(copy.deepcopy(ann))}
    fused = convert_to_snn(ann, lambdas, coding, "fused")
    rows["SNN fused, statistics off"] = set_statistics(fused, False)
    rows["SNN fused, statistics on"] = set_statistics(
        convert_to_snn(ann, lambdas, coding, "fused"), True)
    rows["SNN reference (time loop)"] = convert_to_snn(ann, lambdas, coding, "reference")

    print(f"# engines: YOLOv5{args.size}, {args.img}x{args.img}, batch 1, T={args.T}, "
          f"f_c={args.fc}, {args.threads} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    base = None
    print(f"{'model':32s} {'p50 ms':>9s} {'min ms':>9s} {'x ANN':>7s}")
    for name, model in rows.items():
        times = time_ms(model, x, args.repeats)
        p50 = statistics.median(times)
        base = base or p50
        print(f"{name:32s} {p50:9.1f} {min(times):9.1f} {p50 / base:7.2f}")


if __name__ == "__main__":
    main()

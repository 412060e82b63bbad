"""All benchmarks in one run -> docs/benchmarks.md (+ docs/benchmarks/*.png, results.json).

1. latency / peak memory: ANN, SNN fused T=4 (statistics on / off), SNN reference T=4 and rate
   coding at the T that matches SUHD's accuracy, for the default model and a YOLOv5s at 640;
2. SpikingJelly's ann2snn on the same ANN: mAP vs T and time per frame (skipped, with a note,
   where spikingjelly is not installed: `make bench` installs requirements/bench.txt);
3. the node end to end: camera, detector node and a monitor in three processes, with the
   package's Fast DDS profile (as launched) and with Fast DDS's defaults;
4. faster backends for the fused engine (channels_last, torch.compile) against eager.

    make bench                                           # everything, about an hour on 2 cores
    python benchmarks/run_all.py --model my.safetensors --quick
    python benchmarks/run_all.py --skip node peer --out /tmp/bench.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import accuracy
import latency
import report
import soak
import torch

from suhd_ros.conversion import ConversionSettings, convert
from suhd_ros.detector import Detector
from suhd_ros.evaluation.sweep import benchmark_scenes
from suhd_ros.synthetic.scenes import CLASS_NAMES
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5
from suhd_ros.yolo.model_file import load_model_file, model_metadata, save_model_file

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("latency", "big", "peer", "node", "backends")
QUICK = {"images": 20, "val_images": 20, "rounds": 2, "frames": 3, "big_frames": 1,
         "peer_T": [4, 16, 64], "node_duration": 15.0, "backend_scenes": 5}
FULL = {"images": 100, "val_images": 100, "rounds": 5, "frames": 10, "big_frames": 6,
        "peer_T": [4, 16, 64, 256], "node_duration": 60.0, "backend_scenes": 50}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="SNN model file (default: the embedded one)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--quick", action="store_true", help="fewer scenes, frames and seconds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    p.add_argument("--images", type=int, help="test-split scenes (100; quick 20)")
    p.add_argument("--val-images", type=int, help="validation scenes for the rate-T search")
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (5; quick 2)")
    p.add_argument("--frames", type=int, help="frames per variant and round (10; quick 3)")
    p.add_argument("--big-frames", type=int, help="same for the big network (6; quick 1)")
    p.add_argument("--big-size", default="s", help="YOLOv5 size of the big network")
    p.add_argument("--big-img", type=int, default=640, help="its input size")
    p.add_argument("--big-calibration", type=int, default=4, help="its calibration scenes")
    p.add_argument("--calibration-images", type=int, default=32,
                   help="training-split scenes that calibrate SpikingJelly's conversion")
    p.add_argument("--peer-T", type=int, nargs="+", help="SpikingJelly's T values")
    p.add_argument("--node-duration", type=float, help="seconds of the node run (60; quick 15)")
    p.add_argument("--backend-scenes", type=int,
                   help="test scenes compared across backends (50; quick 5)")
    return p


def settings(args: argparse.Namespace, argv: list[str]) -> dict:
    """The run's settings: explicit options over the quick / full defaults."""
    chosen = dict(QUICK if args.quick else FULL)
    for key in chosen:
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    return {**chosen, "threads": args.threads, "big_size": args.big_size,
            "big_img": args.big_img, "big_calibration": args.big_calibration,
            "command": shlex.join(["python", "benchmarks/run_all.py", *argv])}


def variants(model: str, rate_T: int | None) -> list[latency.Variant]:
    """The compared engines; rate coding only when rate_T is given (its time loop runs T steps,
    which on the 640x640 network takes minutes per frame, so that row is left to the default
    model)."""
    V = latency.Variant
    rows = [V("ANN", model, "ann"), V(report.FUSED, model),
            V(report.FUSED_SAMPLED, model, count_every=10),
            V(report.FUSED_OFF, model, statistics=False),
            V("SNN reference T=4", model, "reference")]
    if rate_T is not None:
        rows.append(V(f"rate coding T={rate_T} (reference)", model, "reference", "rate", rate_T))
    return rows


def big_model(folder: Path, size: str, img: int, calibration: int) -> str:
    """A YOLOv5 of the given size with random weights, calibrated on a few benchmark scenes."""
    torch.manual_seed(0)
    ann = YOLOv5(yolov5_description(size, len(CLASS_NAMES)), names=list(CLASS_NAMES)).eval()
    ann_path = folder / f"yolov5{size}_random_ann.safetensors"
    save_model_file(ann_path, ann.state_dict(), model_metadata(ann, (img, img)))
    scenes = [s.image for s in benchmark_scenes(calibration, (img, img), split="train")]
    return str(convert(ann_path, scenes, folder / f"yolov5{size}_random_snn.safetensors",
                       ConversionSettings(), progress=False))


def accuracy_part(results: dict, model: str, s: dict, skip: list[str],
                  calibration_images: int) -> None:
    print("rate-coding T that matches SUHD (validation split):")
    val = benchmark_scenes(s["val_images"], split="val")
    rate_T, results["rate_search"] = accuracy.match_rate_T(model, val)
    results["rate_T_matched"] = rate_T is not None
    results["rate_T"] = rate_T or accuracy.RATE_T_CANDIDATES[-1]
    test = benchmark_scenes(s["images"])
    results["accuracy_test"] = accuracy.rows_on_test_split(model, test, results["rate_T"])
    if "peer" in skip:
        results["peer_skipped"] = "Skipped (--skip peer)."
        return
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        results["peer_skipped"] = ("Not run: spikingjelly is not installed (`make bench` "
                                   "installs requirements/bench.txt).")
        return
    print("SpikingJelly ann2snn (test split):")
    calibration = [sc.image for sc in benchmark_scenes(calibration_images, split="train")]
    percentile = float(load_model_file(model).metadata["snn"].get("percentile", 99.99))
    results["peer"], results["peer_notes"] = accuracy.peer_rows(
        model, test, calibration, percentile, s["peer_T"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    s = settings(args, argv)
    torch.set_num_threads(args.threads)
    probe = Detector(args.model, "cpu", "ann")
    model = str(probe.model_path)
    results: dict = {"machine": report.machine(), "settings": s,
                     "date": time.strftime("%Y-%m-%d %H:%M %Z"), "model_name": Path(model).name,
                     "model_size": "x".join(map(str, probe.input_size))}
    accuracy_part(results, model, s, args.skip, args.calibration_images)
    with tempfile.TemporaryDirectory(prefix="suhd_bench_") as tmp:
        if "latency" not in args.skip:
            print(f"latency, {Path(model).name}:")
            results["latency_default"] = latency.measure(
                variants(model, results["rate_T"]), s["rounds"], s["frames"], args.threads)
        if "big" not in args.skip:
            print(f"latency, YOLOv5{args.big_size} {args.big_img}x{args.big_img}:")
            big = big_model(Path(tmp), args.big_size, args.big_img, args.big_calibration)
            results["latency_big"] = latency.measure(
                variants(big, None), s["rounds"], s["big_frames"], args.threads)
        if "backends" not in args.skip:
            import backends

            print("faster backends for the fused engine:")
            scenes = benchmark_scenes(s["backend_scenes"])
            results["backends"] = backends.measure(model, [sc.image for sc in scenes],
                                                   s["rounds"], s["frames"])
        if "node" not in args.skip:
            import node_e2e

            logs = REPO / "build" / "bench_logs"
            print("node end to end (the package's Fast DDS profile, as the launch file sets):")
            results["node"] = node_e2e.run(model, s["node_duration"], logs)
            print("node end to end (Fast DDS's default transports):")
            results["node_default_dds"] = node_e2e.run(
                model, s["node_duration"], logs / "default_dds", profile=None)
    folder = args.out.parent / args.out.stem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str))
    soak_section = soak.read_section(args.out)  # measured separately: kept
    args.out.write_text(report.markdown(results, args.out, report.plot(results, folder)))
    if soak_section:
        soak.write_section(args.out, soak_section)
    print(f"wrote {args.out} and {folder}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""suhd-detect: run the spiking detector on images or a video; write annotated images + JSON.

Examples:
  suhd-detect photo.jpg more/*.png -o out/
  suhd-detect clip.mp4 -o out/ --engine reference --timesteps 4
  suhd-detect photos/ -o out/ --model models/my.safetensors --device cuda
  suhd-detect photos/ -o out/ --backend onnxruntime     # the exported graph in ONNX Runtime
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from suhd_ros.conversion import IMAGE_SUFFIXES, image_files, read_rgb
from suhd_ros.detector import BACKENDS, ENGINES, Detector, DetectorError, FrameResult
from suhd_ros.ros.overlay import draw_detections


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suhd-detect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders of images, or videos")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--model", default="", help="model file (default: the embedded model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--engine", choices=ENGINES, default="fused", help="default fused")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="torch (default), or the exported graph in onnxruntime / openvino")
    p.add_argument("--timesteps", "-T", type=int, help="override the model's T")
    p.add_argument("--compression", "--fc", type=int, help="override the model's f_c")
    p.add_argument("--score-threshold", type=float, default=0.25)
    p.add_argument("--iou-threshold", type=float, default=0.45)
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument("--classes", type=int, nargs="*", help="keep only these class ids")
    return p


def _frames(inputs: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB frame) for every image, every image in a folder and every video frame."""
    for path in inputs:
        if path.is_dir():
            for f in image_files(path):
                yield f.stem, read_rgb(f)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.stem, read_rgb(path)
        else:
            yield from _video_frames(path)


def _video_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open {path} as an image or a video")
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield f"{path.stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def _record(name: str, result: FrameResult, names: list[str]) -> dict:
    return {
        "image": name,
        "detections": [
            {"class_id": int(c), "class_name": names[c] if c < len(names) else str(c),
             "score": float(s), "box_xyxy": [float(v) for v in b]}
            for b, s, c in zip(result.boxes_xyxy, result.scores, result.class_ids, strict=True)
        ],
        "energy": asdict(result.energy) if result.energy else None,
        "inference_ms": result.inference_s * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        detector = Detector(args.model, args.device, args.engine, args.timesteps,
                            args.compression, backend=args.backend)
    except DetectorError as e:
        print(f"suhd-detect: error: {e}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        for name, rgb in tqdm(_frames(args.inputs), desc="detecting", unit="img"):
            result = detector.detect([rgb], args.score_threshold, args.iou_threshold,
                                     args.max_detections, args.classes)[0]
            overlay = draw_detections(rgb, result.boxes_xyxy, result.scores, result.class_ids,
                                      detector.names)
            cv2.imwrite(str(args.output / f"{name}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            records.append(_record(name, result, detector.names))
    except (OSError, ValueError) as e:
        print(f"suhd-detect: error: {e}", file=sys.stderr)
        return 2
    (args.output / "detections.json").write_text(json.dumps(records, indent=1))
    print(f"suhd-detect: {len(records)} images -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

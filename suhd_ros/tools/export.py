"""suhd-export: a model file -> an ONNX file (the fused SNN, or the ANN) for any ONNX runtime.

The graph uses plain opset-17 operators (the quantiser is Div, Add, Floor, Clip), so ONNX
Runtime, OpenVINO and TensorRT read it without our code. Output `predictions` [N, M, 5 + nc]
is before NMS; with --spike-counts, `spike_counts` [N, layers, T] too, or with --spike-levels
each spiking layer's integer levels (`spike_levels_K`, for a reader to count by histogram;
the metadata's spike_layers names the layer of each). Class names, input size, T, f_c and
coding are in the file's metadata_props.

Examples:
  suhd-export models/suhd-yolov5n-shapes.safetensors -o suhd.onnx
  suhd-export my.safetensors -o my.onnx --dynamic-batch --spike-counts
  suhd-export my.safetensors -o my_ann.onnx --engine ann
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from suhd_ros.backends.onnx_export import OPSET, ExportError, ExportInfo, export_onnx
from suhd_ros.detector import Detector, DetectorError
from suhd_ros.yolo.model_file import sha256_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suhd-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model file (.safetensors; empty string: the embedded model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--engine", choices=("fused", "ann"), default="fused", help="default fused")
    p.add_argument("--timesteps", "-T", type=int, help="override the model's T")
    p.add_argument("--compression", "--fc", type=int, help="override the model's f_c")
    p.add_argument("--dynamic-batch", action="store_true", help="batch size free (default 1)")
    spikes = p.add_mutually_exclusive_group()
    spikes.add_argument("--spike-counts", dest="spikes", action="store_const", const="counts",
                        help="also output each spiking layer's spikes per step (fused only)")
    spikes.add_argument("--spike-levels", dest="spikes", action="store_const", const="levels",
                        help="also output each spiking layer's levels (fused only)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        detector = Detector(args.model, "cpu", args.engine, args.timesteps, args.compression,
                            statistics=False)
        info = ExportInfo(tuple(detector.names), detector.input_size, args.engine,
                          None if args.engine == "ann" else detector.coding,
                          sha256_file(detector.model_path))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.output.parent) as tmp:  # no half-written file
            written = export_onnx(detector.model, info, Path(tmp) / args.output.name,
                                  args.spikes, args.dynamic_batch, args.opset)
            path = written.replace(args.output)
    except (DetectorError, ExportError, OSError) as e:
        print(f"suhd-export: error: {e}", file=sys.stderr)
        return 2
    print(f"suhd-export: {detector.model_path.name} ({args.engine}) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

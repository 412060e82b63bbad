"""suhd-eval: COCO mAP of the ANN and of the SNN over T, f_c and codings, with spikes and energy.

Writes docs/results/conversion.md (Markdown tables), results.json and plots (mAP, spikes and
energy against T) from the fixed test split of the built-in benchmark. mAP is scored as YOLOv5's
val.py scores it (multi-label); the ANN and the model file's setting are also scored as the node
publishes (one class per box).

Examples:
  suhd-eval                                  # embedded model, 500 test images, full sweep
  suhd-eval --model my.safetensors --images 100 --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from suhd_ros.detector import BACKENDS, Detector, DetectorError
from suhd_ros.evaluation.sweep import (
    RunConfig,
    benchmark_scenes,
    default_sweep,
    markdown_table,
    size_table,
    sweep,
)
from suhd_ros.synthetic.scenes import BENCHMARK_SIZE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suhd-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="model file (default: the embedded model)")
    p.add_argument("--images", type=int, default=500, help="test-split images (default 500)")
    p.add_argument("--scene-size", type=int, nargs=2, metavar=("H", "W"),
                   help="size of the test scenes (default: the benchmark's, 320 x 320)")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="output folder")
    p.add_argument("--quick", action="store_true", help="only the ANN and STDI T=4")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the networks in PyTorch (default) or as exported ONNX graphs")
    return p


def plot(rows: list[dict], out: Path) -> list[Path]:
    """mAP, spikes and energy against T, one line per coding; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("suhd-eval: matplotlib is not installed: no plots", file=sys.stderr)
        return []
    ann = next((r for r in rows if r["engine"] == "ann"), None)
    families: dict[str, list[dict]] = {}
    for r in rows:
        if r["engine"] != "ann":
            families.setdefault(f"{r['coding'].upper()} f_c={r['f_c']}", []).append(r)
    ann_level = {"map50": ann["map50"] if ann else None, "spikes": None,
                 "energy_snn_j": next((r["energy_ann_j"] for r in rows if "energy_ann_j" in r),
                                      None)}
    written = []
    figures = (("map50", "mAP@0.5", "map_vs_T.png"),
               ("spikes", "spikes per frame", "spikes_vs_T.png"),
               ("energy_snn_j", "estimated energy per frame [J]", "energy_vs_T.png"))
    for key, ylabel, name in figures:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, family in families.items():
            family = sorted(family, key=lambda r: r["T"])
            if len(family) > 1:
                ax.plot([r["T"] for r in family], [r[key] for r in family], "o-", label=label)
        if ann_level[key]:
            ax.axhline(ann_level[key], color="k", linestyle="--", label="ANN")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("timesteps T")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    return written


def _print_row(row: dict) -> None:
    print(f"  {row['label']:24s} mAP@0.5 {row['map50']:.4f}  mAP@0.5:0.95 {row['map50_95']:.4f}")


def write_report(out: Path, header: str, model_row: str, rows: list[dict],
                 single: list[dict]) -> None:
    """conversion.md and results.json: the sweep scored as YOLOv5 scores mAP, and the ANN and
    the model file's setting scored as the node publishes."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"yolov5_val": rows, "single_label": single}, indent=1))
    (out / "conversion.md").write_text(
        f"{header}\n\n"
        "Scored as YOLOv5's val.py scores mAP: score threshold 0.001, NMS IoU 0.6, "
        "multi-label (a box is ranked under every class above the threshold).\n\n"
        f"{markdown_table(rows)}\n\n"
        "Scored as the node publishes, one class per box (the same thresholds):\n\n"
        f"{markdown_table(single)}\n\n"
        "mAP@0.5 by object size (COCO areas: small < 32x32 px, large > 96x96 px), and with "
        "classes ignored (any class: a box counts when it finds an object, whatever it names "
        "it), YOLOv5's protocol:\n\n"
        f"{size_table(rows, ('ANN', 'STDI T=4 f_c=4', model_row))}\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        probe = Detector(args.model, args.device, "ann", backend=args.backend)
    except DetectorError as e:
        print(f"suhd-eval: error: {e}", file=sys.stderr)
        return 2
    size = tuple(args.scene_size or BENCHMARK_SIZE)
    configs = [RunConfig("ann"), RunConfig()] if args.quick else default_sweep()
    scenes = benchmark_scenes(args.images, size)
    model = str(probe.model_path)
    print(f"suhd-eval: {probe.model_path.name}, {len(scenes)} test scenes {size[1]}x{size[0]}, "
          f"{len(configs)} configurations")
    rows = sweep(model, scenes, configs, args.device, progress=_print_row, backend=args.backend)
    print("suhd-eval: as the node publishes (one class per box)")
    single = sweep(model, scenes, [RunConfig("ann"), RunConfig(T=probe.T, f_c=probe.f_c)],
                   args.device, progress=_print_row, multi_label=False, backend=args.backend)
    model_row = f"STDI T={probe.T} f_c={probe.f_c}"  # the model file's own setting
    write_report(args.out, f"# Conversion results: {probe.model_path.name}\n\n"
                 f"Fixed test split of the built-in benchmark: {len(scenes)} scenes of "
                 f"{size[1]}x{size[0]} px. The model file's own setting is {model_row}. "
                 f"Regenerate with `suhd-eval --images {args.images}`.", model_row, rows, single)
    plot(rows, args.out)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

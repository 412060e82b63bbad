"""suhd-eval: COCO mAP of the ANN and of the SNN over T, f_c and codings, with spikes and energy.

Writes conversion.md (Markdown tables), results.json and plots (mAP, spikes and energy against
T) from the fixed test split of the built-in benchmark (into docs/results), or from a split of
your own dataset (--data: a YOLO data.yaml or folder, a COCO instances JSON or folder, a VOC
folder; into runs/eval/<dataset>), with AP per class under the dataset's names. mAP is scored as
YOLOv5's val.py scores it (multi-label); the ANN and the model file's setting are also scored as
the node publishes (one class per box). --compare adds other SNN model files (e.g. fine-tuned
with suhd-train --quantise), each at its own T / f_c / coding, against the ANN of --model.
Without --model, the sweep is of the float ANN the embedded default model was fine-tuned from,
and the default model (T = 4, f_c = 4, fine-tuned with the quantiser) is compared beside it.

Examples:
  suhd-eval                                  # embedded models, 500 test images, full sweep
  suhd-eval --model my.safetensors --images 100 --quick
  suhd-eval --model my.safetensors --data datasets/fruit/data.yaml --split val
  suhd-eval --model snn.safetensors --compare qat_T4.safetensors qat_T2.safetensors --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from suhd_ros.datasets import DatasetError, ImageReadError, LabelledDataset, open_dataset
from suhd_ros.detector import BACKENDS, Detector, DetectorError
from suhd_ros.evaluation.sweep import (
    LabelledImages,
    RunConfig,
    SpreadSubset,
    benchmark_scenes,
    compare,
    default_sweep,
    markdown_table,
    own_setting,
    per_class_table,
    size_table,
    sweep,
)
from suhd_ros.paths import default_model_path, reference_model_path
from suhd_ros.synthetic.scenes import BENCHMARK_SIZE, CLASS_NAMES
from suhd_ros.tools.arguments import at_least_one

BENCHMARK_IMAGES = 500  # the test scenes docs/results is made from


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="suhd-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="",
                   help="model file (default: the float ANN the embedded default model was "
                        "fine-tuned from, with the default model compared)")
    p.add_argument("--data", type=Path,
                   help="your dataset (YOLO data.yaml or folder, COCO JSON or folder, VOC "
                        "folder) instead of the built-in benchmark")
    p.add_argument("--split", default="val", help="split of --data to score (default val)")
    p.add_argument("--images", type=at_least_one,
                   help=f"images to score (default: the benchmark's {BENCHMARK_IMAGES} test "
                        "scenes, or every image of the --data split; fewer are spread evenly "
                        "over the split)")
    p.add_argument("--scene-size", type=int, nargs=2, metavar=("H", "W"),
                   help="size of the test scenes (default: the benchmark's, 320 x 320)")
    p.add_argument("--out", type=Path,
                   help="output folder (default docs/results, with --data runs/eval/<dataset>)")
    p.add_argument("--quick", action="store_true",
                   help="only the ANN and the model file's own setting, no sweep")
    p.add_argument("--compare", nargs="+", default=[], metavar="MODEL",
                   help="more SNN model files, each scored at its own T / f_c / coding beside "
                        "the sweep (the ANN of --model stays the 1.000 reference)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the networks in PyTorch (default) or as exported ONNX graphs")
    p.add_argument("--threads", type=at_least_one,
                   help="CPU threads of torch (default: torch's; 1 is steadiest on a shared "
                        "machine)")
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
        if r["engine"] != "ann" and "model" not in r:  # --compare rows are single points
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


def write_report(out: Path, header: str, size_rows: Sequence[str], rows: list[dict],
                 single: list[dict], per_class_rows: Sequence[str] = ()) -> None:
    """conversion.md and results.json: the sweep scored as YOLOv5 scores mAP, and the ANN and
    the model file's setting scored as the node publishes; AP per class for `per_class_rows`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"yolov5_val": rows, "single_label": single}, indent=1))
    per_class = per_class_table(rows, per_class_rows)
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
        f"{size_table(rows, size_rows)}\n"
        + (f"\nAP per class, YOLOv5's protocol (classes with ground truth in the split):\n\n"
           f"{per_class}\n" if per_class else ""))


@dataclass(frozen=True)
class ScoredImages:
    """What suhd-eval scores: the labelled images, their class names, and how the report
    describes them."""

    images: LabelledImages
    names: tuple[str, ...]
    description: str
    regenerate: str  # the command line that remakes the report
    out: Path
    dataset: LabelledDataset | None = None  # --data's split, whose bad records are reported


def _dataset_name(path: Path) -> str:
    """The folder that names a dataset: `fruit` for fruit/, fruit/data.yaml or
    fruit/annotations/instances_val.json."""
    folder = path.resolve() if path.is_dir() else path.resolve().parent
    if folder.name == "annotations":
        folder = folder.parent
    return folder.name or "dataset"


def _benchmark(args: argparse.Namespace) -> ScoredImages:
    size = tuple(args.scene_size or BENCHMARK_SIZE)
    count = args.images or BENCHMARK_IMAGES
    scenes = benchmark_scenes(count, size)
    return ScoredImages(scenes, CLASS_NAMES,
                        f"Fixed test split of the built-in benchmark: {len(scenes)} scenes of "
                        f"{size[1]}x{size[0]} px.", f"suhd-eval --images {count}",
                        args.out or Path("docs/results"))


def _dataset(args: argparse.Namespace) -> ScoredImages:
    """The --data split, capped at --images."""
    dataset = open_dataset(args.data, args.split)
    images = SpreadSubset(dataset, args.images or len(dataset))
    subset = f" spread evenly over its {len(dataset)}" if len(images) < len(dataset) else ""
    cap = f" --images {args.images}" if args.images else ""
    description = (f"{dataset.layout.upper()} dataset `{dataset.source}`: {len(images)} "
                   f"images{subset}, letterboxed to the model's input as the node does and scored "
                   "in their own pixels. Crowd / difficult boxes are ignored as COCO ignores "
                   "crowd regions.")
    command = (f"suhd-eval --model {args.model or '<model>'} --data {args.data} "
               f"--split {args.split}{cap}")
    return ScoredImages(images, dataset.names, description, command,
                        args.out or Path("runs/eval") / _dataset_name(args.data), dataset)


def _describe(dataset: LabelledDataset) -> None:
    """Its bad records (as suhd-train reports them) and what it holds."""
    dataset.report()
    boxes = sum(len(r.class_ids) for r in dataset.records)
    ignored = sum(int(r.ignore.sum()) for r in dataset.records)
    print(f"suhd-eval: {dataset.source}: {len(dataset)} images, {boxes} boxes ({ignored} crowd "
          f"/ difficult), {len(dataset.names)} classes")


def check_names(model: Detector, names: Sequence[str], what: str) -> str | None:
    """A DetectorError when the model's class count is not the data's (nothing to score); a
    warning line when only the names differ (scored by class index, reported under the data's)."""
    if len(model.names) != len(names):
        raise DetectorError(f"{model.model_path.name} has {len(model.names)} classes, {what} "
                            f"has {len(names)} ({', '.join(names)}): train or convert a model "
                            "for these classes")
    if list(model.names) != list(names):
        return (f"{model.model_path.name} names its classes {', '.join(model.names)}; {what} "
                f"names them {', '.join(names)}: scored by class index, reported under {what}'s "
                "names")
    return None


def _models(args: argparse.Namespace) -> tuple[str, list[str]]:
    """--model and --compare; without --model, the embedded float ANN (its post-training
    conversions swept) and the default model fine-tuned from it, compared."""
    if args.model:
        return args.model, list(args.compare)
    return str(reference_model_path()), [str(default_model_path()), *args.compare]


def _run(args: argparse.Namespace) -> ScoredImages:
    """Every row of the report, written to the output folder; its images."""
    model_path, compared_paths = _models(args)
    # an SNN file? (no spike statistics: probing the energy graph takes seconds)
    model = Detector(model_path, args.device, "fused", statistics=False, backend=args.backend)
    others = [Detector(path, args.device, "fused", backend=args.backend)
              for path in compared_paths]
    test = _dataset(args) if args.data is not None else _benchmark(args)
    what = "the dataset" if args.data is not None else "the benchmark"
    for detector in (model, *others):
        warning = check_names(detector, test.names, what)
        if warning:
            print(f"suhd-eval: warning: {warning}", file=sys.stderr)
    if test.dataset is not None:
        _describe(test.dataset)
    own = own_setting(model)
    configs = [RunConfig("ann"), own] if args.quick else default_sweep()
    configs += [] if own in configs else [own]
    path, names = str(model.model_path), test.names
    print(f"suhd-eval: {model.model_path.name}, {len(test.images)} images, {len(configs)} "
          f"configurations{f' + {len(others)} compared' if others else ''}")
    rows = sweep(path, test.images, configs, args.device, _print_row, backend=args.backend,
                 names=names)
    rows += compare(others, test.images, _print_row, names=names)
    print("suhd-eval: as the node publishes (one class per box)")
    single = sweep(path, test.images, [RunConfig("ann"), own], args.device, _print_row,
                   multi_label=False, backend=args.backend, names=names)
    single += compare(others, test.images, _print_row, multi_label=False, names=names)
    compared = [r["label"] for r in rows if "model" in r]
    write_report(test.out, f"# Conversion results: {model.model_path.name}\n\n"
                 f"{test.description} The model file's own setting is {own.label}. "
                 f"Regenerate with `{test.regenerate}`.",
                 ("ANN", "STDI T=4 f_c=4", own.label, *compared), rows, single,
                 ("ANN", own.label, *compared) if args.data is not None else ())
    plot(rows, test.out)
    print(markdown_table(rows))
    return test


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(format="suhd-eval: %(message)s", level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        test = _run(args)
    except (DetectorError, DatasetError, ImageReadError) as e:
        print(f"suhd-eval: error: {e}", file=sys.stderr)
        return 2
    print(f"suhd-eval: wrote {test.out / 'conversion.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

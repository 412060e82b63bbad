"""What swapping a SiLU YOLOv5's activations to ReLU costs, and what fine-tuning gets back.

Every public YOLOv5 weight file is SiLU; SUHD converts ReLU networks. The route `suhd-train
--init-weights yolov5s.pt` takes is: build the ReLU network, load the SiLU weights, fine-tune.
This measures that route on the built-in benchmark, at a scale two CPU cores can afford:

  1. SiLU YOLOv5n trained from scratch for N epochs (stands in for the public weights);
  2. those weights in the ReLU network, before any fine-tuning ("swapped");
  3. the swapped network fine-tuned as ReLU for K epochs;
  4. a ReLU network trained from scratch for K epochs (the same recipe and scenes as 3).

Each is scored on the same test scenes (YOLOv5's protocol, `suhd_ros.evaluation.sweep`), as the
ANN and as the SUHD SNN (T=4, the default model's conversion settings; the SiLU model converted
with allow_silu, i.e. run as ReLU spikes, the approximation suhd-convert warns about).

    .venv/bin/python benchmarks/silu_to_relu.py      # 77 min on 2 shared cores under load
    .venv/bin/python benchmarks/silu_to_relu.py --silu-epochs 2 --fine-tune-epochs 1 \
        --train-images 64 --test-scenes 32 --out-dir /tmp/silu_smoke     # a smoke run

Writes docs/results/silu_to_relu.json (+ .png when matplotlib is installed) unless --out-dir
moves them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from suhd_ros.conversion import ConversionSettings, convert
from suhd_ros.detector import Detector
from suhd_ros.evaluation.sweep import benchmark_scenes, evaluate
from suhd_ros.training.loop import RESULTS_NAME, TrainConfig, make_model, train
from suhd_ros.yolo.model_file import load_model_file, model_metadata, save_model_file

ROOT = Path(__file__).resolve().parent.parent
# the default model's conversion (docs/results/conversion_choice.json), SiLU allowed
SNN_SETTINGS = ConversionSettings(T=4, f_c=8, half_start=True, per_channel=True, allow_silu=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--silu-epochs", type=int, default=8, help="N: SiLU training epochs")
    p.add_argument("--fine-tune-epochs", type=int, default=4,
                   help="K: epochs of the ReLU fine-tuning and of the ReLU from scratch")
    p.add_argument("--img-size", type=int, default=192, help="network input and scene side")
    p.add_argument("--train-images", type=int, default=600, help="scenes per epoch")
    p.add_argument("--val-images", type=int, default=100, help="validation scenes per epoch")
    p.add_argument("--test-scenes", type=int, default=300)
    p.add_argument("--calibration-images", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--runs", default=str(ROOT / "runs" / "silu_to_relu"),
                   help="folder of the training runs")
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "results"),
                   help="where silu_to_relu.json / .png go")
    return p.parse_args()


def _train(config: TrainConfig) -> tuple[Path, float]:
    """(best model file, wall seconds of the run, validation included)."""
    started = time.perf_counter()
    best = train(config)
    return best, time.perf_counter() - started


def _swapped(silu_file: Path, config: TrainConfig) -> Path:
    """The SiLU weights in the ReLU network, as a model file, exactly as fine-tuning starts."""
    model = make_model(replace(config, init_weights=str(silu_file)), load_model_file(
        silu_file).metadata["names"])
    out = silu_file.parent / "swapped_relu.safetensors"
    save_model_file(out, model.state_dict(), model_metadata(model, (config.img_size,) * 2))
    return out


def _score(model: Path, test: list, calibration: list) -> dict:
    """ANN and SUHD SNN (T=4) mAP of a model file on the test scenes."""
    ann = evaluate(Detector(model, "cpu", "ann"), test)
    snn_file = model.with_name(model.stem + "_snn.safetensors")
    convert(model, calibration, snn_file, SNN_SETTINGS, progress=False)
    snn = evaluate(Detector(snn_file, "cpu", "fused"), test)
    return {"ann_map50": ann["map50"], "ann_map50_95": ann["map50_95"],
            "snn_map50": snn["map50"], "snn_map50_95": snn["map50_95"]}


def _history(run: Path) -> list[dict]:
    return json.loads((run / RESULTS_NAME).read_text())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(format="%(name)s: %(message)s", level=logging.INFO)
    runs = Path(args.runs)
    # the default model's recipe (scripts/make_default_model.py: an optimiser step every 16
    # images), with one epoch of warm-up since the runs are short
    base = TrainConfig(img_size=args.img_size, size="n", train_images=args.train_images,
                       val_images=args.val_images, workers=args.workers, threads=args.threads,
                       nominal_batch=16, warmup_epochs=1.0, warmup_min_iters=0, progress=False)
    n, k = args.silu_epochs, args.fine_tune_epochs
    silu_best, silu_s = _train(replace(base, out_dir=str(runs / "silu"), activation="silu",
                                       epochs=n))
    fine_best, fine_s = _train(replace(base, out_dir=str(runs / "fine_tuned"), epochs=k,
                                       init_weights=str(silu_best)))
    scratch_best, scratch_s = _train(replace(base, out_dir=str(runs / "relu_scratch"), epochs=k))
    swapped = _swapped(silu_best, base)

    size = (args.img_size, args.img_size)
    test = benchmark_scenes(args.test_scenes, size)
    calibration = [s.image for s in benchmark_scenes(args.calibration_images, size, "train")]
    rows = [
        {"label": f"SiLU, {n} epochs", "epochs": n, "train_s": silu_s,
         "history": _history(runs / "silu"), **_score(silu_best, test, calibration)},
        {"label": "SiLU weights as ReLU, before fine-tuning", "epochs": n, "train_s": silu_s,
         **_score(swapped, test, calibration)},
        {"label": f"SiLU -> ReLU, fine-tuned {k} epochs", "epochs": n + k,
         "train_s": silu_s + fine_s, "history": _history(runs / "fine_tuned"),
         **_score(fine_best, test, calibration)},
        {"label": f"ReLU from scratch, {k} epochs", "epochs": k, "train_s": scratch_s,
         "history": _history(runs / "relu_scratch"), **_score(scratch_best, test, calibration)},
    ]
    setting = {**{key: v for key, v in vars(args).items() if key not in ("runs", "out_dir")},
               "recipe": {key: v for key, v in asdict(base).items() if key in (
                   "optimizer", "lr0", "lrf", "warmup_epochs", "warmup_min_iters", "batch_size",
                   "nominal_batch")},
               "snn": asdict(SNN_SETTINGS), "test_split": "test", "protocol": "YOLOv5 val.py"}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "silu_to_relu.json").write_text(json.dumps({"setting": setting, "rows": rows},
                                                      indent=1))
    print(markdown(rows))
    plot(rows, out / "silu_to_relu.png")


def markdown(rows: list[dict]) -> str:
    lines = ["| model | epochs trained | ANN mAP@0.5 | ANN mAP@0.5:0.95 | SNN T=4 mAP@0.5 "
             "| SNN T=4 mAP@0.5:0.95 | training s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['epochs']} | {r['ann_map50']:.4f} | {r['ann_map50_95']:.4f} "
              f"| {r['snn_map50']:.4f} | {r['snn_map50_95']:.4f} | {r['train_s']:.0f} |"
              for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Validation mAP@0.5 per epoch of the three runs, the fine-tuning drawn after the SiLU run's
    epochs; the swapped network's test score marks where fine-tuning starts."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    silu, swapped, fine, scratch = rows
    n = silu["epochs"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["epoch"] + 1 for h in silu["history"]], [h["map50"] for h in silu["history"]],
            "o-", label=silu["label"])
    ax.plot([n + h["epoch"] + 1 for h in fine["history"]], [h["map50"] for h in fine["history"]],
            "s-", label=fine["label"])
    ax.plot([n + h["epoch"] + 1 for h in scratch["history"]],
            [h["map50"] for h in scratch["history"]], "^-", label=scratch["label"])
    ax.plot([n], [swapped["ann_map50"]], "kx", markersize=9,
            label=swapped["label"] + " (test)")
    ax.set_xlabel("epoch (fine-tuning and ReLU from scratch drawn after the SiLU epochs)")
    ax.set_ylabel("mAP@0.5 (validation; x: test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

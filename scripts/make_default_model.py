"""Reproduce the embedded models: train (four stages), choose the conversion on the validation
split, convert (the reference file), fine-tune with the quantiser (the default model).

    .venv/bin/python scripts/make_default_model.py            # all steps (hours on 2 CPU cores)
    .venv/bin/python scripts/make_default_model.py --skip-training   # reuse runs/stage4, qat_t4f4

Stage 1 trains from scratch for 30 epochs at 320 px input; stage 2 restarts the cosine schedule
from stage 1's best weights for 50 more; stage 3 fine-tunes stage 2's best for 70 epochs at
416 px input (the 320 px scenes letterboxed up, for the small objects); stage 4 restarts the
cosine at 416 px from stage 3's best for 60 more. The stages are how the committed model was
made: each was added when the one before had levelled off at the end of its schedule.
The conversion settings (f_c, per-layer or per-channel thresholds, percentile, membrane start)
are chosen by mAP@0.5:0.95 of the SNN at T = 4 on validation scenes, never on the test split;
the result is the reference file (the float ANN, converted after training).
The default model is then fine-tuned from it with the SUHD quantiser at T = 4, f_c = 4: 20
epochs (cosine from lr0 1e-4 to 1e-5), then the run resumed and extended to 30 epochs (the
cosine restarts at 3.25e-5), as it was made; chosen on 1000 validation scenes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from pathlib import Path

from suhd_ros.conversion import ConversionSettings, convert
from suhd_ros.detector import Detector
from suhd_ros.evaluation.sweep import benchmark_scenes, evaluate
from suhd_ros.paths import DEFAULT_MODEL, REFERENCE_MODEL
from suhd_ros.tools.train import main as train_main

ROOT = Path(__file__).resolve().parent.parent
STAGE_1, STAGE_2, STAGE_3, RUN = (
    ROOT / "runs" / name for name in ("default", "continue", "stage3", "stage4")
)
COMMON = ["--size", "n", "--scene-size", "320", "--train-images", "1500", "--val-images", "200",
          "--batch-size", "16", "--nominal-batch", "16", "--threads", "2", "--no-progress",
          "--no-val-multi-label"]  # the stages chose their best epochs by one class per box
STAGES = [
    ["--out-dir", str(STAGE_1), "--epochs", "30", "--img-size", "320", *COMMON],
    ["--out-dir", str(STAGE_2), "--epochs", "50", "--warmup-epochs", "1", "--seed", "1",
     "--init-weights", str(STAGE_1 / "best.safetensors"), "--img-size", "320", *COMMON],
    ["--out-dir", str(STAGE_3), "--epochs", "70", "--warmup-epochs", "1", "--seed", "2",
     "--init-weights", str(STAGE_2 / "best.safetensors"), "--img-size", "416", *COMMON],
    ["--out-dir", str(RUN), "--epochs", "60", "--warmup-epochs", "1", "--seed", "3",
     "--init-weights", str(STAGE_3 / "best.safetensors"), "--img-size", "416", *COMMON],
]
QAT = ROOT / "runs" / "qat_t4f4"
QUANTISATION_AWARE = [  # the detection loss alone, BatchNorm statistics kept, no warm-up
    "--init-weights", str(ROOT / "models" / REFERENCE_MODEL), "--quantise", "4,4",
    "--out-dir", str(QAT), "--img-size", "416", "--scene-size", "320", "--train-images", "1500",
    "--batch-size", "16", "--nominal-batch", "16", "--warmup-epochs", "0",
    "--warmup-min-iters", "0", "--warmup-bias-lr", "0", "--freeze-bn", "--no-val-multi-label",
    "--lr0", "1e-4", "--lrf", "0.1", "--ema-decay", "0.995", "--ema-tau", "1", "--seed", "7",
    "--threads", "1", "--no-progress", "--epochs", "20",
]
QAT_EXTENDED = ["--out-dir", str(QAT), "--resume", "--epochs", "30", "--threads", "1"]
CANDIDATES = [
    ConversionSettings(f_c=f_c, percentile=p, per_channel=pc, half_start=hs)
    for f_c, p, pc, hs in itertools.product((4, 8), (99.9, 99.99), (False, True), (False, True))
]


def choose(ann_path: Path, calib: list, val: list) -> tuple[ConversionSettings, list]:
    trials = []
    for i, settings in enumerate(CANDIDATES):
        out = RUN / f"candidate_{i}.safetensors"
        convert(ann_path, calib, out, settings, progress=False)
        row = evaluate(Detector(out, "cpu", "fused"), val)
        trials.append({"settings": settings.__dict__, **row})
        print(f"  {settings}: mAP@0.5 {row['map50']:.4f} mAP@0.5:0.95 {row['map50_95']:.4f}")
    best = max(range(len(trials)), key=lambda i: trials[i]["map50_95"])
    return CANDIDATES[best], trials


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--calibration-images", type=int, default=128)
    p.add_argument("--val-images", type=int, default=200)
    args = p.parse_args()
    if not args.skip_training:
        for stage in STAGES:
            train_main(stage)
    ann_path = RUN / "best.safetensors"
    val = benchmark_scenes(args.val_images, split="val")
    calib = [s.image for s in benchmark_scenes(args.calibration_images, split="train")]
    ann_val = evaluate(Detector(ann_path, "cpu", "ann"), val)
    print(f"ANN on validation: {ann_val['map50']:.4f} / {ann_val['map50_95']:.4f}")
    settings, trials = choose(ann_path, calib, val)
    print(f"chosen: {settings}")
    convert(ann_path, calib, ROOT / "models" / REFERENCE_MODEL, settings, progress=False)
    if not args.skip_training:
        train_main(QUANTISATION_AWARE)
        train_main(QAT_EXTENDED)
    shutil.copyfile(QAT / "best.safetensors", ROOT / "models" / DEFAULT_MODEL)
    qat_val = evaluate(Detector(ROOT / "models" / DEFAULT_MODEL, "cpu", "fused"),
                       benchmark_scenes(1000, split="val"))
    print(f"default model on 1000 validation scenes: {qat_val['map50']:.4f} / "
          f"{qat_val['map50_95']:.4f}")
    results = ROOT / "docs" / "results"
    (results / "conversion_choice.json").write_text(json.dumps(
        {"ann_val": ann_val, "chosen": settings.__dict__, "trials": trials}, indent=1))
    history = {f"stage_{i}": json.loads((Path(stage[1]) / "results.json").read_text())
               for i, stage in enumerate(STAGES, start=1)}
    history["quantisation_aware"] = json.loads((QAT / "results.json").read_text())
    (results / "training_history.json").write_text(json.dumps(history, indent=1))


if __name__ == "__main__":
    main()

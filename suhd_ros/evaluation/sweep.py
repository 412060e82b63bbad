"""COCO mAP, spikes and energy of a model file over codings and timesteps (`suhd-eval`)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from suhd_ros.detector import Detector
from suhd_ros.evaluation.coco import any_class, evaluate_detections
from suhd_ros.snn.coding import DEFAULT_F_C, DEFAULT_T
from suhd_ros.snn.energy import FrameEnergy
from suhd_ros.synthetic.scenes import BENCHMARK_SIZE, SPLITS, Scene, generate_scene

LabelledImage = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # rgb, boxes, ids, ignore


class LabelledImages(Protocol):
    """Indexable labelled images: benchmark scenes, or a dataset split read lazily (a
    `suhd_ros.datasets.LabelledDataset` gives `(rgb, boxes_xyxy, class_ids, ignore)`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Scene | LabelledImage: ...


@dataclass(frozen=True)
class SpreadSubset:
    """`count` images spread evenly over `source` (all when it has fewer), read when asked for:
    a capped evaluation sees the whole split, not only its first folder."""

    source: LabelledImages
    count: int

    def __len__(self) -> int:
        return min(self.count, len(self.source))

    def __getitem__(self, index: int) -> Scene | LabelledImage:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.source[int(index * len(self.source) // len(self))]


def _labelled(item: Scene | LabelledImage) -> LabelledImage:
    """A scene as a dataset's tuple (a scene has nothing to ignore)."""
    if isinstance(item, Scene):
        return item.image, item.boxes_xyxy, item.class_ids, np.zeros(len(item.class_ids), bool)
    return item


@dataclass(frozen=True)
class RunConfig:
    """One row of the sweep: the ANN, or the SNN with a coding, T and f_c."""

    engine: str = "fused"  # "ann" | "fused" | "reference"
    coding: str = "stdi"
    T: int = DEFAULT_T
    f_c: int = DEFAULT_F_C

    @property
    def label(self) -> str:
        if self.engine == "ann":
            return "ANN"
        return f"{self.coding.upper()} T={self.T} f_c={self.f_c}"


def default_sweep() -> list[RunConfig]:
    """The ANN; STDI over T with bursts (f_c=4) and binary (f_c=1); f_c at T=4; rate coding."""
    rows = [RunConfig("ann")]
    rows += [RunConfig(T=T, f_c=4) for T in (1, 2, 3, 4, 6, 8)]
    rows += [RunConfig(T=T, f_c=1) for T in (1, 2, 3, 4, 6, 8)]
    rows += [RunConfig(T=4, f_c=f_c) for f_c in (2, 8)]
    rows += [RunConfig(coding="rate", T=T, f_c=1) for T in (4, 8, 16, 32, 64, 128, 256)]
    return rows


def benchmark_scenes(count: int, size: tuple[int, int] = BENCHMARK_SIZE,
                     split: str = "test") -> list[Scene]:
    """The first `count` scenes of a fixed split (test by default), at size (H, W).

    The benchmark is drawn at `BENCHMARK_SIZE` whatever the model's input: objects are 8 to
    200 px of the scene, and a 416 px model sees the same scenes letterboxed up.
    """
    seeds = itertools.islice(iter(SPLITS[split]), count)
    return [generate_scene(seed, size[1], size[0]) for seed in seeds]


def evaluate(detector: Detector, scenes: LabelledImages, batch_size: int = 8,
             score_threshold: float = 0.001, iou_threshold: float = 0.6,
             multi_label: bool = True, names: Sequence[str] | None = None) -> dict:
    """mAP@0.5 and mAP@0.5:0.95 over labelled images (mAP@0.5 also by object size, with classes
    ignored, and per class under `names`, the detector's by default), with mean spikes / SOPs /
    energy per frame.

    The protocol is YOLOv5's val.py (score threshold 0.001, NMS IoU 0.6, multi-label: a box is
    ranked under every class above the threshold); multi_label=False scores what the node
    publishes, one class per box. The Detector letterboxes each image to the model's input and
    maps its boxes back, so scoring is in the image's own pixels; ignored boxes (crowd, VOC
    difficult) are COCO crowd regions.
    """
    detections, gt, energies, seconds = [], [], [], 0.0
    for start in range(0, len(scenes), batch_size):
        chunk = [_labelled(scenes[k]) for k in range(start, min(start + batch_size, len(scenes)))]
        began = time.perf_counter()
        results = detector.detect([image for image, *_ in chunk], score_threshold, iou_threshold,
                                  100, multi_label=multi_label)
        seconds += time.perf_counter() - began
        detections += [(r.boxes_xyxy, r.scores, r.class_ids) for r in results]
        energies += [r.energy for r in results if r.energy]
        gt += [(boxes, ids, image.shape[1], image.shape[0], ignore)
               for image, boxes, ids, ignore in chunk]
    class_names = list(names) if names is not None else detector.names
    metrics = evaluate_detections(gt, detections, len(class_names), class_names)
    found = evaluate_detections(*any_class(gt, detections), num_classes=1)
    row = {"map50": metrics["map50"], "map50_95": metrics["map50_95"],
           **{f"map50_{size}": value for size, value in metrics["map50_by_size"].items()},
           "map50_any_class": found["map50"],
           "map50_small_any_class": found["map50_by_size"]["small"],
           "per_class": metrics["per_class"],
           "ms_per_image": 1e3 * seconds / max(len(scenes), 1)}
    if energies:
        row |= asdict(FrameEnergy.mean(energies))
    return row


def sweep(model_path: str, scenes: LabelledImages, configs: Sequence[RunConfig],
          device: str = "cpu", progress: Callable[[dict], None] | None = None,
          multi_label: bool = True, backend: str = "torch",
          names: Sequence[str] | None = None) -> list[dict]:
    """One evaluated row per configuration, each tagged with its settings and label; every
    configuration runs on `backend` (see Detector)."""
    runs = (({"label": config.label, **asdict(config)},
             Detector(model_path, device, config.engine, config.T, config.f_c,
                      coding=config.coding, backend=backend)) for config in configs)
    return _score(runs, scenes, progress, multi_label, names)


def own_setting(detector: Detector) -> RunConfig:
    """The SNN setting a model file runs with when nothing overrides it."""
    return RunConfig("fused", detector.coding.kind, detector.T, detector.f_c)


def compare(detectors: Sequence[Detector], scenes: LabelledImages,
            progress: Callable[[dict], None] | None = None, multi_label: bool = True,
            names: Sequence[str] | None = None) -> list[dict]:
    """Rows for other SNN model files (e.g. quantisation-aware fine-tuned ones), each run as
    loaded (its own T, f_c and coding), labelled with its file name; a table scores every row
    against its ANN row, so the float ANN they came from stays the 1.000 reference."""
    runs = (({"label": f"{d.model_path.name}: {own_setting(d).label}",
              **asdict(own_setting(d)), "model": str(d.model_path)}, d) for d in detectors)
    return _score(runs, scenes, progress, multi_label, names)


def _score(runs: Iterable[tuple[dict, Detector]], scenes: LabelledImages,
           progress: Callable[[dict], None] | None, multi_label: bool,
           names: Sequence[str] | None) -> list[dict]:
    """Each run's tags with its evaluated figures; a detector is made only when its turn
    comes (one network in memory at a time)."""
    rows = []
    for tags, detector in runs:
        rows.append({**tags, **evaluate(detector, scenes, multi_label=multi_label, names=names)})
        if progress:
            progress(rows[-1])
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """The sweep as a Markdown table, mAP as a ratio of the ANN's beside each figure."""
    ann = next((r for r in rows if r["engine"] == "ann"), None)
    lines = ["| model | mAP@0.5 | x ANN | mAP@0.5:0.95 | x ANN | spikes / frame | "
             "SOPs / frame | E_SNN / frame | E_ANN / frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio50 = r["map50"] / ann["map50"] if ann and ann["map50"] else float("nan")
        ratio95 = r["map50_95"] / ann["map50_95"] if ann and ann["map50_95"] else float("nan")
        spikes = f"{r['spikes']:.3g}" if "spikes" in r else "-"
        sops = f"{r['sops']:.3g}" if "sops" in r else "-"
        e_snn = f"{r['energy_snn_j'] * 1e3:.3f} mJ" if "energy_snn_j" in r else "-"
        e_ann = f"{r['energy_ann_j'] * 1e3:.3f} mJ" if "energy_ann_j" in r else "-"
        lines.append(f"| {r['label']} | {r['map50']:.4f} | {ratio50:.3f} | {r['map50_95']:.4f} "
                     f"| {ratio95:.3f} | {spikes} | {sops} | {e_snn} | {e_ann} |")
    return "\n".join(lines)


def size_table(rows: Sequence[dict], labels: Sequence[str] = ("ANN", "STDI T=4 f_c=4")) -> str:
    """mAP@0.5 by COCO object size (small < 32^2 px, large > 96^2 px) for the named rows, and
    with classes ignored (is an object found at all, or found but misnamed?)."""
    keys = ("small", "medium", "large", "any_class", "small_any_class")
    lines = ["| model | small | medium | large | all, any class | small, any class |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r["label"] in labels:
            lines.append(f"| {r['label']} | " + " | ".join(
                f"{r.get(f'map50_{key}', float('nan')):.4f}" for key in keys) + " |")
    return "\n".join(lines)


def per_class_table(rows: Sequence[dict], labels: Sequence[str]) -> str:
    """AP@0.5 and AP@0.5:0.95 per class (classes with ground truth) for the named rows: which
    classes the network finds, and which ones the conversion costs."""
    chosen = [r for r in rows if r["label"] in labels]
    if not chosen:
        return ""
    head = "| class | instances | " + " | ".join(
        f"{r['label']} AP@0.5 | {r['label']} AP@0.5:0.95" for r in chosen) + " |"
    lines = [head, "|---|---|" + "---|" * (2 * len(chosen))]
    for name, first in chosen[0]["per_class"].items():
        cells = [f"{r['per_class'][name]['map50']:.4f} | {r['per_class'][name]['map50_95']:.4f}"
                 for r in chosen]
        lines.append(f"| {name} | {first['instances']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

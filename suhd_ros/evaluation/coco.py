"""COCO box mAP (@0.5 and @0.5:0.95) of in-memory detections, computed by faster-coco-eval.

The COCO protocol (101-point interpolated precision, greedy matching by score, at most 100
detections per image, area range "all") is the one every detector paper reports, so the
numbers here compare with published figures. Classes are indices 0..nc-1; they become COCO
category ids 1..nc internally.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

# boxes xyxy [K, 4], class ids [K], W, H, optionally a [K] bool crowd mask (regions to ignore:
# COCO's iscrowd, VOC's difficult): a detection on one is neither a hit nor a false positive
GroundTruth = tuple[np.ndarray, np.ndarray, int, int] | tuple[np.ndarray, np.ndarray, int, int,
                                                              np.ndarray]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes xyxy [D, 4], scores [D], ids [D]


def _silent(*_args, **_kwargs) -> None:
    """faster-coco-eval reports progress through a print function; evaluation stays quiet."""


def _xywh(boxes_xyxy: np.ndarray) -> list[list[float]]:
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def _ground_truth_dataset(gt: Sequence[GroundTruth], num_classes: int) -> dict:
    images, annotations = [], []
    for image_id, (boxes, class_ids, width, height, *crowd) in enumerate(gt, start=1):
        images.append({"id": image_id, "width": int(width), "height": int(height)})
        flags = _crowd(class_ids, crowd).tolist()
        for bbox, class_id, is_crowd in zip(_xywh(boxes), np.asarray(class_ids).tolist(), flags,
                                            strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(is_crowd),
                }
            )
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _crowd(class_ids: np.ndarray, crowd: list[np.ndarray]) -> np.ndarray:
    """The optional fifth element of a ground truth, all False when absent."""
    count = np.asarray(class_ids).reshape(-1).size
    return np.asarray(crowd[0], bool).reshape(-1) if crowd else np.zeros(count, bool)


def _detection_results(dets: Sequence[Detections]) -> list[dict]:
    return [
        {"image_id": image_id, "category_id": int(class_id) + 1, "bbox": bbox, "score": score}
        for image_id, (boxes, scores, class_ids) in enumerate(dets, start=1)
        for bbox, score, class_id in zip(
            _xywh(boxes),
            np.asarray(scores, np.float64).reshape(-1).tolist(),
            np.asarray(class_ids).reshape(-1).tolist(),
            strict=True,
        )
    ]


def _class_count(gt: Sequence[GroundTruth], dets: Sequence[Detections]) -> int:
    ids = [np.asarray(g[1]).reshape(-1) for g in gt] + [np.asarray(d[2]).reshape(-1) for d in dets]
    flat = np.concatenate(ids) if ids else np.zeros(0)
    return int(flat.max()) + 1 if flat.size else 0


def _mean_valid(precision: np.ndarray) -> float:
    """Mean over entries COCO marks as defined (-1 means: class without ground truth)."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def any_class(
    gt: Sequence[GroundTruth], dets: Sequence[Detections]
) -> tuple[list[GroundTruth], list[Detections]]:
    """The same boxes with every class id set to 0: scores finding objects, not naming them."""
    return (
        [(boxes, np.zeros_like(np.asarray(ids)), *rest) for boxes, ids, *rest in gt],
        [(boxes, scores, np.zeros_like(np.asarray(ids))) for boxes, scores, ids in dets],
    )


def evaluate_detections(
    gt: Sequence[GroundTruth],
    dets: Sequence[Detections],
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """COCO mAP of `dets` against `gt` (the same images in the same order).

    Returns `{"map50", "map50_95", "map50_by_size", "per_class": {name: {"map50", "map50_95",
    "instances"}}}`; `map50_by_size` is mAP@0.5 over COCO's small (< 32^2 px), medium and large
    (> 96^2 px) objects. `per_class` lists the classes that have ground truth (COCO leaves the
    others undefined and out of the means). NaN when no class has any ground truth.
    """
    if len(gt) != len(dets):
        raise ValueError(f"{len(gt)} ground-truth images but {len(dets)} detection images")
    nc = num_classes if num_classes is not None else _class_count(gt, dets)
    coco_gt = COCO(_ground_truth_dataset(gt, nc), print_function=_silent)
    coco_dt = coco_gt.loadRes(_detection_results(dets))
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_silent)
    evaluator.evaluate()
    evaluator.accumulate()
    # precision: [iou thresholds, recall thresholds, classes, area ranges, max dets]
    by_area = np.asarray(evaluator.eval["precision"])[..., -1]
    precision = by_area[..., 0]  # area range "all"
    iou_50 = int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, 0.5))[0])
    instances = np.zeros(nc, np.int64)
    for _, class_ids, _, _, *crowd in gt:
        counted = np.asarray(class_ids, np.int64).reshape(-1)[~_crowd(class_ids, crowd)]
        np.add.at(instances, counted, 1)
    names = list(class_names) if class_names is not None else [str(k) for k in range(nc)]
    per_class = {
        names[k]: {
            "map50": _mean_valid(precision[iou_50, :, k]),
            "map50_95": _mean_valid(precision[:, :, k]),
            "instances": int(instances[k]),
        }
        for k in range(nc)
        if instances[k] > 0
    }
    return {
        "map50": _mean_valid(precision[iou_50]),
        "map50_95": _mean_valid(precision),
        "map50_by_size": {size: _mean_valid(by_area[iou_50, :, :, area])
                          for area, size in enumerate(("small", "medium", "large"), start=1)},
        "per_class": per_class,
    }

"""From Detect's decoded predictions to per-image detections (YOLOv5's NMS).

confidence = objectness * class score. Single-label (YOLOv5's detect.py, the node) keeps each
box's best class; multi-label (YOLOv5's val.py, for mAP) keeps every class above the threshold,
so an ambiguous box is scored under each class it might be. Boxes below the score threshold or
outside the class allowlist are dropped, then OpenCV's class-aware NMS keeps at most ``max_det``
per image.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass
class Detections:
    boxes_xyxy: np.ndarray  # [K, 4] float32, input pixels
    scores: np.ndarray  # [K] float32, descending
    class_ids: np.ndarray  # [K] int64

    def __len__(self) -> int:
        return len(self.scores)


def _empty() -> Detections:
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    )


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre/size boxes to corner boxes."""
    xy, half = xywh[:, :2], xywh[:, 2:4] / 2
    return np.concatenate((xy - half, xy + half), axis=1)


def _candidates(
    pred: np.ndarray, conf_threshold: float, multi_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of pred, class id, score) of every (box, class) pair above the threshold."""
    class_scores = pred[:, 5:] * pred[:, 4:5]
    if multi_label:
        rows, class_ids = np.nonzero(class_scores > conf_threshold)
    else:
        rows, class_ids = np.arange(len(pred)), class_scores.argmax(axis=1)
    scores = class_scores[rows, class_ids]
    keep = scores > conf_threshold
    return rows[keep], class_ids[keep], scores[keep]


def detections_for_image(
    pred: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    multi_label: bool = False,
) -> Detections:
    """One image's predictions [M, 5 + nc] (xywh, obj, class scores) -> detections."""
    if len(pred) == 0:
        return _empty()
    rows, class_ids, scores = _candidates(pred, conf_threshold, multi_label)
    if classes is not None:
        allowed = np.isin(class_ids, np.asarray(classes))
        rows, class_ids, scores = rows[allowed], class_ids[allowed], scores[allowed]
    if len(rows) == 0:
        return _empty()
    boxes = xywh_to_xyxy(pred[rows, :4].astype(np.float64))
    rects = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1)
    kept = cv2.dnn.NMSBoxesBatched(
        rects.tolist(), scores.astype(float).tolist(), class_ids.astype(int).tolist(),
        float(conf_threshold), float(iou_threshold),
    )
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_det]
    return Detections(
        boxes[kept].astype(np.float32), scores[kept].astype(np.float32),
        class_ids[kept].astype(np.int64),
    )


def postprocess(
    predictions: torch.Tensor | np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    multi_label: bool = False,
) -> list[Detections]:
    """Batch [N, M, 5 + nc] of decoded predictions -> one ``Detections`` per image."""
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().float().cpu().numpy()
    return [
        detections_for_image(p, conf_threshold, iou_threshold, classes, max_det, multi_label)
        for p in predictions
    ]

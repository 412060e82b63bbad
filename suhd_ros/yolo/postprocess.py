"""From Detect's decoded predictions to per-image detections (YOLOv5's single-label NMS).

confidence = objectness * best class score; boxes below the score threshold or outside the class
allowlist are dropped, then OpenCV's class-aware NMS keeps at most ``max_det`` per image.
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


def detections_for_image(
    pred: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
) -> Detections:
    """One image's predictions [M, 5 + nc] (xywh, obj, class scores) -> detections."""
    if len(pred) == 0:
        return _empty()
    class_scores = pred[:, 5:] * pred[:, 4:5]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(pred)), class_ids]
    keep = scores > conf_threshold
    if classes is not None:
        keep &= np.isin(class_ids, np.asarray(classes))
    if not keep.any():
        return _empty()
    boxes = xywh_to_xyxy(pred[keep, :4].astype(np.float64))
    scores, class_ids = scores[keep], class_ids[keep]
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
) -> list[Detections]:
    """Batch [N, M, 5 + nc] of decoded predictions -> one ``Detections`` per image."""
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().float().cpu().numpy()
    return [
        detections_for_image(p, conf_threshold, iou_threshold, classes, max_det)
        for p in predictions
    ]

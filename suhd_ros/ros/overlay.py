"""Draw detections (boxes, "name score" labels) and an info line on a copy of an RGB image."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

ClassNames = Sequence[str] | Mapping[int, str]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_INFO_BACKGROUND = (0, 0, 0)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A fixed, saturated RGB colour for a class.

    Hues step by the golden ratio so that neighbouring ids get far-apart colours for any
    number of classes, and the same id always gets the same colour (no random palette).
    """
    hue = (class_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def class_label(class_id: int, class_names: ClassNames) -> str:
    """The class name, or "class <id>" for an id the names do not cover."""
    if isinstance(class_names, Mapping):
        return class_names.get(class_id, f"class {class_id}")
    if 0 <= class_id < len(class_names):
        return class_names[class_id]
    return f"class {class_id}"


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (Rec. 601 luma), so labels stay legible."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _clipped_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer corners inside the image, or None when the box is not finite or lies outside."""
    if not np.all(np.isfinite(box)):
        return None
    x1, y1, x2, y2 = box
    if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1 or x2 < x1 or y2 < y1:
        return None
    return (
        round(min(max(x1, 0), width - 1)),
        round(min(max(y1, 0), height - 1)),
        round(min(max(x2, 0), width - 1)),
        round(min(max(y2, 0), height - 1)),
    )


def _text_box_size(text: str, scale: float, thickness: int) -> tuple[int, int]:
    """Width and height of the filled rectangle that holds ``text`` with a small margin."""
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    return text_w + 2 * thickness, text_h + baseline + 2 * thickness


def _draw_text_box(
    image: np.ndarray,
    text: str,
    origin: tuple[int, int],
    background: tuple[int, int, int],
    scale: float,
    thickness: int,
) -> None:
    """Text on a filled rectangle whose top-left corner is ``origin``."""
    box_w, box_h = _text_box_size(text, scale, thickness)
    x, y = origin
    baseline = cv2.getTextSize(text, _FONT, scale, thickness)[1]
    cv2.rectangle(image, (x, y), (x + box_w, y + box_h), background, cv2.FILLED)
    cv2.putText(
        image, text, (x + thickness, y + box_h - thickness - baseline), _FONT, scale,
        _text_colour(background), thickness, cv2.LINE_AA,
    )


def _check_inputs(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be an H x W x 3 uint8 array, found {rgb.dtype} {rgb.shape}")
    n = len(boxes)
    if boxes.shape != (n, 4) or scores.shape != (n,) or ids.shape != (n,):
        raise ValueError(
            f"expected boxes N x 4, scores N, class_ids N; found {boxes.shape}, "
            f"{scores.shape}, {ids.shape}"
        )


def draw_detections(
    rgb: np.ndarray,
    boxes_xyxy: np.ndarray | Sequence[Sequence[float]],
    scores: np.ndarray | Sequence[float],
    class_ids: np.ndarray | Sequence[int],
    class_names: ClassNames,
    info_line: str | None = None,
    track_ids: Sequence[int] | None = None,
) -> np.ndarray:
    """A new RGB image with each box outlined in its class colour, labelled "name score"
    ("name #id score" for a tracked one: ``track_ids`` >= 0).

    ``boxes_xyxy`` are pixel corners (x1, y1, x2, y2); boxes partly outside are clipped, boxes
    wholly outside are skipped. ``info_line`` (fps, latency, energy: the caller's text) is drawn
    across the top-left corner. The input image is never modified.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    score_array = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(class_ids).astype(np.int64)
    _check_inputs(rgb, boxes, score_array, ids)
    out = rgb.copy()
    height, width = out.shape[:2]
    thickness = max(1, round((height + width) / 600))
    scale = 0.4 * thickness
    tracks = [-1] * len(boxes) if track_ids is None else [int(t) for t in track_ids]
    for box, score, class_id, track in zip(boxes, score_array, ids, tracks, strict=True):
        corners = _clipped_box(box, width, height)
        if corners is None:
            continue
        x1, y1, x2, y2 = corners
        colour = class_colour(int(class_id))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        name = class_label(int(class_id), class_names) + (f" #{track}" if track >= 0 else "")
        label = f"{name} {score:.2f}"
        label_h = _text_box_size(label, scale, thickness)[1]
        label_top = y1 - label_h if y1 >= label_h else y1
        _draw_text_box(out, label, (x1, label_top), colour, scale, thickness)
    if info_line:
        _draw_text_box(out, info_line, (0, 0), _INFO_BACKGROUND, scale, thickness)
    return out

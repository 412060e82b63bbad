"""Letterbox resizing (keep aspect ratio, pad the rest) and its exact inverse for boxes.

The stored ratio is the one the pixels really got (resized size / original size per axis, after
rounding to whole pixels) and the pads are the integer offsets really applied, so mapping boxes
back needs no guesswork.
"""

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # YOLOv5's grey for letterbox borders (and the training augmentation's fill)


@dataclass(frozen=True)
class LetterboxInfo:
    ratio: tuple[float, float]  # (x, y): resized content size / original size
    pad_x: int  # columns of padding on the left
    pad_y: int  # rows of padding on the top
    orig_shape: tuple[int, int]  # (height, width) of the original image


def _target_shape(new_shape: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(new_shape, int):
        return new_shape, new_shape
    h, w = new_shape
    return int(h), int(w)


def letterbox(
    image: np.ndarray, new_shape: int | tuple[int, int]
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize an HxWx3 uint8 image to fit ``new_shape`` (h, w), centred on a PAD_VALUE border."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    new_h, new_w = _target_shape(new_shape)
    r = min(new_h / h, new_w / w)
    unpad_w, unpad_h = min(max(round(w * r), 1), new_w), min(max(round(h * r), 1), new_h)
    if (unpad_w, unpad_h) != (w, h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (new_w - unpad_w) // 2, (new_h - unpad_h) // 2
    padded = cv2.copyMakeBorder(
        image, pad_y, new_h - unpad_h - pad_y, pad_x, new_w - unpad_w - pad_x,
        cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    info = LetterboxInfo((unpad_w / w, unpad_h / h), pad_x, pad_y, (h, w))
    return padded, info


def letterbox_boxes(boxes_xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Original-image boxes [K, 4] -> letterboxed-image boxes (used for labels)."""
    scale, offset = _affine(info)
    return (np.asarray(boxes_xyxy, dtype=np.float64) * scale + offset).astype(np.float32)


def unletterbox_boxes(boxes_xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Letterboxed-image boxes [K, 4] -> original-image boxes, clipped to the image."""
    scale, offset = _affine(info)
    boxes = (np.asarray(boxes_xyxy, dtype=np.float64) - offset) / scale
    h, w = info.orig_shape
    boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], dtype=np.float64))
    return boxes.astype(np.float32)


def _affine(info: LetterboxInfo) -> tuple[np.ndarray, np.ndarray]:
    rx, ry = info.ratio
    return (
        np.array([rx, ry, rx, ry], dtype=np.float64),
        np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], dtype=np.float64),
    )

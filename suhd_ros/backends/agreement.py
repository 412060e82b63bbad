"""Whether two backends found the same objects: the rule the tests and benchmarks/backends.py
apply to a backend against the PyTorch fused engine.

Detections are matched as sets, not by rank: a level that float reordering moves across a
threshold changes scores in the third decimal, which can swap two detections of nearly equal
score without changing what was found.
"""

from __future__ import annotations

import numpy as np

BOX_TOLERANCE_PX = 0.5


def detections_agree(boxes_a: np.ndarray, classes_a: np.ndarray, boxes_b: np.ndarray,
                     classes_b: np.ndarray, tolerance_px: float = BOX_TOLERANCE_PX) -> bool:
    """Same number of detections, and each of a has its own detection in b of the same class
    whose corners are all within tolerance_px (greedy, closest first)."""
    if len(classes_a) != len(classes_b):
        return False
    free = list(range(len(classes_b)))
    for box, cls in zip(boxes_a, classes_a, strict=True):
        candidates = [j for j in free if classes_b[j] == cls]
        if not candidates:
            return False
        distance = [float(np.abs(boxes_b[j] - box).max()) for j in candidates]
        best = int(np.argmin(distance))
        if distance[best] > tolerance_px:
            return False
        free.remove(candidates[best])
    return True


def max_box_difference(boxes_a: np.ndarray, classes_a: np.ndarray, boxes_b: np.ndarray,
                       classes_b: np.ndarray) -> float:
    """The largest corner distance between each detection of a and its nearest same-class
    detection of b (inf if one has none); 0 for two empty sets."""
    worst = 0.0
    for box, cls in zip(boxes_a, classes_a, strict=True):
        same = boxes_b[classes_b == cls]
        if len(same) == 0:
            return float("inf")
        worst = max(worst, float(np.abs(same - box).max(axis=1).min()))
    return worst

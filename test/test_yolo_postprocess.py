"""Post-processing: confidence, score threshold, allowlist, class-aware NMS, max detections."""

import numpy as np
import pytest
import torch

from suhd_ros.yolo.postprocess import postprocess

NC = 3


def _row(xyxy: tuple[float, float, float, float], obj: float, cls: int, cls_score: float = 1.0,
         other: float = 0.0) -> list[float]:
    """One prediction row (cx, cy, w, h, obj, class scores) from a corner box."""
    x1, y1, x2, y2 = xyxy
    scores = [other] * NC
    scores[cls] = cls_score
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, obj, *scores]


def _batch(*rows: list[float]) -> np.ndarray:
    return np.array([rows], dtype=np.float32)


def _iou(a: tuple, b: tuple) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


A, B = (0.0, 0.0, 10.0, 10.0), (5.0, 0.0, 15.0, 10.0)  # IoU 1/3


def test_boxes_and_confidence() -> None:
    (det,) = postprocess(_batch(_row((2, 4, 12, 20), 0.8, 1, 0.5, other=0.1)))
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes_xyxy[0], [2, 4, 12, 20], atol=1e-5)
    assert det.class_ids[0] == 1
    assert det.scores[0] == pytest.approx(0.8 * 0.5)
    assert det.boxes_xyxy.dtype == np.float32 and det.class_ids.dtype.kind == "i"


@pytest.mark.parametrize(("iou_threshold", "kept"), [(0.3, 1), (0.4, 2)])
def test_iou_threshold(iou_threshold: float, kept: int) -> None:
    assert _iou(A, B) == pytest.approx(1 / 3)
    pred = _batch(_row(A, 0.9, 0), _row(B, 0.7, 0))
    (det,) = postprocess(pred, iou_threshold=iou_threshold)
    assert len(det) == kept
    np.testing.assert_allclose(det.boxes_xyxy[0], A)  # the stronger box always survives


def test_nms_is_class_aware() -> None:
    pred = _batch(_row(A, 0.9, 0), _row(A, 0.8, 2), _row((0, 0, 10, 9), 0.6, 0))
    (det,) = postprocess(pred, iou_threshold=0.5)
    assert sorted(det.class_ids.tolist()) == [0, 2]
    np.testing.assert_allclose(det.scores, [0.9, 0.8], rtol=1e-6)


def test_score_threshold_uses_obj_times_class() -> None:
    # obj and class score each pass 0.25, their product (0.2) does not
    pred = _batch(_row(A, 0.5, 0, 0.4), _row((20, 20, 30, 30), 0.6, 1, 0.5))
    (det,) = postprocess(pred, conf_threshold=0.25)
    assert det.class_ids.tolist() == [1]
    (det,) = postprocess(pred, conf_threshold=0.1)
    assert len(det) == 2


def test_class_allowlist() -> None:
    boxes = [(i * 20.0, 0.0, i * 20.0 + 10, 10.0) for i in range(3)]
    pred = _batch(*[_row(b, 0.9, c) for c, b in enumerate(boxes)])
    (det,) = postprocess(pred, classes=[0, 2])
    assert sorted(det.class_ids.tolist()) == [0, 2]
    (det,) = postprocess(pred, classes=[])
    assert len(det) == 0


def test_max_det_keeps_the_best_sorted() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.3, 1.0, size=20)
    rows = [_row((i * 20.0, 0.0, i * 20.0 + 10, 10.0), s, i % NC) for i, s in enumerate(scores)]
    (det,) = postprocess(_batch(*rows), max_det=5)
    np.testing.assert_allclose(det.scores, np.sort(scores)[::-1][:5], rtol=1e-6)
    (det,) = postprocess(_batch(*rows))
    assert len(det) == 20
    assert np.all(np.diff(det.scores) <= 0)


def test_batch_and_empty_images() -> None:
    pred = np.stack([
        _batch(_row(A, 0.9, 0), _row(B, 0.1, 1))[0],
        _batch(_row(A, 0.1, 0), _row(B, 0.2, 1))[0],
    ])
    first, second = postprocess(torch.from_numpy(pred))
    assert len(first) == 1 and len(second) == 0
    assert second.boxes_xyxy.shape == (0, 4)
    (none,) = postprocess(np.zeros((1, 0, 5 + NC), np.float32))
    assert len(none) == 0


def test_multi_label_scores_a_box_under_every_class_above_the_threshold() -> None:
    # one box, unsure between classes 0 (0.6) and 2 (0.3); class 1 (0.05) is below 0.1 x 0.9
    row = _row(A, 0.9, 0, 0.6)
    row[5 + 1], row[5 + 2] = 0.05, 0.3
    (single,) = postprocess(_batch(row), conf_threshold=0.1)
    assert single.class_ids.tolist() == [0]
    (multi,) = postprocess(_batch(row), conf_threshold=0.1, multi_label=True)
    assert multi.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(multi.scores, [0.54, 0.27], rtol=1e-6)
    np.testing.assert_allclose(multi.boxes_xyxy, [A, A])
    (allowed,) = postprocess(_batch(row), conf_threshold=0.1, classes=[2], multi_label=True)
    assert allowed.class_ids.tolist() == [2]

"""COCO export (valid, faithful) and COCO mAP against hand-computed cases."""

import cv2
import numpy as np
import pytest
from faster_coco_eval import COCO

from suhd_ros.datasets import open_dataset
from suhd_ros.evaluation.coco import any_class, evaluate_detections
from suhd_ros.synthetic.export import export_coco
from suhd_ros.synthetic.scenes import CLASS_NAMES, SPLITS, generate_scene

COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _iou(a, b) -> float:
    """IoU of two xyxy boxes, written out independently of the evaluator."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return root, export_coco(root, "val", count=5, width=96, height=64, progress=False)


def test_export_is_valid_coco_and_matches_the_generator(exported):
    root, json_path = exported
    coco = COCO(str(json_path))
    assert len(coco.getImgIds()) == 5
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    for image_id, seed in zip(sorted(coco.getImgIds()), SPLITS["val"], strict=False):
        scene = generate_scene(seed, 96, 64)
        info = coco.loadImgs(image_id)[0]
        png = cv2.imread(str(root / "images" / "val" / info["file_name"]))
        png = cv2.cvtColor(png, cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, scene.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(scene.class_ids)
        for ann, box, class_id in zip(anns, scene.boxes_xyxy, scene.class_ids, strict=True):
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], box)
            assert ann["area"] == pytest.approx(w * h) and ann["iscrowd"] == 0
            assert coco.loadCats(ann["category_id"])[0]["name"] == CLASS_NAMES[class_id]


def test_ground_truth_against_itself_scores_one(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path))
    labelled = open_dataset(exported[0], "val").records
    gt = [(li.boxes_xyxy, li.class_ids, li.width, li.height) for li in labelled]
    dets = [
        (li.boxes_xyxy, np.linspace(1.0, 0.5, len(li.class_ids)), li.class_ids) for li in labelled
    ]
    result = evaluate_detections(gt, dets, num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
    assert result["map50"] == pytest.approx(1.0) and result["map50_95"] == pytest.approx(1.0)
    assert all(v["map50_95"] == pytest.approx(1.0) for v in result["per_class"].values())
    assert sum(v["instances"] for v in result["per_class"].values()) == sum(
        len(li.class_ids) for li in labelled
    )


def test_shifted_box_passes_only_the_thresholds_below_its_iou():
    truth, shifted = [10.0, 10.0, 110.0, 110.0], [25.0, 10.0, 125.0, 110.0]
    iou = _iou(truth, shifted)  # 85 / 115
    assert 0.7 < iou < 0.75
    gt = [(np.array([truth]), np.array([0]), 200, 200)]
    result = evaluate_detections(gt, [(np.array([shifted]), np.array([0.9]), np.array([0]))])
    assert result["map50"] == pytest.approx(1.0)
    assert result["map50_95"] == pytest.approx(np.mean(iou >= COCO_THRESHOLDS))


def test_false_positive_ranked_first_halves_precision_and_a_missed_class_scores_zero():
    a_box, b_box, empty = [10.0, 10.0, 60.0, 60.0], [100.0, 100.0, 150.0, 150.0], [150, 0, 190, 40]
    gt = [(np.array([a_box, b_box]), np.array([0, 1]), 200, 200)]
    # class 0: a better-scored miss then the hit -> precision 1/2 at every recall level;
    # class 1: detected only as the wrong class -> AP 0
    boxes = np.array([empty, a_box, b_box], np.float64)
    dets = [(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 2]))]
    result = evaluate_detections(gt, dets, num_classes=3, class_names=["a", "b", "c"])
    assert result["per_class"]["a"]["map50"] == pytest.approx(0.5)
    assert result["per_class"]["b"]["map50_95"] == pytest.approx(0.0)
    assert "c" not in result["per_class"]  # no ground truth: undefined, left out of the mean
    assert result["map50"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["map50_95"] == pytest.approx((0.5 + 0.0) / 2)


def test_any_class_counts_a_found_but_misnamed_object():
    box = [10.0, 10.0, 60.0, 60.0]
    gt = [(np.array([box]), np.array([1]), 100, 100)]
    dets = [(np.array([box]), np.array([0.9]), np.array([2]))]  # right place, wrong class
    assert evaluate_detections(gt, dets, num_classes=3)["map50"] == pytest.approx(0.0)
    assert evaluate_detections(*any_class(gt, dets), num_classes=1)["map50"] == pytest.approx(1.0)


def test_map_by_size_splits_at_coco_areas():
    small, large = [10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 160.0, 160.0]  # 20^2 and 110^2 px
    gt = [(np.array([small, large]), np.array([0, 0]), 200, 200)]
    dets = [(np.array([large, [100.0, 10.0, 120.0, 30.0]]), np.array([0.9, 0.8]),
             np.array([0, 0]))]  # the large one found, the small one missed by a small box
    sizes = evaluate_detections(gt, dets)["map50_by_size"]
    assert sizes["large"] == pytest.approx(1.0) and sizes["small"] == pytest.approx(0.0)
    assert np.isnan(sizes["medium"])  # no medium ground truth


def test_mismatched_image_counts_are_refused():
    with pytest.raises(ValueError):
        evaluate_detections([(np.zeros((0, 4)), np.zeros(0, int), 10, 10)], [])


def test_a_detection_on_a_crowd_region_is_neither_hit_nor_false_positive():
    real, crowd = [10.0, 10.0, 60.0, 60.0], [100.0, 100.0, 190.0, 190.0]
    dets = [(np.array([crowd, real]), np.array([0.9, 0.8]), np.array([0, 0]))]
    with_crowd = [(np.array([real, crowd]), np.array([0, 0]), 200, 200, np.array([False, True]))]
    result = evaluate_detections(with_crowd, dets, num_classes=1)
    assert result["map50"] == pytest.approx(1.0)
    assert result["per_class"]["0"]["instances"] == 1
    without = [(np.array([real]), np.array([0]), 200, 200)]  # the same detection is then an FP
    assert evaluate_detections(without, dets, num_classes=1)["map50"] == pytest.approx(0.5)

"""Dataset readers on hand-made YOLO, COCO and VOC trees: boxes, names, bad records, the cache."""

import json
import os

import cv2
import numpy as np
import pytest

from suhd_ros.datasets import DatasetError, ImageReadError, detect_layout, open_dataset
from suhd_ros.datasets.base import summary
from suhd_ros.datasets.voc import VOC_CLASSES, parse_xml
from suhd_ros.datasets.yolo import label_path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "cache"))


def _image(path, width=40, height=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    assert cv2.imwrite(str(path), image)
    return image


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _kinds(dataset):
    return sorted((p.file.rsplit("/", 1)[-1], p.line, p.kind) for p in dataset.problems)


# ----------------------------------------------------------------------------- YOLO


@pytest.fixture
def yolo_tree(tmp_path):
    root = tmp_path / "ds"
    _write(tmp_path / "data.yaml", "path: ds\ntrain: [images/train, extra.txt]\n"
                                   "val: images/val\nnc: 2\nnames: {0: apple, 1: pear}\n")
    _image(root / "images/train/a.png")
    _write(root / "labels/train/a.txt", "\n".join([
        "0 0.5 0.5 0.5 0.5",             # 1: 10..30 x 5..15 px
        "2 0.5 0.5 0.1 0.1",             # 2: class out of range
        "1 abc 0.5 0.1 0.1",             # 3: non-numeric
        "0 0.5 0.5 0 0.1",               # 4: degenerate
        "0 1.2 0.5 0.5 0.5",             # 5: outside the image
        "1 0.1 0.1 0.3 0.1 0.3 0.4",     # 6: polygon -> its bounding box
        "",
        "1.5 0.5 0.5 0.1 0.1",           # 8: not an integer class
    ]))  # fmt: skip
    _image(root / "images/train/background.jpg")
    _write(root / "images/train/broken.png", "not an image")
    _image(root / "images/more/b.png", 20, 20)
    _write(root / "labels/more/b.txt", "1 0.5 0.5 1 1\n")
    _write(root / "extra.txt", "images/more/b.png\nimages/more/gone.png\n")
    _image(root / "images/val/v.png")
    return tmp_path


def test_yolo_reads_boxes_in_pixels_and_reports_every_bad_line(yolo_tree):
    assert detect_layout(yolo_tree) == "yolo"
    train = open_dataset(yolo_tree, "train")
    assert train.names == ("apple", "pear") and train.layout == "yolo"
    by_name = {r.path.name: r for r in train.records}
    assert sorted(by_name) == ["a.png", "b.png", "background.jpg"]
    a = by_name["a.png"]
    np.testing.assert_allclose(a.boxes_xyxy, [[10, 5, 30, 15], [4, 2, 12, 8]], atol=1e-4)
    assert a.class_ids.tolist() == [0, 1] and (a.width, a.height) == (40, 20)
    np.testing.assert_allclose(by_name["b.png"].boxes_xyxy, [[0, 0, 20, 20]])
    assert len(by_name["background.jpg"].class_ids) == 0
    assert _kinds(train) == sorted([
        ("a.txt", 2, "class out of range"), ("a.txt", 3, "non-numeric field"),
        ("a.txt", 4, "degenerate box"), ("a.txt", 5, "box outside the image"),
        ("a.txt", 8, "class out of range"), ("broken.png", None, "unreadable image"),
        ("extra.txt", 2, "missing image"),
    ])  # fmt: skip
    assert summary(train.problems).startswith("7 bad records: 2 class out of range")
    image, boxes, class_ids, ignore = train[train.records.index(a)]
    assert image.shape == (20, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(boxes, a.boxes_xyxy)
    assert class_ids.tolist() == [0, 1] and not ignore.any()
    assert len(open_dataset(yolo_tree / "data.yaml", "val")) == 1


def test_yolo_label_path_swaps_only_the_last_images_folder(tmp_path):
    assert label_path(tmp_path / "images/x/images/y.jpg") == tmp_path / "images/x/labels/y.txt"


def test_yolo_yaml_errors_are_one_clear_line(tmp_path):
    _write(tmp_path / "data.yaml", "train: images\nnames: [a]\nnc: 3\n")
    with pytest.raises(DatasetError, match="nc is 3 but names lists 1"):
        open_dataset(tmp_path, "train")
    _write(tmp_path / "data.yaml", "train: images\nnames: [a]\n")
    with pytest.raises(DatasetError, match="no 'val' split"):
        open_dataset(tmp_path, "val")


def test_a_dataset_without_a_usable_image_is_one_error(tmp_path):
    _write(tmp_path / "data.yaml", "train: images\nnames: [a]\n")
    _write(tmp_path / "images/x.png", "garbage")
    with pytest.raises(DatasetError, match=r"no usable image.*1 unreadable image"):
        open_dataset(tmp_path, "train")


def test_the_cache_is_used_while_the_files_are_unchanged(yolo_tree):
    first = open_dataset(yolo_tree, "val")
    label = yolo_tree / "ds/labels/val/v.txt"
    _write(label, "0 0.5 0.5 0.5 0.5\n")
    second = open_dataset(yolo_tree, "val")
    assert len(first.records[0].class_ids) == 0 and len(second.records[0].class_ids) == 1
    stat = label.stat()
    _write(label, "1 0.5 0.5 0.5 0.5\n")  # same size; mtime put back: looks unchanged
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert open_dataset(yolo_tree, "val").records[0].class_ids.tolist() == [0]  # from the cache
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert open_dataset(yolo_tree, "val").records[0].class_ids.tolist() == [1]
    assert len(list((yolo_tree / "cache").glob("*.npz"))) == 1


def test_an_image_damaged_after_indexing_raises_image_read_error(yolo_tree):
    dataset = open_dataset(yolo_tree, "val")
    path = dataset.records[0].path
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixels gone
    with pytest.raises(ImageReadError, match=r"v\.png"):
        dataset.read_image(0)


# ----------------------------------------------------------------------------- COCO


@pytest.fixture
def coco_tree(tmp_path):
    _image(tmp_path / "val2017/1.jpg", 64, 48)
    _image(tmp_path / "val2017/2.png", 64, 48)
    _image(tmp_path / "val2017/4.png", 30, 30)
    _write(tmp_path / "val2017/5.png", "garbage")
    ann = [
        {"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 2, 10, 20], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]},  # no such category
        {"id": 4, "image_id": 1, "category_id": 7, "bbox": [1, "x", 5, 5]},
        {"id": 5, "image_id": 1, "category_id": 7, "bbox": [60, 40, 20, 20]},  # outside
        {"id": 6, "image_id": 9, "category_id": 7, "bbox": [1, 1, 5, 5]},  # unknown image
        {"id": 7, "image_id": 4, "category_id": 7, "bbox": [1, 1, 5, 5]},
    ]
    images = [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 48},
              {"id": 2, "file_name": "2.png", "width": 64, "height": 48},
              {"id": 3, "file_name": "3.png", "width": 64, "height": 48},  # missing
              {"id": 4, "file_name": "4.png", "width": 64, "height": 48},  # size differs
              {"id": 5, "file_name": "5.png", "width": 64, "height": 48}]  # unreadable
    categories = [{"id": 90, "name": "zebra"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]
    _write(tmp_path / "annotations/instances_val2017.json",
           json.dumps({"images": images, "annotations": ann, "categories": categories}))
    return tmp_path


def test_coco_maps_category_ids_to_contiguous_indices_and_keeps_crowds_ignored(coco_tree):
    assert detect_layout(coco_tree) == "coco"
    dataset = open_dataset(coco_tree, "val")
    assert dataset.names == ("car", "dog", "zebra")
    assert [r.path.name for r in dataset.records] == ["1.jpg", "2.png"]
    first = dataset.labels(0)
    np.testing.assert_allclose(first.boxes_xyxy, [[1, 2, 11, 22], [0, 0, 64, 48]])
    assert first.class_ids.tolist() == [2, 0] and first.ignore.tolist() == [False, True]
    assert _kinds(dataset) == sorted([
        ("3.png", None, "missing image"), ("4.png", None, "image size differs from the annotation"),
        ("5.png", None, "unreadable image"),
        ("instances_val2017.json", None, "annotation of an unknown image"),
        ("instances_val2017.json", None, "box outside the image"),
        ("instances_val2017.json", None, "class out of range"),
        ("instances_val2017.json", None, "non-numeric field"),
    ])  # fmt: skip
    with pytest.raises(DatasetError, match="no COCO JSON for split 'train'"):
        open_dataset(coco_tree, "train")
    by_json = open_dataset(coco_tree / "annotations/instances_val2017.json", "val")
    assert by_json.names == dataset.names and len(by_json) == 2


# ----------------------------------------------------------------------------- VOC


def _voc_xml(*objects, filename=None):
    body = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>\n"
        for name, difficult, (x1, y1, x2, y2) in objects
    )
    name = f"<filename>{filename}</filename>" if filename else ""
    return f"<annotation>{name}<size><width>40</width><height>20</height></size>\n{body}" \
           "</annotation>"


@pytest.fixture
def voc_tree(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    for year, ids in (("VOC2007", ["000001", "000002"]), ("VOC2012", ["2012_000001"])):
        for image_id in ids:
            _image(devkit / year / "JPEGImages" / f"{image_id}.jpg")
        _write(devkit / year / "ImageSets/Main/trainval.txt", "\n".join(ids) + "\n")
    _write(devkit / "VOC2007/ImageSets/Main/test.txt", "000002\n")
    _write(devkit / "VOC2007/Annotations/000001.xml", _voc_xml(
        ("dog", 0, (1, 1, 10, 20)), ("person", 1, (5, 5, 8, 8)),
        ("dog", 0, (30, 5, "ten", 9)), ("dog", 0, (35, 5, 50, 9))))
    _write(devkit / "VOC2007/Annotations/000002.xml",
           '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY lol "lol">]><annotation>&lol;</annotation>')
    _write(devkit / "VOC2012/Annotations/2012_000001.xml", _voc_xml(("cat", 0, (2, 3, 4, 5))))
    return devkit


def test_voc_joins_years_keeps_difficult_ignored_and_refuses_dtds(voc_tree):
    assert detect_layout(voc_tree) == "voc"
    dataset = open_dataset(voc_tree, "trainval")
    assert dataset.names == VOC_CLASSES
    assert [r.path.name for r in dataset.records] == ["000001.jpg", "2012_000001.jpg"]
    first = dataset.labels(0)
    np.testing.assert_allclose(first.boxes_xyxy, [[0, 0, 10, 20], [4, 4, 8, 8]])
    assert [dataset.names[k] for k in first.class_ids] == ["dog", "person"]
    assert first.ignore.tolist() == [False, True]
    assert _kinds(dataset) == [("000001.xml", 4, "non-numeric field"),
                               ("000001.xml", 5, "box outside the image"),
                               ("000002.xml", None, "unreadable annotation")]
    assert "DTD" in dataset.problems[-1].detail
    joined = open_dataset(voc_tree, "VOC2007/trainval+VOC2012/trainval")
    assert len(joined) == 2 and joined.names == VOC_CLASSES
    with pytest.raises(DatasetError, match="no usable image"):
        open_dataset(voc_tree, "VOC2007/test")


def test_voc_names_come_from_labels_txt_or_from_the_annotations(voc_tree):
    _write(voc_tree / "VOC2012/Annotations/2012_000001.xml", _voc_xml(("robot", 0, (2, 3, 4, 5))))
    # not all VOC's: the sorted names of every year's objects, the same for every split
    assert open_dataset(voc_tree, "VOC2012/trainval").names == ("dog", "person", "robot")
    _write(voc_tree / "labels.txt", "robot\ndog\n")
    dataset = open_dataset(voc_tree, "trainval")
    assert dataset.names == ("robot", "dog")
    assert ("000001.xml", 3, "class out of range") in _kinds(dataset)  # person is not listed


def test_xml_parser_refuses_external_entities():
    with pytest.raises(ValueError, match="refused"):
        parse_xml(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')
    assert parse_xml(b"<a>\n<b>1</b></a>").find("b").line == 2


def test_unknown_layout_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no dataset layout recognised"):
        open_dataset(tmp_path, "train")

"""COCO instances JSON + its image folder (e.g. annotations/instances_val2017.json + val2017/).

Category ids (COCO's 1..90 with gaps, or any) become contiguous indices in id order; the names
come from `categories`. Crowd boxes (`iscrowd: 1`) are kept with `ignore` set: not trained on,
crowd regions in evaluation as COCO's own evaluator treats them. JSON has no useful line
numbers, so a bad record is reported by its annotation or image id.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from suhd_ros.datasets import cache
from suhd_ros.datasets.base import (
    DatasetError,
    ImageLabels,
    LabelledDataset,
    Problems,
    check_box,
)
from suhd_ros.datasets.images import image_size


def _load_json(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read COCO JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list) \
            or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: not a COCO instances file (no images / categories lists)")
    return data


def _categories(data: dict, path: Path) -> tuple[list[str], dict]:
    try:
        ordered = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: every category needs an integer id and a name") from e
    if not ordered or len({i for i, _ in ordered}) != len(ordered):
        raise DatasetError(f"{path}: categories are empty or repeat an id")
    return [name for _, name in ordered], {cid: k for k, (cid, _) in enumerate(ordered)}


def _box(ann: dict, class_of: dict, width: int, height: int) -> tuple[str, int, np.ndarray | None]:
    """(problem, class index, pixel xyxy) of one annotation."""
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
        category = int(ann["category_id"])
    except (KeyError, TypeError, ValueError):
        return "non-numeric field", -1, None
    if category not in class_of:
        return "class out of range", -1, None
    problem, box = check_box((x, y, x + w, y + h), width, height)
    return problem, class_of[category], box


def _image_record(img: dict, anns: list[dict], image_dir: Path, class_of: dict,
                  json_name: str, problems: Problems) -> ImageLabels | None:
    try:
        path, width, height = image_dir / str(img["file_name"]), int(img["width"]), \
            int(img["height"])
    except (KeyError, TypeError, ValueError):
        problems.add(json_name, None, "non-numeric field", f"image {img.get('id')!r}")
        return None
    size = image_size(path)
    if size is None:
        problems.add(path, None, "missing image" if not path.exists() else "unreadable image")
        return None
    if size != (width, height):
        problems.add(path, None, "image size differs from the annotation",
                     f"{size[0]}x{size[1]}, JSON says {width}x{height}")
        return None
    boxes, classes, ignore = [], [], []
    for ann in anns:
        problem, class_id, box = _box(ann, class_of, width, height)
        if problem:
            problems.add(json_name, None, problem, f"annotation {ann.get('id')!r}")
            continue
        boxes.append(box)
        classes.append(class_id)
        ignore.append(bool(ann.get("iscrowd", 0)))
    return ImageLabels(path, width, height, np.array(boxes, np.float32).reshape(-1, 4),
                       np.array(classes, np.int64), np.array(ignore, bool))


def _index(json_path: Path, image_dir: Path) -> cache.Index:
    data = _load_json(json_path)
    names, class_of = _categories(data, json_path)
    problems = Problems()
    per_image: dict = defaultdict(list)
    for ann in data.get("annotations") or []:
        per_image[ann.get("image_id") if isinstance(ann, dict) else None].append(ann)
    known = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    for image_id in per_image.keys() - known:
        problems.add(json_path, None, "annotation of an unknown image",
                     f"{len(per_image[image_id])} annotations of image id {image_id!r}")
    records = []
    for img in data["images"]:
        if isinstance(img, dict):
            record = _image_record(img, per_image[img.get("id")], image_dir, class_of,
                                   str(json_path), problems)
            if record is not None:
                records.append(record)
    return names, records, problems.items


def open_coco(json_path: str | Path, image_dir: str | Path) -> LabelledDataset:
    """A COCO instances JSON whose `file_name`s are relative to `image_dir`; index cached."""
    json_path, image_dir = Path(json_path).resolve(), Path(image_dir).resolve()
    if not json_path.is_file():
        raise DatasetError(f"{json_path}: COCO JSON not found")
    names, records, problems = cache.cached(
        f"coco\n{json_path}\n{image_dir}", [json_path, image_dir],
        lambda: _index(json_path, image_dir))
    return LabelledDataset("coco", str(json_path), names, records, problems)


def find_image_dir(root: Path, json_path: Path, split: str) -> Path:
    """Where a COCO tree keeps a JSON's images: val2017/ (COCO's zips) or images/val2017/
    (Ultralytics' copy), named after the JSON (instances_val2017.json) or the split."""
    stem = json_path.stem.removeprefix("instances_")
    candidates = [root / stem, root / "images" / stem, root / split, root / "images" / split]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        raise DatasetError(f"{json_path}: no image folder: none of "
                           f"{', '.join(str(c) for c in candidates)} exists")
    return found

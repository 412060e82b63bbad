"""The YOLO layout (Ultralytics / YOLOv5): a data.yaml, image folders or lists, one .txt per image.

data.yaml: `path` (the root; relative to the YAML's folder, default that folder), `train`, `val`,
optional `test` (each a folder searched recursively, a .txt list of image paths, or a list of
either, relative to `path`), `names` (a list, or a mapping index -> name) and optional `nc`.
An image's label file is its path with the last `/images/` replaced by `/labels/` and the suffix
by `.txt`; each line `class cx cy w h`, normalised to 0..1 (a polygon `class x1 y1 x2 y2 ...`
counts as its bounding box). An image without a label file is a background image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from suhd_ros.datasets import cache
from suhd_ros.datasets.base import (
    DatasetError,
    ImageLabels,
    LabelledDataset,
    Problems,
    check_box,
    empty_labels,
)
from suhd_ros.datasets.images import image_size, is_image

SPLIT_KEYS = ("train", "val", "test")


def label_path(image: Path) -> Path:
    """.../images/.../x.jpg -> .../labels/.../x.txt (the last /images/ only)."""
    text = str(image)
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = text.rpartition(images)
    swapped = head + labels + tail if sep else text
    return Path(swapped).with_suffix(".txt")


def read_data_yaml(path: Path) -> dict:
    """The YAML's settings, checked: a mapping whose names (or nc) give the classes."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: cannot read: {e}") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with path, train, val, names")
    data["names"] = _names(data, path)
    return data


def _names(data: dict, path: Path) -> list[str]:
    names, nc = data.get("names"), data.get("nc")
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise DatasetError(f"{path}: names must map every index 0..n-1 to a name")
        names = [names[k] for k in range(len(names))]
    elif names is None and isinstance(nc, int) and nc > 0:
        names = [f"class{k}" for k in range(nc)]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: names must be a non-empty list or index -> name mapping")
    if nc is not None and nc != len(names):
        raise DatasetError(f"{path}: nc is {nc} but names lists {len(names)} classes")
    return [str(n) for n in names]


def _entries(value, yaml_path: Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise DatasetError(f"{yaml_path}: a split must be a folder, a .txt list, or a list of them; "
                       f"got {value!r:.80}")


def _split_images(root: Path, value, yaml_path: Path, problems: Problems) -> list[Path]:
    """Image paths of a split's entries, in a fixed order; missing list entries are reported."""
    images: list[Path] = []
    for entry in _entries(value, yaml_path):
        where = Path(entry) if Path(entry).is_absolute() else root / entry
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if is_image(p) and p.is_file())
        elif where.suffix == ".txt" and where.is_file():
            images += _listed_images(where, root, problems)
        else:
            raise DatasetError(f"{where}: split folder or list not found")
    return images


def _listed_images(list_file: Path, root: Path, problems: Problems) -> list[Path]:
    images = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        candidates = [Path(name)] if Path(name).is_absolute() else [list_file.parent / name,
                                                                      root / name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            problems.add(list_file, number, "missing image", name)
        else:
            images.append(found)
    return images


def _parse_line(fields: list[str]) -> tuple[str, int | None, np.ndarray | None]:
    """(problem, class, normalised xyxy) of one label line."""
    if len(fields) < 5 or (len(fields) > 5 and len(fields) % 2 == 0):
        return "malformed line", None, None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return "non-numeric field", None, None
    if not values[0].is_integer():
        return "class out of range", None, None
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    else:  # polygon: its bounding box
        xy = np.array(values[1:]).reshape(-1, 2)
        box = np.concatenate((xy.min(axis=0), xy.max(axis=0)))
    return "", int(values[0]), box


def read_labels(image: Path, width: int, height: int, nc: int,
                problems: Problems) -> ImageLabels:
    """One image's label file (absent = background); bad lines reported and skipped."""
    labels = label_path(image)
    if not labels.is_file():
        return empty_labels(image, width, height)
    boxes, classes = [], []
    try:
        text = labels.read_text()
    except (OSError, UnicodeDecodeError) as e:
        problems.add(labels, None, "unreadable label file", str(e))
        return empty_labels(image, width, height)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        problem, class_id, box = _parse_line(fields)
        if not problem and not 0 <= class_id < nc:
            problem = "class out of range"
        if not problem:
            problem, box = check_box(box * [width, height, width, height], width, height)
        if problem:
            problems.add(labels, number, problem, line.strip()[:80])
            continue
        boxes.append(box)
        classes.append(class_id)
    return ImageLabels(image, width, height, np.array(boxes, np.float32).reshape(-1, 4),
                       np.array(classes, np.int64), np.zeros(len(classes), bool))


def _index(images: list[Path], names: list[str], problems: Problems) -> cache.Index:
    records = []
    for image in images:
        size = image_size(image)
        if size is None:
            problems.add(image, None, "unreadable image")
            continue
        records.append(read_labels(image, *size, len(names), problems))
    return names, records, problems.items


def _inputs(images: Iterable[Path]) -> Iterable[Path]:
    for image in images:
        yield image
        yield label_path(image)


def open_yolo(yaml_path: str | Path, split: str) -> LabelledDataset:
    """One split (train / val / test) of a data.yaml, the label index cached."""
    yaml_path = Path(yaml_path).resolve()
    data = read_data_yaml(yaml_path)
    if data.get(split) is None:
        raise DatasetError(f"{yaml_path}: no '{split}' split (it has: "
                           f"{', '.join(k for k in SPLIT_KEYS if data.get(k)) or 'none'})")
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else yaml_path.parent / root
    problems = Problems()  # missing list entries first, then what indexing finds
    images = _split_images(root, data[split], yaml_path, problems)
    names, records, found = cache.cached(
        f"yolo\n{yaml_path}\n{split}", _inputs(images),
        lambda: _index(images, data["names"], problems),
        yaml_path.read_text(), *map(str, problems.items))
    return LabelledDataset("yolo", f"{yaml_path} [{split}]", names, records, found)

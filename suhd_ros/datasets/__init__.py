"""The user's labelled images behind one interface: YOLO, COCO and Pascal VOC layouts.

`open_dataset(path, split)` recognises the layout and returns a `LabelledDataset`: class names,
and per image its path, size, boxes (pixels, xyxy), class ids and the boxes to ignore. Images
are decoded only when read. Bad records are reported with file and line and skipped; the index
is cached. Pure Python / numpy: no ROS, no torch.
"""

from __future__ import annotations

from pathlib import Path

from suhd_ros.datasets.base import (
    DatasetError,
    ImageLabels,
    ImageReadError,
    LabelledDataset,
    Problem,
    join,
)
from suhd_ros.datasets.coco import find_image_dir, open_coco
from suhd_ros.datasets.voc import open_voc, year_folders
from suhd_ros.datasets.yolo import open_yolo

__all__ = ["DatasetError", "ImageLabels", "ImageReadError", "LabelledDataset", "Problem",
           "detect_layout", "open_dataset"]


def _yaml_file(folder: Path) -> Path | None:
    found = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    preferred = [p for p in found if p.stem == "data"]
    return (preferred or found or [None])[0]


def detect_layout(path: str | Path) -> str:
    """'yolo', 'coco' or 'voc' for a data.yaml / JSON file or a dataset folder."""
    path = Path(path)
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return "yolo"
        if path.suffix == ".json":
            return "coco"
    elif path.is_dir():
        if _yaml_file(path) is not None:
            return "yolo"
        if any((path / "annotations").glob("instances_*.json")):
            return "coco"
        if year_folders(path):
            return "voc"
    raise DatasetError(f"{path}: no dataset layout recognised: expected a data.yaml (YOLO), "
                       f"annotations/instances_*.json (COCO) or VOC20xx/Annotations (VOC)")


def _coco_json(folder: Path, split: str) -> Path:
    matches = sorted((folder / "annotations").glob(f"instances_{split}*.json"))
    if len(matches) != 1:
        found = ", ".join(p.name for p in (folder / "annotations").glob("instances_*.json"))
        raise DatasetError(f"{folder}: {'several' if matches else 'no'} COCO JSON for split "
                           f"'{split}' (found: {found}); name the JSON as the split, e.g. "
                           f"train2017")
    return matches[0]


def open_dataset(path: str | Path, split: str = "train") -> LabelledDataset:
    """One split of the dataset at `path`; 'a+b' joins splits (VOC: 'VOC2007/trainval+...')."""
    if "+" in split:
        return join([open_dataset(path, part) for part in split.split("+")])
    path = Path(path)
    layout = detect_layout(path)
    if layout == "yolo":
        return open_yolo(path if path.is_file() else _yaml_file(path), split)
    if layout == "voc":
        return open_voc(path, split)
    json_path = path if path.is_file() else _coco_json(path, split)
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    return open_coco(json_path, find_image_dir(root, json_path, split))

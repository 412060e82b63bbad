"""The benchmark as files: scenes of a split written as PNGs + a COCO instances JSON, read back.

`export_coco` writes what `suhd-train --data` and any COCO tool read; `load_coco` reads such a
folder (ours, or any COCO instances JSON with xywh boxes) into per-image labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from suhd_ros.synthetic.scenes import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    Scene,
    SceneStyle,
    generate_scene,
    split_seed,
)


@dataclass(frozen=True)
class LabelledImage:
    """One image of an exported split, as read back from its instances JSON."""

    path: Path
    width: int
    height: int
    boxes_xyxy: np.ndarray  # [K, 4] float32
    class_ids: np.ndarray  # [K] int64, index into CLASS_NAMES


def coco_categories() -> list[dict]:
    """COCO categories; ids start at 1 because COCO tools treat 0 as 'no category'."""
    return [
        {"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASS_NAMES)
    ]


def _coco_annotations(scene: Scene, image_id: int, first_id: int) -> Iterator[dict]:
    for k, (box, class_id) in enumerate(zip(scene.boxes_xyxy, scene.class_ids, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        yield {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": int(class_id) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1),
            "iscrowd": 0,
        }


def _export_info(split: str, count: int, width: int, height: int, style: SceneStyle) -> dict:
    return {
        "description": "suhd_ros procedural shapes benchmark",
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "count": count,
        "width": width,
        "height": height,
        "style": json.loads(json.dumps(asdict(style))),
    }


def _export_done(json_path: Path, info: dict) -> bool:
    """True when an earlier export with the same settings finished (JSON and all images)."""
    if not json_path.is_file():
        return False
    dataset = json.loads(json_path.read_text())
    if dataset.get("info") != info:
        return False
    return all((json_path.parent.parent / img["file_name"]).is_file() for img in dataset["images"])


def export_coco(
    out_dir: str | Path,
    split: str,
    count: int,
    width: int,
    height: int,
    progress: bool = True,
    style: SceneStyle | None = None,
) -> Path:
    """Write `count` scenes of `split` as PNGs plus `annotations/instances_<split>.json`.

    Idempotent: a finished export with the same settings is left untouched; anything else is
    rewritten (scenes are deterministic, so rewritten images are identical). The JSON is written
    last and atomically, so an interrupted export is redone on the next call.
    """
    style = style or SceneStyle()
    root = Path(out_dir)
    json_path = root / "annotations" / f"instances_{split}.json"
    info = _export_info(split, count, width, height, style)
    if _export_done(json_path, info):
        return json_path
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in tqdm(range(count), desc=f"export {split}", disable=not progress, unit="img"):
        seed = split_seed(split, index)
        scene = generate_scene(seed, width, height, style)
        file_name = f"images/{split}/{seed:07d}.png"
        bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(root / file_name), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        annotations.extend(_coco_annotations(scene, image_id, len(annotations) + 1))
    dataset = {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    partial = json_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(dataset))
    partial.replace(json_path)
    return json_path


def load_coco(json_path: str | Path) -> list[LabelledImage]:
    """Read a COCO instances JSON (ours or any with xywh boxes) into per-image labels.

    Category ids are mapped to indices in the order of the sorted category ids, and image paths
    are resolved against the export root (the folder above `annotations/`).
    """
    json_path = Path(json_path)
    dataset = json.loads(json_path.read_text())
    category_ids = sorted(cat["id"] for cat in dataset["categories"])
    class_of = {category_id: k for k, category_id in enumerate(category_ids)}
    per_image: dict[int, list[dict]] = {img["id"]: [] for img in dataset["images"]}
    for ann in dataset["annotations"]:
        per_image[ann["image_id"]].append(ann)
    root = json_path.parent.parent
    labelled = []
    for img in dataset["images"]:
        anns = [a for a in per_image[img["id"]] if not a.get("iscrowd", 0)]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        labelled.append(
            LabelledImage(
                path=root / img["file_name"],
                width=int(img["width"]),
                height=int(img["height"]),
                boxes_xyxy=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                class_ids=np.array([class_of[a["category_id"]] for a in anns], np.int64),
            )
        )
    return labelled

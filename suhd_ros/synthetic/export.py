"""The benchmark as files in the three layouts `suhd_ros.datasets` reads: COCO, YOLO, Pascal VOC.

Each export writes `count` scenes of a split as lossless PNGs plus that layout's labels, so users
and tests can try every reader on data whose truth is known:

- COCO: `annotations/instances_<split>.json` + `images/<split>/*.png`
- YOLO: `data.yaml` (every split exported so far) + `images/<split>/` + `labels/<split>/*.txt`
- VOC: `Annotations/*.xml`, `ImageSets/Main/<split>.txt`, `JPEGImages/*.png`, `labels.txt`
  (the class order); the folder is one VOC year folder.

Exports are idempotent: a finished export with the same settings is left untouched (a marker
written last records the settings); anything else is rewritten (scenes are deterministic).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from suhd_ros.synthetic.scenes import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    Scene,
    SceneStyle,
    generate_scene,
    split_seed,
)


def _export_info(layout: str, split: str, count: int, width: int, height: int,
                 style: SceneStyle) -> dict:
    return {
        "description": "suhd_ros procedural shapes benchmark",
        "layout": layout,
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "count": count,
        "width": width,
        "height": height,
        "style": json.loads(json.dumps(asdict(style))),
    }


def _marker(root: Path, split: str) -> Path:
    return root / f".suhd_export_{split}.json"


def _export_done(root: Path, info: dict) -> bool:
    """True when an earlier export with the same settings finished (marker and every file)."""
    marker = _marker(root, info["split"])
    if not marker.is_file():
        return False
    done = json.loads(marker.read_text())
    return done.get("info") == info and all((root / f).is_file() for f in done["files"])


def _scenes(root: Path, image_dir: str, info: dict, style: SceneStyle,
            progress: bool) -> Iterator[tuple[str, Scene]]:
    """Draw and write each scene as `image_dir/<seed>.png`; yields (relative path, scene)."""
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    split = info["split"]
    for index in tqdm(range(info["count"]), desc=f"export {split}", disable=not progress,
                      unit="img"):
        seed = split_seed(split, index)
        scene = generate_scene(seed, info["width"], info["height"], style)
        relative = f"{image_dir}/{seed:07d}.png"
        bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(root / relative), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        yield relative, scene


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


Writer = Callable[[Path, dict, list[tuple[str, Scene]]], list[str]]


def _export(layout: str, write: Writer, out_dir: str | Path, split: str, count: int, width: int,
            height: int, progress: bool, style: SceneStyle | None) -> Path:
    style = style or SceneStyle()
    root = Path(out_dir)
    info = _export_info(layout, split, count, width, height, style)
    if not _export_done(root, info):
        image_dir = "JPEGImages" if layout == "voc" else f"images/{split}"
        scenes = list(_scenes(root, image_dir, info, style, progress))
        files = [f for f, _ in scenes] + write(root, info, scenes)
        _write_atomic(_marker(root, split), json.dumps({"info": info, "files": files}))
    return root


# ----------------------------------------------------------------------------- COCO


def coco_categories() -> list[dict]:
    """COCO categories; ids start at 1 because COCO tools treat 0 as 'no category'."""
    return [{"id": k + 1, "name": name, "supercategory": "shape"}
            for k, name in enumerate(CLASS_NAMES)]


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


def _write_coco(root: Path, info: dict, scenes: list[tuple[str, Scene]]) -> list[str]:
    images, annotations = [], []
    for image_id, (relative, scene) in enumerate(scenes, start=1):
        images.append({"id": image_id, "file_name": Path(relative).name,
                       "width": info["width"], "height": info["height"]})
        annotations.extend(_coco_annotations(scene, image_id, len(annotations) + 1))
    json_name = f"annotations/instances_{info['split']}.json"
    dataset = {"info": info, "images": images, "annotations": annotations,
               "categories": coco_categories()}
    _write_atomic(root / json_name, json.dumps(dataset))
    return [json_name]


def export_coco(out_dir: str | Path, split: str, count: int, width: int, height: int,
                progress: bool = True, style: SceneStyle | None = None) -> Path:
    """`count` scenes of `split` as PNGs + `annotations/instances_<split>.json` (returned)."""
    root = _export("coco", _write_coco, out_dir, split, count, width, height, progress, style)
    return root / "annotations" / f"instances_{split}.json"


# ----------------------------------------------------------------------------- YOLO


def _yolo_lines(scene: Scene, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), class_id in zip(scene.boxes_xyxy.tolist(), scene.class_ids.tolist(),
                                          strict=True):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"{class_id} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} "
                     f"{(y2 - y1) / height:.6f}\n")
    return "".join(lines)


def _write_yolo(root: Path, info: dict, scenes: list[tuple[str, Scene]]) -> list[str]:
    files = []
    for relative, scene in scenes:
        label = str(Path(relative.replace("images/", "labels/", 1)).with_suffix(".txt"))
        _write_atomic(root / label, _yolo_lines(scene, info["width"], info["height"]))
        files.append(label)
    data_yaml = root / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text()) if data_yaml.is_file() else {}
    data.update({"path": ".", info["split"]: f"images/{info['split']}",
                 "nc": len(CLASS_NAMES), "names": list(CLASS_NAMES)})
    _write_atomic(data_yaml, yaml.safe_dump(data, sort_keys=False))
    return [*files, "data.yaml"]


def export_yolo(out_dir: str | Path, split: str, count: int, width: int, height: int,
                progress: bool = True, style: SceneStyle | None = None) -> Path:
    """`count` scenes of `split` in the YOLO layout; returns the data.yaml."""
    return _export("yolo", _write_yolo, out_dir, split, count, width, height, progress,
                   style) / "data.yaml"


# ----------------------------------------------------------------------------- VOC


def _voc_xml(file_name: str, scene: Scene, width: int, height: int) -> str:
    """VOC's 1-based inclusive pixels: continuous [x1, x2) -> xmin = x1 + 1, xmax = x2."""
    objects = []
    for box, class_id in zip(np.rint(scene.boxes_xyxy).astype(int).tolist(),
                             scene.class_ids.tolist(), strict=True):
        objects.append(
            f"  <object>\n    <name>{escape(CLASS_NAMES[class_id])}</name>\n"
            f"    <difficult>0</difficult>\n    <bndbox>\n"
            f"      <xmin>{box[0] + 1}</xmin>\n      <ymin>{box[1] + 1}</ymin>\n"
            f"      <xmax>{box[2]}</xmax>\n      <ymax>{box[3]}</ymax>\n"
            f"    </bndbox>\n  </object>\n")
    return (f"<annotation>\n  <filename>{escape(file_name)}</filename>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n"
            f"    <depth>3</depth>\n  </size>\n{''.join(objects)}</annotation>\n")


def _write_voc(root: Path, info: dict, scenes: list[tuple[str, Scene]]) -> list[str]:
    files, ids = [], []
    for relative, scene in scenes:
        image_id = Path(relative).stem
        xml = f"Annotations/{image_id}.xml"
        _write_atomic(root / xml, _voc_xml(Path(relative).name, scene, info["width"],
                                           info["height"]))
        files.append(xml)
        ids.append(image_id)
    split_file = f"ImageSets/Main/{info['split']}.txt"
    _write_atomic(root / split_file, "".join(f"{i}\n" for i in ids))
    _write_atomic(root / "labels.txt", "".join(f"{n}\n" for n in CLASS_NAMES))
    return [*files, split_file, "labels.txt"]


def export_voc(out_dir: str | Path, split: str, count: int, width: int, height: int,
               progress: bool = True, style: SceneStyle | None = None) -> Path:
    """`count` scenes of `split` as one VOC year folder; returns the folder."""
    return _export("voc", _write_voc, out_dir, split, count, width, height, progress, style)


EXPORTERS = {"coco": export_coco, "yolo": export_yolo, "voc": export_voc}

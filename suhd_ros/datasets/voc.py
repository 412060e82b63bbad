"""Pascal VOC: VOCdevkit/VOC20xx/{Annotations/*.xml, ImageSets/Main/<split>.txt, JPEGImages/}.

A split is read from every year folder that has it (`trainval` of a devkit with VOC2007 and
VOC2012 is VOC07+12), or from one year (`VOC2007/test`). Class names: `labels.txt` (one name a
line) in the devkit or year folder when present; else VOC's 20 classes when every object is one
of them; else the sorted names found in all the years' annotations (the same for every split).
Boxes are VOC's 1-based inclusive pixels, so `xmin..xmax` becomes `[xmin - 1, xmax]`. `difficult`
objects are kept with `ignore` set (VOC's evaluation ignores them; training leaves them out).

The XML is parsed with the standard library's expat, refusing any DTD (so no entity can expand:
no external entities, no "billion laughs"); each object's line number is kept for reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

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

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
NAMES_FILE = "labels.txt"
_YEAR = re.compile(r"VOC\w+")


@dataclass
class Node:
    """An XML element: tag, line, text and children (all the VOC reader needs)."""

    tag: str
    line: int
    text: str = ""
    children: list[Node] = field(default_factory=list)

    def find(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def value(self, tag: str) -> str | None:
        child = self.find(tag)
        return None if child is None else child.text.strip()


def _refuse(*_args) -> None:
    raise ValueError("DTDs and entities are refused")


def parse_xml(data: bytes) -> Node:
    """Parse with expat, refusing DOCTYPE and entity declarations; ValueError when malformed."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack = [Node("", 0)]

    def start(tag: str, _attrs: dict) -> None:
        node = Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise ValueError(str(e)) from e
    if not stack[0].children:
        raise ValueError("empty document")
    return stack[0].children[0]


def year_folders(root: Path) -> list[Path]:
    """The VOC20xx folders of a devkit, or the root itself when it is one year's folder."""
    if (root / "Annotations").is_dir():
        return [root]
    return sorted(p for p in root.iterdir() if _YEAR.fullmatch(p.name) and
                  (p / "Annotations").is_dir())


def _object_names(xml_files: list[Path]) -> set[str]:
    names = set()
    for path in xml_files:
        try:
            root = parse_xml(path.read_bytes())
        except (OSError, ValueError):
            continue  # reported when its split is indexed
        names |= {o.value("name") or "" for o in root.children if o.tag == "object"} - {""}
    return names


def class_names(root: Path, years: list[Path]) -> list[str]:
    for folder in (root, *years):
        if (folder / NAMES_FILE).is_file():
            names = [n.strip() for n in (folder / NAMES_FILE).read_text().splitlines()]
            return [n for n in names if n]
    found = _object_names([x for y in years for x in sorted((y / "Annotations").glob("*.xml"))])
    return list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)


def _number(node: Node, tag: str) -> float:
    text = node.value(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def _objects(root: Node, xml: Path, size: tuple[int, int], class_of: dict,
             problems: Problems) -> tuple[list, list, list]:
    boxes, classes, ignore = [], [], []
    for obj in (c for c in root.children if c.tag == "object"):
        name = obj.value("name") or ""
        box_node = obj.find("bndbox")
        try:
            if box_node is None:
                raise ValueError("no <bndbox>")
            xmin, ymin, xmax, ymax = (_number(box_node, t) for t in ("xmin", "ymin", "xmax",
                                                                     "ymax"))
            difficult = bool(int(float(obj.value("difficult") or 0)))
        except ValueError as e:
            problems.add(xml, obj.line, "non-numeric field", str(e))
            continue
        problem, box = check_box((xmin - 1, ymin - 1, xmax, ymax), *size)
        if not problem and name not in class_of:
            problem = "class out of range"
        if problem:
            problems.add(xml, obj.line, problem, name)
            continue
        boxes.append(box)
        classes.append(class_of[name])
        ignore.append(difficult)
    return boxes, classes, ignore


def _record(year: Path, image_id: str, class_of: dict, problems: Problems) -> ImageLabels | None:
    xml = year / "Annotations" / f"{image_id}.xml"
    try:
        root = parse_xml(xml.read_bytes())
    except (OSError, ValueError) as e:
        problems.add(xml, None, "unreadable annotation", str(e))
        return None
    image = year / "JPEGImages" / (root.value("filename") or f"{image_id}.jpg")
    if not image.is_file():
        image = year / "JPEGImages" / f"{image_id}.jpg"
    size = image_size(image)
    if size is None:
        problems.add(image, None, "missing image" if not image.exists() else "unreadable image")
        return None
    boxes, classes, ignore = _objects(root, xml, size, class_of, problems)
    return ImageLabels(image, *size, np.array(boxes, np.float32).reshape(-1, 4),
                       np.array(classes, np.int64), np.array(ignore, bool))


def _split_ids(year: Path, split: str) -> list[str]:
    lines = (year / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip()]


def _index(root: Path, all_years: list[Path], years: list[Path], split: str) -> cache.Index:
    names = class_names(root, all_years)
    class_of = {name: k for k, name in enumerate(names)}
    problems = Problems()
    records = []
    for year in years:
        for image_id in _split_ids(year, split):
            record = _record(year, image_id, class_of, problems)
            if record is not None:
                records.append(record)
    return names, records, problems.items


def open_voc(root: str | Path, split: str) -> LabelledDataset:
    """`split` (train / val / trainval / test) of every year that has it, or `VOC2007/test`."""
    root = Path(root).resolve()
    all_years = year_folders(root)
    if not all_years:
        raise DatasetError(f"{root}: no VOC year folder (VOC2007/, ... with Annotations/)")
    year_name, _, split_name = split.rpartition("/")
    years = [y for y in all_years if not year_name or y.name == year_name]
    years = [y for y in years if (y / "ImageSets" / "Main" / f"{split_name}.txt").is_file()]
    if not years:
        raise DatasetError(f"{root}: no year has ImageSets/Main/{split_name}.txt"
                           + (f" under {year_name}" if year_name else ""))
    inputs = [root / NAMES_FILE, *(y / NAMES_FILE for y in all_years)]
    for year in all_years:
        inputs += [year / "Annotations", year / "JPEGImages",
                   *sorted((year / "Annotations").glob("*.xml"))]
        inputs += [year / "ImageSets" / "Main" / f"{split_name}.txt"]
    names, records, problems = cache.cached(
        f"voc\n{root}\n{split}", inputs, lambda: _index(root, all_years, years, split_name))
    return LabelledDataset("voc", f"{root} [{split}]", names, records, problems)

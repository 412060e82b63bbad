"""One interface over every layout: an index of labelled images, read lazily, and its problems.

Boxes are `[x1, y1, x2, y2]` in continuous pixel coordinates of the decoded image (COCO's
convention: pixel column `c` spans `[c, c + 1)`). Boxes a layout marks as not to be learned
(COCO's `iscrowd`, VOC's `difficult`) stay in the index with `ignore` set: training leaves them
out, evaluation passes them on as COCO crowd regions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger("suhd_ros.datasets")
EDGE_TOLERANCE_PX = 1.0  # a box may overhang the image this far (rounding); it is clipped
SHOWN_PROBLEMS = 10  # problems logged one by one; the rest only counted in the summary


class DatasetError(ValueError):
    """A dataset that cannot be used at all (no layout recognised, no usable image, ...)."""


class ImageReadError(OSError):
    """An indexed image that cannot be decoded now (changed or damaged since it was indexed)."""


@dataclass(frozen=True)
class Problem:
    """One bad record, skipped: where it is and why."""

    file: str
    line: int | None
    kind: str  # a short category for the summary ("class out of range", ...)
    detail: str = ""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ImageLabels:
    """One image of the index: where it is, its size and its boxes."""

    path: Path
    width: int
    height: int
    boxes_xyxy: np.ndarray  # [K, 4] float32, pixels
    class_ids: np.ndarray  # [K] int64, index into the dataset's names
    ignore: np.ndarray  # [K] bool: crowd / difficult, not trained on, ignored by evaluation


def empty_labels(path: Path, width: int, height: int) -> ImageLabels:
    return ImageLabels(path, width, height, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                       np.zeros(0, bool))


@dataclass
class Problems:
    """The bad records met while indexing, in order."""

    items: list[Problem] = field(default_factory=list)

    def add(self, file: str | Path, line: int | None, kind: str, detail: str = "") -> None:
        self.items.append(Problem(str(file), line, kind, detail))


def check_box(box: Sequence[float], width: int, height: int) -> tuple[str, np.ndarray | None]:
    """('', clipped box) for a usable box, else (the reason, None)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite((x1, y1, x2, y2))):
        return "non-numeric field", None
    if x2 <= x1 or y2 <= y1:
        return "degenerate box", None
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return "box outside the image", None
    clipped = np.clip([x1, y1, x2, y2], 0, [width, height, width, height]).astype(np.float32)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return "degenerate box", None
    return "", clipped


def read_rgb(path: Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Decode an image file to RGB uint8 (EXIF orientation applied, as the labels assume)."""
    data = np.fromfile(path, np.uint8) if path.is_file() else None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if bgr is None:
        raise ImageReadError(f"{path}: cannot read image")
    if width is not None and (bgr.shape[1], bgr.shape[0]) != (width, height):
        raise ImageReadError(f"{path}: decoded {bgr.shape[1]}x{bgr.shape[0]}, "
                             f"indexed as {width}x{height}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class LabelledDataset:
    """An index of labelled images of one split; images are decoded only when asked for.

    `dataset[i]` gives `(rgb, boxes_xyxy, class_ids, ignore)`, the tuple the trainer's sources
    yield; `labels(i)` the record without decoding the image.
    """

    def __init__(self, layout: str, source: str, names: Sequence[str],
                 records: Sequence[ImageLabels], problems: Sequence[Problem] = ()) -> None:
        self.layout, self.source = layout, source
        self.names = tuple(names)
        self.records = list(records)
        self.problems = list(problems)
        if not self.records:
            raise DatasetError(f"{source}: no usable image in this {layout} dataset"
                               + (f" ({summary(self.problems)})" if self.problems else ""))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        record = self.records[index]
        return self.read_image(index), record.boxes_xyxy, record.class_ids, record.ignore

    def labels(self, index: int) -> ImageLabels:
        return self.records[index]

    def read_image(self, index: int) -> np.ndarray:
        record = self.records[index]
        return read_rgb(record.path, record.width, record.height)

    def report(self, log: logging.Logger = LOG) -> None:
        """Log the first problems one by one, then one summary line (nothing when clean)."""
        for problem in self.problems[:SHOWN_PROBLEMS]:
            log.warning("%s", problem)
        if self.problems:
            log.warning("%s: skipped %s", self.source, summary(self.problems))


def summary(problems: Sequence[Problem]) -> str:
    """'3 bad records: 2 class out of range, 1 unreadable image'."""
    counts = Counter(p.kind for p in problems)
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return f"{len(problems)} bad record{'s' if len(problems) != 1 else ''}: {parts}"


def join(datasets: Sequence[LabelledDataset]) -> LabelledDataset:
    """Several splits or years as one dataset; their class names must agree."""
    first = datasets[0]
    for other in datasets[1:]:
        if other.names != first.names:
            raise DatasetError(f"{other.source}: class names differ from {first.source}'s")
    return LabelledDataset(first.layout, " + ".join(d.source for d in datasets), first.names,
                           [r for d in datasets for r in d.records],
                           [p for d in datasets for p in d.problems])

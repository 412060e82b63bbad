"""A run's per-epoch figures as files a person reads: results.csv, results.md, results.png.

They are rewritten from the whole history after every epoch (the history travels in last.pt),
so a resumed run's files cover the epochs before the resume as well. The plot needs matplotlib
(requirements/dev.txt); without it there is no results.png and nothing else changes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

# (history key, column title); epochs count from 0 as in results.json and YOLOv5's results.csv
COLUMNS = (
    ("epoch", "epoch"),
    ("box_loss", "box loss"),
    ("obj_loss", "obj loss"),
    ("cls_loss", "cls loss"),
    ("map50", "mAP@0.5"),
    ("map50_95", "mAP@0.5:0.95"),
    ("lr", "lr"),
    ("mosaic", "mosaic"),
    ("seconds", "train s"),
)
LOSSES = ("box_loss", "obj_loss", "cls_loss")


def write_results(out_dir: Path, history: Sequence[dict]) -> None:
    """results.csv and results.md always; results.png when matplotlib can be imported."""
    rows = [[_cell(entry.get(key)) for key, _ in COLUMNS] for entry in history]
    titles = [title for _, title in COLUMNS]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([titles, *rows])
    _replace(out_dir / "results.csv", text.getvalue())
    table = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    _replace(out_dir / "results.md", "\n".join(table) + "\n")
    plot_results(out_dir / "results.png", history)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _replace(path: Path, text: str) -> None:
    """Written whole or not at all: a reader never sees half a table."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_results(path: Path, history: Sequence[dict]) -> bool:
    """Losses, validation mAP and learning rate by epoch; False (no file) without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no backend or global state touched
    except ImportError:
        return False
    epochs = [entry["epoch"] for entry in history]
    figure = Figure(figsize=(12, 3.6))
    losses, maps, lr = figure.subplots(1, 3)
    for key in LOSSES:
        losses.plot(epochs, [entry[key] for entry in history], "o-", label=key.replace("_", " "))
    maps.plot(epochs, [entry["map50"] for entry in history], "o-", label="mAP@0.5")
    maps.plot(epochs, [entry["map50_95"] for entry in history], "o-", label="mAP@0.5:0.95")
    lr.plot(epochs, [entry.get("lr", float("nan")) for entry in history], "o-")
    for axes, title in ((losses, "training loss"), (maps, "validation mAP"),
                        (lr, "learning rate (end of epoch)")):
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    losses.legend()
    maps.legend()
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    tmp.replace(path)
    return True

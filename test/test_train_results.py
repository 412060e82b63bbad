"""The run folder's results table and plots: one row per epoch, the same numbers as
results.json, kept across a resume."""

import csv
import json
from dataclasses import replace

import pytest

from suhd_ros.training.loop import RESULTS_NAME, TrainConfig, train
from suhd_ros.training.results import COLUMNS

TINY = TrainConfig(img_size=64, width_multiple=0.125, batch_size=4, nominal_batch=4,
                   train_images=8, val_images=4, epochs=1, warmup_min_iters=0, progress=False,
                   workers=0)


def _table(run) -> list[dict]:
    with open(run / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_results_table_and_plot_are_written_every_epoch_and_survive_a_resume(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")  # requirements/dev.txt; the table needs none
    assert matplotlib
    run = tmp_path / "run"
    train(replace(TINY, out_dir=str(run)))
    first = _table(run)
    assert len(first) == 1 and list(first[0]) == [title for _, title in COLUMNS]
    assert (run / "results.png").stat().st_size > 1000

    train(replace(TINY, out_dir=str(run), epochs=2, resume=True))
    rows, history = _table(run), json.loads((run / RESULTS_NAME).read_text())
    assert rows[0] == first[0]  # the epoch before the resume is still there, unchanged
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history] == [0, 1]
    for row, entry in zip(rows, history, strict=True):
        for key, title in COLUMNS:
            if key != "epoch":
                assert float(row[title]) == pytest.approx(entry[key], rel=1e-5), title
    assert float(rows[0]["lr"]) > 0 and float(rows[0]["train s"]) > 0
    assert float(rows[0]["mosaic"]) == 0.0  # the benchmark's recipe
    markdown = (run / "results.md").read_text().splitlines()
    assert len(markdown) == 2 + len(history) and "mAP@0.5:0.95" in markdown[0]
    assert markdown[2].startswith("| 0 | ")

"""The benchmark exported to each layout and read back: the same images, boxes (0.5 px), names."""

import numpy as np
import pytest

from suhd_ros.datasets import detect_layout, open_dataset
from suhd_ros.synthetic.export import EXPORTERS
from suhd_ros.synthetic.scenes import CLASS_NAMES, SPLITS, generate_scene

WIDTH, HEIGHT, COUNT = 96, 64, 5


@pytest.mark.parametrize("layout", sorted(EXPORTERS))
def test_exported_benchmark_reads_back_the_same(layout, tmp_path, monkeypatch):
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "cache"))
    root = tmp_path / layout
    for split in ("train", "val"):
        EXPORTERS[layout](root, split, COUNT, WIDTH, HEIGHT, progress=False)
    assert detect_layout(root) == layout
    for split in ("train", "val"):
        dataset = open_dataset(root, split)
        assert dataset.names == CLASS_NAMES and not dataset.problems
        assert len(dataset) == COUNT
        for index, seed in enumerate(SPLITS[split][:COUNT]):
            scene = generate_scene(seed, WIDTH, HEIGHT)
            image, boxes, class_ids, ignore = dataset[index]
            np.testing.assert_array_equal(image, scene.image)
            np.testing.assert_allclose(boxes, scene.boxes_xyxy, atol=0.5)
            np.testing.assert_array_equal(class_ids, scene.class_ids)
            assert len(class_ids) > 0 and not ignore.any()


def test_exports_are_idempotent(tmp_path):
    for layout, export in EXPORTERS.items():
        root = tmp_path / layout
        export(root, "val", 3, WIDTH, HEIGHT, progress=False)
        stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
        export(root, "val", 3, WIDTH, HEIGHT, progress=False)
        assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps, layout
        export(root, "val", 4, WIDTH, HEIGHT, progress=False)
        assert len(list(root.rglob("*.png"))) == 4, layout

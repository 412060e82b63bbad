"""The benchmark's scenes are pinned byte for byte: new scene code (the moving sequences) must
add code paths, never change what an existing seed draws, or every published figure moves."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from suhd_ros.synthetic.scenes import BENCHMARK_SIZE, generate_scene, split_seed

# sha256 (first 32 hex digits) of image, boxes, class ids and visible fractions, as drawn at
# commit 4ff67eb; a change here is a change of the benchmark
PINNED = (
    ("train", 0, "8a9551ff90a4bc6db42a9d046b506ca6"),
    ("train", 7, "68748182e87db4f48a92fab738aa97c4"),
    ("val", 0, "856f8586d9b1ca2cfb6e69734d7a38be"),
    ("val", 123, "f470f9f10c9ab325ea842bafc43430b7"),
    ("test", 0, "caa951c7cb9b71b685a070f9f3b429af"),
    ("test", 4999, "df6891bdf7cc1eb16a1c6501e9061805"),
)


@pytest.mark.parametrize(("split", "index", "digest"), PINNED)
def test_benchmark_scene_bytes_are_unchanged(split: str, index: int, digest: str) -> None:
    height, width = BENCHMARK_SIZE
    scene = generate_scene(split_seed(split, index), width, height)
    h = hashlib.sha256()
    for array in (scene.image, scene.boxes_xyxy, scene.class_ids, scene.visible_fraction):
        h.update(np.ascontiguousarray(array).tobytes())
    assert h.hexdigest()[:32] == digest

"""The label index cached as one .npz of plain arrays (loaded with allow_pickle=False).

Keyed by the sizes and modification times of the files the index was built from: any change
(a label edited, an image added, a JSON replaced) builds the index again. The cache lives under
`$SUHD_DATASET_CACHE`, else `$XDG_CACHE_HOME/suhd_ros/datasets`, else `~/.cache/...`, so a
read-only dataset can be cached too; a cache that cannot be written is only a slower start.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from suhd_ros.datasets.base import LOG, ImageLabels, Problem

CACHE_VERSION = 1
Index = tuple[list[str], list[ImageLabels], list[Problem]]


def cache_dir() -> Path:
    explicit = os.environ.get("SUHD_DATASET_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "suhd_ros" / "datasets"


def stamp(paths: Iterable[Path], *extra: str) -> str:
    """A digest of each path's size and mtime (or its absence) plus `extra` settings."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\n".encode())
    for value in extra:
        digest.update(f"{value}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\t-\n".encode())
    return digest.hexdigest()


def _cache_file(identity: str) -> Path:
    return cache_dir() / (hashlib.sha256(identity.encode()).hexdigest()[:24] + ".npz")


def load(identity: str, key: str) -> Index | None:
    """The cached index of `identity` when it was built from the same files, else None."""
    path = _cache_file(identity)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return _decode(data)
    except (OSError, KeyError, ValueError):
        return None


def save(identity: str, key: str, index: Index) -> None:
    path = _cache_file(identity)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, key=np.str_(key), **_encode(index))
        tmp.replace(path)
    except OSError as e:
        LOG.warning("cannot write the dataset cache %s: %s", path, e)


def _encode(index: Index) -> dict[str, np.ndarray]:
    names, records, problems = index
    counts = [len(r.class_ids) for r in records]
    return {
        "names": np.array(names, dtype=str),
        "paths": np.array([str(r.path) for r in records], dtype=str),
        "sizes": np.array([(r.width, r.height) for r in records], np.int64).reshape(-1, 2),
        "offsets": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
        "boxes": np.concatenate([r.boxes_xyxy for r in records] or [np.zeros((0, 4))])
        .astype(np.float32).reshape(-1, 4),
        "class_ids": np.concatenate([r.class_ids for r in records] or [np.zeros(0)])
        .astype(np.int64),
        "ignore": np.concatenate([r.ignore for r in records] or [np.zeros(0)]).astype(bool),
        "problem_text": np.array([[p.file, p.kind, p.detail] for p in problems], dtype=str)
        .reshape(-1, 3),
        "problem_line": np.array([-1 if p.line is None else p.line for p in problems], np.int64),
    }


def _decode(data) -> Index:
    offsets = data["offsets"]
    boxes, class_ids, ignore = data["boxes"], data["class_ids"], data["ignore"]
    records = [
        ImageLabels(Path(path), int(w), int(h), boxes[a:b], class_ids[a:b], ignore[a:b])
        for path, (w, h), a, b in zip(data["paths"].tolist(), data["sizes"].tolist(),
                                      offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    ]
    problems = [Problem(file, None if line < 0 else line, kind, detail)
                for (file, kind, detail), line in zip(data["problem_text"].tolist(),
                                                      data["problem_line"].tolist(), strict=True)]
    return data["names"].tolist(), records, problems


def cached(identity: str, inputs: Iterable[Path], build: Callable[[], Index], *extra: str) -> Index:
    """The index from the cache when `inputs` are unchanged, else built by `build` and saved."""
    key = stamp(inputs, *extra)
    index = load(identity, key)
    if index is None:
        index = build()
        save(identity, key, index)
    return index

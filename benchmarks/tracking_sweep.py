"""Tracker settings swept on validation sequences of the moving synthetic camera.

The detector runs once per sequence (cached with tracking_3d.py's --cache); each setting then
replays the cached detections through the tracker and is scored with motmetrics as
tracking_3d.py scores it. Settings are ranked by their mean IDF1 over the validation seeds
(never the benchmark's test seed, 2026), ID switches summed. The defaults in
suhd_ros/tracking.py are chosen from this table.

  .venv/bin/python benchmarks/tracking_sweep.py --seeds 7 11 12 13 14 --frames 400 \\
      --cache /tmp/tracking-cache
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

import numpy as np
import torch
from tracking_3d import above, add_sequence_arguments, sequence_detections, tracking_metrics

TEST_SEED = 2026
# one row per setting: the tracker, what it is given, and the library's own settings
GRID: dict[str, list[Any]] = {
    "kind": ["bytetrack", "ocsort", "botsort", "cbiou", "sort"],
    "per_class": [True, False],
    "tracker_input": [0.1, 0.25],
    "track_threshold": [0.3, 0.4, 0.5],
    "lost_track_buffer": [30, 90],
    "minimum_consecutive_frames": [1, 2],
}


def settings_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination; tracker_input above track_threshold is the same as at it, skipped."""
    names = list(grid)
    rows = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    return [r for r in rows if r["tracker_input"] <= r["track_threshold"]]


def _parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """NAME=V1,V2 overrides of GRID's rows (values parsed as Python literals)."""
    import ast
    grid = dict(GRID)
    for item in items:
        name, _, values = item.partition("=")
        grid[name] = [ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
                      for v in values.split(",")]
    return grid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sequence_arguments(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 12])
    p.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                   help=f"replace a row of the grid (names: {', '.join(GRID)}, or any keyword "
                   "of the library's tracker)")
    p.add_argument("--top", type=int, default=40, help="rows printed")
    p.add_argument("--detect-only", action="store_true", help="fill the cache and stop")
    args = p.parse_args()
    if TEST_SEED in args.seeds:
        print(f"seed {TEST_SEED} is the test sequence: settings are chosen without it",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    sequences = []
    for seed in args.seeds:
        args.seed = seed
        truth, found, lines, _ = sequence_detections(args, with_3d=False)
        print(f"seed {seed}: {lines[0]}", flush=True)
        sequences.append((truth, found))
    if args.detect_only:
        return 0
    results = []
    for setting in settings_grid(_parse_grid(args.grid)):
        library = {k: v for k, v in setting.items() if k not in ("kind", "tracker_input")}
        scores = [tracking_metrics(truth, [above(d, setting["tracker_input"]) for d in found],
                                   setting["kind"], **library)[0]
                  for truth, found in sequences]
        results.append((setting, scores))
        print(_row(setting, scores), flush=True)
    print(f"\nBest {args.top} by mean IDF1 over seeds {args.seeds}:")
    for setting, scores in sorted(results, key=lambda r: -np.mean([s["idf1"] for s in r[1]])
                                  )[:args.top]:
        print(_row(setting, scores))
    return 0


def _row(setting: dict[str, Any], scores: list[dict[str, float]]) -> str:
    idf1 = [s["idf1"] for s in scores]
    return (f"IDF1 {np.mean(idf1):.3f} ({' '.join(f'{v:.3f}' for v in idf1)})  MOTA "
            f"{np.mean([s['mota'] for s in scores]):.3f}  IDsw "
            f"{sum(int(s['num_switches']) for s in scores):3d}  "
            + " ".join(f"{k}={v}" for k, v in setting.items()))


if __name__ == "__main__":
    sys.exit(main())

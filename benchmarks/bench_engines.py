"""Quick engines timing only: ANN vs SNN fused / reference (and rate coding) on a YOLOv5 at 640.

The same machinery as run_all.py's section 1 (a process per variant, interleaved rounds), for a
fast look without the accuracy, peer and node parts; prints the table instead of writing docs.

    .venv/bin/python benchmarks/bench_engines.py [--size s] [--img 640] [--rounds 3] [--rate-T 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import latency
import report
import run_all


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="s", help="YOLOv5 size (default s)")
    p.add_argument("--img", type=int, default=640, help="input size (default 640)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", type=int, default=2, help="frames per variant and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rate-T", type=int, default=0, help="also rate coding at this T (0: no)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="suhd_engines_") as tmp:
        model = run_all.big_model(Path(tmp), args.size, args.img, calibration=2)
        variants = run_all.variants(model, args.rate_T)
        rows = latency.measure(variants if args.rate_T else variants[:-1], args.rounds,
                               args.frames, args.threads)
    print(f"YOLOv5{args.size} {args.img}x{args.img}, {args.threads} threads, "
          f"{report.machine()['cpu']}")
    print(report.latency_table(rows))


if __name__ == "__main__":
    main()

"""Per-frame latency and peak memory of detector variants, each in its own process, interleaved.

Every variant is a long-lived worker process (so its RSS high-water mark is its own) that loads
its Detector once and then waits. The parent asks one worker at a time for a few frames, in a
rotating order, round after round, so slow drifts of the machine (another job, thermal state)
fall on all variants alike. A frame is `Detector.detect([image])` (letterbox, network, NMS,
spike statistics); the network's forward alone is timed too, by hooks on the model.

    python benchmarks/latency.py --worker '{"label": ..., "model": ..., ...}'   # one worker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SCENE_SEED = 12345  # the frame every variant sees: one scene of the benchmark generator


@dataclass(frozen=True)
class Variant:
    """One detector configuration to time."""

    label: str
    model: str
    engine: str = "fused"  # "ann" | "fused" | "reference"
    coding: str = "stdi"
    T: int = 4
    f_c: int | None = None  # None: the model file's
    statistics: bool = True  # spike counting (and the energy report) on
    count_every: int = 1  # with statistics: count on one frame in this many (the node's knob)

    def build(self):  # -> Detector; imported lazily so the parent stays light
        from suhd_ros.detector import Detector

        f_c = 1 if self.coding == "rate" else self.f_c
        return Detector(self.model, "cpu", self.engine, self.T, f_c, coding=self.coding,
                        statistics=self.statistics)


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _forward_timer(model) -> list[float]:
    """Hooks that append the wall time of every forward of `model` (ms) to the returned list."""
    times: list[float] = []
    start: list[float] = []
    model.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
    model.register_forward_hook(lambda *_: times.append((time.perf_counter() - start.pop()) * 1e3))
    return times


def worker(variant: Variant, threads: int) -> None:
    """Serve `run N` (time N frames) and `peak` requests on stdin, one JSON line per answer."""
    import torch

    from suhd_ros.synthetic.scenes import generate_scene

    torch.set_num_threads(threads)
    baseline_mb = _rss_peak_mb()
    detector = variant.build()
    height, width = detector.input_size
    image = generate_scene(SCENE_SEED, width, height).image
    forward_ms = _forward_timer(detector.model)
    detector.detect([image])  # warm-up: allocator, lazy inits
    frames_done = 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "run":
            forward_ms.clear()
            frame_ms = []
            for _ in range(int(arg[0])):
                count_spikes = frames_done % variant.count_every == 0
                frames_done += 1
                began = time.perf_counter()
                detector.detect([image], count_spikes=count_spikes)
                frame_ms.append((time.perf_counter() - began) * 1e3)
            answer = {"frame_ms": frame_ms, "forward_ms": list(forward_ms)}
        else:
            answer = {"peak_rss_mb": _rss_peak_mb(), "baseline_rss_mb": baseline_mb}
        print(json.dumps(answer), flush=True)


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, variant: Variant, threads: int) -> None:
        self.variant = variant
        command = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads),
                   "--worker", json.dumps(asdict(variant))]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def ask(self, request: str | None) -> dict:
        if request is not None:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"latency worker {self.variant.label!r} ended "
                               f"(exit code {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def summarise(frame_ms: list[float], forward_ms: list[float]) -> dict:
    """p50 / p95 / mean of the frame times and p50 of the forward times."""
    frames = np.asarray(frame_ms)
    return {"frames": len(frames), "p50_ms": float(np.percentile(frames, 50)),
            "p95_ms": float(np.percentile(frames, 95)), "mean_ms": float(frames.mean()),
            "forward_p50_ms": float(np.percentile(forward_ms, 50))}


def measure(variants: list[Variant], rounds: int, frames: int, threads: int,
            progress=print) -> list[dict]:
    """Interleaved timing: `rounds` rounds, each asking every worker for `frames` frames."""
    workers = [_Worker(v, threads) for v in variants]
    try:
        for w in workers:
            w.ask(None)  # wait until loaded and warmed up
        times = {w.variant.label: ([], []) for w in workers}
        for r in range(rounds):
            for w in workers[r % len(workers):] + workers[:r % len(workers)]:
                answer = w.ask(f"run {frames}")
                times[w.variant.label][0].extend(answer["frame_ms"])
                times[w.variant.label][1].extend(answer["forward_ms"])
            progress(f"  latency round {r + 1}/{rounds} done")
        rows = []
        for w in workers:
            row = {**asdict(w.variant), **summarise(*times[w.variant.label]), **w.ask("peak")}
            row["frame_ms"] = times[w.variant.label][0]
            rows.append(row)
        return rows
    finally:
        for w in workers:
            w.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", required=True, help="the Variant as JSON")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    worker(Variant(**json.loads(args.worker)), args.threads)


if __name__ == "__main__":
    main()

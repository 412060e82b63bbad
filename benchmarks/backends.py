"""Backends for the fused engine against eager PyTorch: channels_last and torch.compile, and the
exported graph in ONNX Runtime and OpenVINO (Detector(backend=...)).

The issue's rule: adopt a backend only if it is at least 1.3x faster with identical detections
and spike counts. Each backend gets its own ANN and SNN (fused, T = 4) Detector in this process;
timing alternates between them round by round (ANN, SNN without and with spike counting), and
every test scene is run through each SNN backend with spikes counted, to compare detections
and spike counts with eager's: exactly (same order, 0.01 px) and as sets (same objects and
classes, boxes within 0.5 px, `backends.agreement`).

Run alone for the table at several thread counts, with mAP per backend:
  .venv/bin/python benchmarks/backends.py --scenes 200 --threads 1 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from suhd_ros.backends.agreement import detections_agree
from suhd_ros.detector import Detector, FrameResult

BACKENDS = ("eager", "channels_last", "compile", "onnxruntime", "openvino")
RUNTIMES = ("onnxruntime", "openvino")  # Detector backends: the exported graph


def prepare(detector: Detector, backend: str) -> Detector:
    """The detector with its network run by `backend` (compile happens on the first call)."""
    if backend == "channels_last":
        detector.model = detector.model.to(memory_format=torch.channels_last)
    elif backend == "compile":
        detector.model = torch.compile(detector.model)
    return detector


def make_detector(model: str, engine: str, backend: str, threads: int | None,
                  counting_thread: bool = True) -> Detector:
    """A CPU Detector whose network `backend` runs, with `threads` inference threads."""
    if backend in RUNTIMES:
        return Detector(model, "cpu", engine, threads=threads, backend=backend)
    return prepare(Detector(model, "cpu", engine, threads=threads,
                            counting_thread=counting_thread), backend)


BOX_TOLERANCE_PX, SCORE_TOLERANCE = 0.01, 1e-4  # float rounding of the analog head


def same_detections(a: FrameResult, b: FrameResult) -> bool:
    """The same boxes in the same order with the same classes, up to float rounding."""
    return (a.class_ids.shape == b.class_ids.shape and np.array_equal(a.class_ids, b.class_ids)
            and np.allclose(a.boxes_xyxy, b.boxes_xyxy, rtol=0, atol=BOX_TOLERANCE_PX)
            and np.allclose(a.scores, b.scores, rtol=0, atol=SCORE_TOLERANCE))


def _frame_times_ms(detect: Callable[[], object], frames: int) -> list[tuple[float, float]]:
    """(wall, CPU) ms of each call; the CPU time is the process's, all threads together."""
    times = []
    for _ in range(frames):
        wall, cpu = time.perf_counter(), time.process_time()
        detect()
        times.append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
    return times


VARIANTS = ("ann", "snn", "counting", "counting_inline")


def measure(model: str, scenes: list[np.ndarray], rounds: int, frames: int,
            backends: tuple[str, ...] = BACKENDS,
            progress: Callable[[str], None] = print, threads: int | None = None) -> list[dict]:
    """One row per backend: p50 of ANN and SNN (statistics off, and counting every frame, also
    with the histograms all on the calling thread, `counting_thread=False`), the
    first-call time, and how many test scenes give eager's detections (`same_detections`,
    and as sets: `agree`) and exactly its spike counts."""
    image = scenes[0]
    ann = {b: make_detector(model, "ann", b, threads) for b in backends}
    snn = {b: make_detector(model, "fused", b, threads) for b in backends}
    inline = {b: make_detector(model, "fused", b, threads, counting_thread=False)
              for b in backends}
    first_call_s = {}
    for b in backends:
        began = time.perf_counter()
        ann[b].detect([image])
        snn[b].detect([image], count_spikes=False)
        snn[b].detect([image])  # counting compiles its own graph
        inline[b].detect([image])
        first_call_s[b] = time.perf_counter() - began
        progress(f"  {b}: ready after {first_call_s[b]:.1f} s")
    times: dict[str, dict[str, list]] = {b: {v: [] for v in VARIANTS} for b in backends}
    for r in range(rounds):
        for b in backends[r % len(backends):] + backends[:r % len(backends)]:
            calls = {"ann": lambda b=b: ann[b].detect([image]),
                     "snn": lambda b=b: snn[b].detect([image], count_spikes=False),
                     "counting": lambda b=b: snn[b].detect([image]),
                     "counting_inline": lambda b=b: inline[b].detect([image])}
            for variant, call in calls.items():
                times[b][variant].extend(_frame_times_ms(call, frames))
    reference = [snn["eager"].detect([s])[0] for s in scenes]
    rows = []
    for b in backends:
        results = [snn[b].detect([s])[0] for s in scenes]
        spike_diff = [abs(r.energy.spikes - e.energy.spikes)
                      for r, e in zip(results, reference, strict=True)]
        rows.append({
            "backend": b, "threads": threads, **_medians(times[b]),
            "first_call_s": first_call_s[b], "scenes": len(scenes),
            "same_detections": sum(same_detections(r, e)
                                   for r, e in zip(results, reference, strict=True)),
            "agree": sum(detections_agree(e.boxes_xyxy, e.class_ids, r.boxes_xyxy, r.class_ids)
                         for r, e in zip(results, reference, strict=True)),
            "same_spike_counts": sum(d == 0 for d in spike_diff),
            "max_spike_diff": float(max(spike_diff)),
            "max_spike_rel": float(max(d / e.energy.spikes
                                       for d, e in zip(spike_diff, reference, strict=True))),
            "spikes_per_frame": float(np.mean([e.energy.spikes for e in reference])),
        })
    return rows


def _medians(times: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """p50 wall ms per variant (ann_p50_ms, snn_p50_ms, snn_counting_p50_ms, ...) and p50
    CPU ms of the counted variants."""
    keys = {"ann": "ann", "snn": "snn", "counting": "snn_counting",
            "counting_inline": "snn_counting_inline"}
    medians = {}
    for variant, frames in times.items():
        if frames:
            medians[f"{keys[variant]}_p50_ms"] = float(np.median([w for w, _ in frames]))
            if variant != "ann":
                medians[f"{keys[variant]}_cpu_ms"] = float(np.median([c for _, c in frames]))
    return medians


def map_rows(model: str, count: int, backends: tuple[str, ...]) -> list[dict]:
    """mAP (YOLOv5's protocol) of the fused SNN on each backend over `count` test scenes."""
    from suhd_ros.evaluation.sweep import benchmark_scenes, evaluate

    scenes = benchmark_scenes(count)
    return [{"backend": b, **evaluate(make_detector(model, "fused", b, None), scenes)}
            for b in backends]


def print_table(rows: list[dict]) -> None:
    eager_ann = {r["threads"]: r["ann_p50_ms"] for r in rows if r["backend"] == "eager"}
    print("| backend | threads | ANN ms | SNN ms | SNN / ANN | SNN / eager ANN | SNN counting ms "
          "| counting / not | CPU: counting / not | counting on the calling thread / not "
          "| agree (0.5 px) | same order | max spike diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = eager_ann.get(r["threads"], float("nan"))
        print(f"| {r['backend']} | {r['threads']} | {r['ann_p50_ms']:.1f} | "
              f"{r['snn_p50_ms']:.1f} | {r['snn_p50_ms'] / r['ann_p50_ms']:.2f} | "
              f"{r['snn_p50_ms'] / base:.2f} | {r['snn_counting_p50_ms']:.1f} | "
              f"{r['snn_counting_p50_ms'] / r['snn_p50_ms']:.2f} | "
              f"{r['snn_counting_cpu_ms'] / r['snn_cpu_ms']:.2f} | "
              f"{r['snn_counting_inline_p50_ms'] / r['snn_p50_ms']:.2f} | "
              f"{r['agree']}/{r['scenes']} | {r['same_detections']}/{r['scenes']} | "
              f"{100 * r['max_spike_rel']:.4f} % |")


def main() -> None:
    from suhd_ros.evaluation.sweep import benchmark_scenes

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="model file (default: the embedded model)")
    p.add_argument("--backends", nargs="+", default=["eager", *RUNTIMES], choices=BACKENDS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--scenes", type=int, default=50, help="test scenes compared (default 50)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=10, help="frames per round and variant")
    p.add_argument("--map-scenes", type=int, default=0, help="also mAP on this many scenes")
    args = p.parse_args()
    scenes = [s.image for s in benchmark_scenes(args.scenes)]
    rows = []
    for threads in args.threads:
        print(f"{threads} thread(s):")
        rows += measure(args.model, scenes, args.rounds, args.frames, tuple(args.backends),
                        threads=threads)
    print_table(rows)
    if args.map_scenes:
        for row in map_rows(args.model, args.map_scenes, tuple(args.backends)):
            print(f"{row['backend']}: mAP@0.5 {row['map50']:.4f}, mAP@0.5:0.95 "
                  f"{row['map50_95']:.4f}, spikes/frame {row['spikes']:.0f}")


if __name__ == "__main__":
    main()

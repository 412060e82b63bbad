"""Faster backends for the fused engine: channels_last and torch.compile against eager PyTorch.

The issue's rule: adopt a backend only if it is at least 1.3x faster with identical detections
and spike counts. Each backend gets its own ANN and SNN (fused, T = 4) Detector in this process;
timing alternates between them round by round, and every test scene is run through each SNN
backend with spikes counted, to compare detections and spike counts with eager's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from suhd_ros.detector import Detector, FrameResult

BACKENDS = ("eager", "channels_last", "compile")


def prepare(detector: Detector, backend: str) -> Detector:
    """The detector with its network run by `backend` (compile happens on the first call)."""
    if backend == "channels_last":
        detector.model = detector.model.to(memory_format=torch.channels_last)
    elif backend == "compile":
        detector.model = torch.compile(detector.model)
    return detector


BOX_TOLERANCE_PX, SCORE_TOLERANCE = 0.01, 1e-4  # float rounding of the analog head


def same_detections(a: FrameResult, b: FrameResult) -> bool:
    """The same boxes in the same order with the same classes, up to float rounding."""
    return (a.class_ids.shape == b.class_ids.shape and np.array_equal(a.class_ids, b.class_ids)
            and np.allclose(a.boxes_xyxy, b.boxes_xyxy, rtol=0, atol=BOX_TOLERANCE_PX)
            and np.allclose(a.scores, b.scores, rtol=0, atol=SCORE_TOLERANCE))


def _frame_times_ms(detect: Callable[[], object], frames: int) -> list[float]:
    times = []
    for _ in range(frames):
        began = time.perf_counter()
        detect()
        times.append((time.perf_counter() - began) * 1e3)
    return times


def measure(model: str, scenes: list[np.ndarray], rounds: int, frames: int,
            backends: tuple[str, ...] = BACKENDS,
            progress: Callable[[str], None] = print) -> list[dict]:
    """One row per backend: p50 of ANN and SNN (statistics off), the first-call time, and how
    many test scenes give eager's detections (`same_detections`) and exactly its spike counts."""
    image = scenes[0]
    ann = {b: prepare(Detector(model, "cpu", "ann"), b) for b in backends}
    snn = {b: prepare(Detector(model, "cpu", "fused"), b) for b in backends}
    first_call_s = {}
    for b in backends:
        began = time.perf_counter()
        ann[b].detect([image])
        snn[b].detect([image], count_spikes=False)
        snn[b].detect([image])  # counting compiles its own graph
        first_call_s[b] = time.perf_counter() - began
        progress(f"  {b}: ready after {first_call_s[b]:.1f} s")
    times: dict[str, tuple[list[float], list[float]]] = {b: ([], []) for b in backends}
    for r in range(rounds):
        for b in backends[r % len(backends):] + backends[:r % len(backends)]:
            times[b][0].extend(_frame_times_ms(lambda b=b: ann[b].detect([image]), frames))
            times[b][1].extend(_frame_times_ms(
                lambda b=b: snn[b].detect([image], count_spikes=False), frames))
    reference = [snn["eager"].detect([s])[0] for s in scenes]
    rows = []
    for b in backends:
        results = [snn[b].detect([s])[0] for s in scenes]
        spike_diff = [abs(r.energy.spikes - e.energy.spikes)
                      for r, e in zip(results, reference, strict=True)]
        rows.append({
            "backend": b, "ann_p50_ms": float(np.median(times[b][0])),
            "snn_p50_ms": float(np.median(times[b][1])), "first_call_s": first_call_s[b],
            "scenes": len(scenes),
            "same_detections": sum(same_detections(r, e)
                                   for r, e in zip(results, reference, strict=True)),
            "same_spike_counts": sum(d == 0 for d in spike_diff),
            "max_spike_diff": float(max(spike_diff)),
            "spikes_per_frame": float(np.mean([e.energy.spikes for e in reference])),
        })
    return rows

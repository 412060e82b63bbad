"""Accuracy side of the benchmarks: the rate-coding T that matches SUHD, and the peer's mAP vs T.

The matching T is chosen on validation scenes, never on the test split: the smallest power of
two whose rate-coded mAP@0.5:0.95 reaches STDI's at T = 4. The fused engine gives the same
detections as the time loop, so the search costs about one ANN pass per image and T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from suhd_ros.detector import Detector
from suhd_ros.evaluation.sweep import RunConfig, evaluate, sweep
from suhd_ros.synthetic.scenes import Scene

RATE_T_CANDIDATES = tuple(2**k for k in range(9))  # 1 .. 256


def match_rate_T(model: str, val: Sequence[Scene], progress: Callable[[str], None] = print
                 ) -> tuple[int | None, list[dict]]:
    """(smallest rate-coding T with mAP@0.5:0.95 >= STDI T=4's, or None; the rows evaluated)."""
    rows = sweep(model, val, [RunConfig(T=4, f_c=_model_f_c(model))])
    target = rows[0]["map50_95"]
    progress(f"  STDI T=4 on validation: mAP@0.5:0.95 {target:.4f}")
    for T in RATE_T_CANDIDATES:
        rows += sweep(model, val, [RunConfig(coding="rate", T=T, f_c=1)])
        progress(f"  rate T={T:<3d} on validation: mAP@0.5:0.95 {rows[-1]['map50_95']:.4f}")
        if rows[-1]["map50_95"] >= target:
            return T, rows
    return None, rows


def _model_f_c(model: str) -> int:
    return Detector(model, "cpu", "ann").f_c


def rows_on_test_split(model: str, test: Sequence[Scene], rate_T: int) -> list[dict]:
    """ANN, SUHD (STDI T=4) and rate coding at the matched T on the test split."""
    configs = [RunConfig("ann"), RunConfig(T=4, f_c=_model_f_c(model)),
               RunConfig(coding="rate", T=rate_T, f_c=1)]
    return sweep(model, test, configs)


def peer_rows(model: str, test: Sequence[Scene], calibration: Sequence, percentile: float,
              timesteps: Sequence[int], progress: Callable[[str], None] = print
              ) -> tuple[list[dict], dict]:
    """SpikingJelly's conversion evaluated at each T (batch 1, so ms per image is per frame)."""
    import spikingjelly_peer as peer  # needs spikingjelly: only imported when asked for

    trunk, detect = peer.convert(model, calibration, percentile)
    pools, on_spikes = peer.pools_fed_by_spikes(trunk)
    rows = []
    for T in timesteps:
        detector = peer.peer_detector(model, trunk, detect, T)
        rows.append({"label": f"SpikingJelly rate T={T}", "T": T,
                     **evaluate(detector, test, batch_size=1)})
        progress(f"  SpikingJelly T={T:<3d}: mAP@0.5:0.95 {rows[-1]['map50_95']:.4f}, "
                 f"{rows[-1]['ms_per_image']:.0f} ms per frame")
    notes = {"census": peer.graph_census(trunk), "pools": pools, "pools_on_spikes": on_spikes}
    return rows, notes

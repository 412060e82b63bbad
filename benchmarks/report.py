"""docs/benchmarks.md from the figures run_all.py collected: tables, ratios, targets, plots."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch

FUSED = "SNN fused T=4"  # statistics on every frame
FUSED_SAMPLED = "SNN fused T=4, statistics 1 in 10 (node default)"
FUSED_OFF = "SNN fused T=4, statistics off"
PEER_NOTES = (
    "SpikingJelly 2.0 `ann2snn.Converter(RateCodingRecipe(...))` traces the network with "
    "torch.fx, folds BN into the convs and puts an IF neuron (threshold 1, reset by "
    "subtraction) between two voltage scalers in place of every ReLU; each scale is the "
    "recipe's percentile of that ReLU's output on the calibration scenes (the same percentile "
    "and the same number of training-split scenes as our model file). What it could not take: "
    "YOLOv5's Detect decoding (grids from the map sizes are shape-dependent Python that fx "
    "cannot trace), so the glue in `benchmarks/spikingjelly_peer.py` cuts the head after its "
    "1x1 convs, runs the converted trunk T steps on the analog image, averages the head's "
    "outputs over T and decodes them with our Detect (convs replaced by identities). Max-pools "
    "(SPPF), concat, residual adds and nearest upsampling were converted by SpikingJelly itself: "
    "max-pool and upsample become its step-mode layers and act on each step's scaled spike "
    "maps, concat and add pass spikes through."
)


def machine() -> dict:
    """Where the absolute times come from."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "system": platform.platform()}


def _f(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def latency_table(rows: list[dict]) -> str:
    ann = next(r for r in rows if r["engine"] == "ann")
    return _table(
        ["variant", "frames", "p50 ms", "p95 ms", "x ANN (p50)", "mean ms", "x ANN (mean)",
         "network p50 ms", "peak RSS MB", "RSS over imports MB"],
        [[r["label"], str(r["frames"]), _f(r["p50_ms"]), _f(r["p95_ms"]),
          _f(r["p50_ms"] / ann["p50_ms"], 2), _f(r["mean_ms"]),
          _f(r["mean_ms"] / ann["mean_ms"], 2), _f(r["forward_p50_ms"]),
          _f(r["peak_rss_mb"], 0), _f(r["peak_rss_mb"] - r["baseline_rss_mb"], 0)]
         for r in rows])


def accuracy_table(rows: list[dict], with_time: bool = False) -> str:
    header = ["model", "mAP@0.5", "mAP@0.5:0.95"] + (["ms per frame"] if with_time else [])
    return _table(header, [[r["label"], _f(r["map50"], 4), _f(r["map50_95"], 4)]
                           + ([_f(r["ms_per_image"])] if with_time else []) for r in rows])


def by_label(rows: list[dict], label: str) -> dict:
    return next(r for r in rows if r["label"] == label)


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, the figure, met?) for every target the run has figures for."""
    out = []
    for key, name in (("latency_default", "default model"), ("latency_big", "YOLOv5s 640")):
        rows = results.get(key)
        if not rows:
            continue
        ann = by_label(rows, "ANN")
        labels = {r["label"] for r in rows}
        # the sampled row by its mean: its p50 is a frame without counting, the mean pays for
        # the counted ones
        for label, limit, stat in ((FUSED, 1.15, "p50_ms"), (FUSED_SAMPLED, 1.15, "mean_ms"),
                                   (FUSED_OFF, 1.15, "p50_ms"),
                                   ("SNN reference T=4", 4.5, "p50_ms")):
            if label in labels:
                ratio = by_label(rows, label)[stat] / ann[stat]
                out.append((f"{label} <= {limit}x ANN ({name}, {stat[:-3]})", f"{ratio:.2f}x",
                            ratio <= limit))
        rate = next((r for r in rows if r["coding"] == "rate"), None)
        for label in ("SNN reference T=4", FUSED) if rate else ():
            speedup = rate["p50_ms"] / by_label(rows, label)["p50_ms"]
            out.append((f"{label} >= 30x faster than {rate['label']} ({name})",
                        f"{speedup:.1f}x", speedup >= 30))
    if results.get("backends"):
        out.append(_backend_target(results["backends"]))
    node = results.get("node")
    if node:
        out.append(("node overhead <= 10 ms at p50", f"{node['overhead_p50_ms']:.1f} ms",
                    node["overhead_p50_ms"] <= 10))
        out.append(("node RSS growth < 5 %", f"{100 * node['rss_growth']:+.1f} %",
                    node["rss_growth"] < 0.05))
        out.append(("default model end to end >= 25 fps", f"{node['fps']:.1f} fps",
                    node["fps"] >= 25))
    return out


def plot(results: dict, folder: Path) -> list[Path]:
    """Latency bars, mAP vs T and the node's RSS; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key in ("latency_default", "latency_big"):
        if results.get(key):
            fig, ax = plt.subplots(figsize=(7, 3.5))
            rows = results[key]
            p50 = [r["p50_ms"] for r in rows]
            p95 = [r["p95_ms"] - r["p50_ms"] for r in rows]
            ax.barh([r["label"] for r in rows], p50, xerr=[[0] * len(rows), p95], color="C0")
            ax.set_xscale("log")
            ax.set_xlabel("ms per frame (bar p50, whisker p95)")
            ax.invert_yaxis()
            written.append(_save(fig, folder / f"{key}.png"))
    if results.get("peer"):
        fig, ax = plt.subplots(figsize=(6, 4))
        peer = results["peer"]
        ax.plot([r["T"] for r in peer], [r["map50_95"] for r in peer], "o-",
                label="SpikingJelly rate coding")
        ours = results["accuracy_test"]
        ax.axhline(ours[0]["map50_95"], color="k", linestyle="--", label="ANN")
        ax.plot([4], [ours[1]["map50_95"]], "r*", markersize=12, label="SUHD STDI T=4")
        ax.plot([ours[2]["T"]], [ours[2]["map50_95"]], "gs", label=f"ours, {ours[2]['label']}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("mAP@0.5:0.95 (test split)")
        ax.legend(fontsize=8)
        written.append(_save(fig, folder / "map_vs_T.png"))
    if results.get("node"):
        fig, ax = plt.subplots(figsize=(6, 3))
        t, mb = zip(*results["node"]["rss_mb"], strict=True)
        ax.plot(t, mb, "-")
        ax.set_xlabel("s since the window opened")
        ax.set_ylabel("detector node RSS [MB]")
        written.append(_save(fig, folder / "node_rss.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _image(path: Path, doc: Path) -> str:
    return f"![{path.stem}]({os.path.relpath(path, doc.parent)})"


def markdown(results: dict, doc: Path, plots: list[Path]) -> str:
    """The whole page."""
    m, s = results["machine"], results["settings"]
    pngs = {p.stem: _image(p, doc) for p in plots}
    parts = [
        "# Benchmarks",
        f"Written by `{s['command']}` on {results['date']}. Everything below was measured in "
        "that one run, side by side; quote the ratios. Absolute times hold for this machine "
        f"only: **{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {s['threads']} threads**, "
        f"Python {m['python']}, {m['system']}.",
        "## Targets",
        _table(["target", "measured", "met"],
               [[t, f, "yes" if ok else "**no**"] for t, f, ok in targets(results)]),
    ]
    parts += _latency_section(results, pngs)
    parts += _peer_section(results, pngs)
    parts += _node_section(results, pngs)
    parts += _backend_section(results)
    return "\n\n".join(parts) + "\n"


def _latency_section(results: dict, pngs: dict[str, str]) -> list[str]:
    s = results["settings"]
    rate_T, matched = results["rate_T"], results["rate_T_matched"]
    parts = [
        "## 1. Latency and memory per frame (CPU, batch 1)",
        f"A frame is `Detector.detect([image])`: letterbox, network, NMS and, for the SNN with "
        f"statistics on, the spike counts and energy report the node publishes; \"network\" is "
        f"the forward pass alone. Each variant runs in its own process (peak RSS = its "
        f"`ru_maxrss`; \"over imports\" subtracts the process's peak before the model was "
        f"built); the parent asks the processes for {s['frames']} frames each in turn, "
        f"{s['rounds']} rounds in a rotating order, so machine noise falls on all alike. "
        "Rate coding runs the reference engine (the literal time loop, as in the paper's "
        "comparison; the fused engine would make any coding cost one ANN pass).",
        f"Rate coding T = {rate_T}: the smallest power of two up to 256 whose mAP@0.5:0.95 on "
        f"{s['val_images']} validation scenes reaches STDI T = 4's"
        + ("." if matched else " was **not found**: no T up to 256 reaches it; T = 256 is used.")
        + " mAP is scored as YOLOv5's val.py scores it (score threshold 0.001, NMS IoU 0.6, "
        "multi-label), here and in section 2.",
        accuracy_table(results["rate_search"]),
        "The same three on the test split "
        f"({s['images']} scenes):", accuracy_table(results["accuracy_test"]),
    ]
    for key, title in (("latency_default", f"Default model: {results['model_name']}, "
                                           f"{results['model_size']}"),
                       ("latency_big", f"YOLOv5{s['big_size']} architecture, random weights, "
                                       f"{s['big_img']}x{s['big_img']}, calibrated on "
                                       f"{s['big_calibration']} benchmark scenes")):
        if results.get(key):
            parts += [f"### {title}", latency_table(results[key]), pngs.get(key, "")]
    if results.get("latency_big"):
        parts.append("Rate coding is left out at 640x640: its time loop runs T steps, minutes "
                     "per frame there; its ratio to SUHD is measured on the default model.")
    parts.append("Spike statistics cost the fused engine the difference between its "
                 "\"statistics\" rows: counted on every frame, on one frame in 10 (the node's "
                 "default `energy_every_n`; its p50 is an uncounted frame, its mean carries the "
                 "counted ones) and off (`statistics=False`, no energy report).")
    return parts


def _peer_section(results: dict, pngs: dict[str, str]) -> list[str]:
    parts = ["## 2. The peer anyone can run: SpikingJelly ann2snn"]
    if not results.get("peer"):
        return [*parts, results.get("peer_skipped", "Not run.")]
    notes = results["peer_notes"]
    census = ", ".join(f"`{k}` x{v}" for k, v in notes["census"].items())
    parts += [
        PEER_NOTES,
        f"In the converted trunk {notes['pools_on_spikes']} of {notes['pools']} max-pool calls "
        "take a neuron's (scaled) spike output, i.e. they pool spikes step by step, not "
        f"membrane potentials as Spike-MaxPool does. Graph of the converted trunk: {census}.",
        f"Same test split ({results['settings']['images']} scenes), batch 1, "
        f"{results['settings']['threads']} threads. ms per frame: SpikingJelly's over the test "
        "split; ANN and SUHD rows take their p50 from section 1.",
        accuracy_table(_with_latency(results) + results["peer"], with_time=True),
        pngs.get("map_vs_T", ""),
    ]
    return parts


def _with_latency(results: dict) -> list[dict]:
    """The test-split ANN and STDI T=4 rows with section 1's p50 as their time per frame."""
    timing = {r["engine"]: r["p50_ms"] for r in results.get("latency_default", [])
              if r["coding"] == "stdi" and r["statistics"] and r["count_every"] == 1}
    return [{**r, "ms_per_image": timing.get(r["engine"], float("nan"))}
            for r in results["accuracy_test"][:2]]


def _node_rows(node: dict) -> list[tuple[str, str]]:
    return [
        ("camera", f"{node['width']}x{node['height']} at {node['camera_hz']:g} Hz, "
                   f"{node['published'] / node['duration_s']:.1f} Hz delivered"),
        ("window", f"{node['duration_s']:g} s, {node['published']} frames published"),
        ("processed", f"{node['processed']} frames, {node['fps']:.1f} fps"),
        ("drop rate", f"{100 * node['drop_rate']:.1f} % (node's own count: "
                      f"{node['node_dropped']} dropped of {node['node_received']} received)"),
        ("latency stamp -> detections received", f"p50 {node['latency_p50_ms']:.1f} ms, "
                                                  f"p95 {node['latency_p95_ms']:.1f} ms"),
        ("inference (node's /diagnostics)", f"{node['inference_ms']:.1f} ms, "
                                             f"{node['node_threads']} CPU threads"),
        ("node overhead (latency p50 - inference)", f"{node['overhead_p50_ms']:.1f} ms"),
        ("node RSS", f"{node['rss_start_mb']:.0f} MB -> {node['rss_end_mb']:.0f} MB "
                     f"({100 * node['rss_growth']:+.1f} %)"),
    ]


def _node_section(results: dict, pngs: dict[str, str]) -> list[str]:
    parts = ["## 3. The node end to end"]
    runs = [(f"Fast DDS profile `{node['fastdds_profile']}` (as launched)"
             if node["fastdds_profile"] else "Fast DDS defaults", node)
            for node in (results.get("node"), results.get("node_default_dds")) if node]
    if not runs:
        return [*parts, "Not run."]
    columns = [_node_rows(node) for _, node in runs]
    rows = [[figure, *(column[i][1] for column in columns)]
            for i, (figure, _) in enumerate(columns[0])]
    return [
        *parts,
        "`suhd_camera`, `suhd_detector` (the model above, fused engine, autostart, config "
        "defaults: spikes counted on one frame in 10, CPU threads all cores but one) and the "
        "benchmark's monitor in three "
        "processes over Fast DDS on localhost. The camera replays 60 scenes drawn at its start "
        "(a camera driver's cost, not our scene generator's). The monitor reads the camera's "
        "ground-truth message (same header as the image) to know which frames were published, "
        "and the detections; it never subscribes to the images. The overhead includes waiting "
        "for the worker when a frame arrives while the previous one is still being inferred.",
        _table(["figure", *(title for title, _ in runs)], rows), pngs.get("node_rss", "")]


def _identical(row: dict) -> bool:
    return row["same_detections"] == row["same_spike_counts"] == row["scenes"]


def _backend_target(rows: list[dict]) -> tuple[str, str, bool]:
    """The fastest other backend against eager: adopt only at >= 1.3x and identical results."""
    eager = next(r for r in rows if r["backend"] == "eager")
    best = min((r for r in rows if r["backend"] != "eager"), key=lambda r: r["snn_p50_ms"])
    speedup = eager["snn_p50_ms"] / best["snn_p50_ms"]
    same = "identical" if _identical(best) else (
        f"not identical: {best['same_detections']}/{best['scenes']} scenes same detections, "
        f"{best['same_spike_counts']}/{best['scenes']} same spike counts")
    return ("a faster backend: >= 1.3x the fused engine with identical detections and spikes",
            f"{best['backend']} {speedup:.2f}x, {same}", speedup >= 1.3 and _identical(best))


def _backend_section(results: dict) -> list[str]:
    parts = ["## 4. Faster backends for the fused engine"]
    rows = results.get("backends")
    if not rows:
        return [*parts, "Not run."]
    eager = next(r for r in rows if r["backend"] == "eager")
    return [
        *parts,
        "`benchmarks/backends.py`: each backend gets its own ANN and SNN (fused, T = 4, "
        "statistics off for timing) Detector in one process, timed in alternating rounds on "
        "one frame; then every test scene goes through each SNN backend with spikes counted "
        "and is compared with eager PyTorch (same classes in the same order, boxes within "
        "0.01 px, scores within 1e-4; spike counts exactly). \"first call\" is the time to "
        "the first results "
        "(torch.compile compiles then). A backend is adopted only if it is at least 1.3x faster "
        "with identical detections and spike counts: the STDI neuron floors its membrane, so a "
        "convolution that sums in another order can move a neuron across a threshold.",
        _table(["backend", "ANN p50 ms", "SNN p50 ms", "SNN x eager", "first call s",
                "scenes with eager's detections", "scenes with eager's spike counts",
                "largest spike difference (of spikes per frame)"],
               [[r["backend"], _f(r["ann_p50_ms"]), _f(r["snn_p50_ms"]),
                 _f(eager["snn_p50_ms"] / r["snn_p50_ms"], 2), _f(r["first_call_s"]),
                 f"{r['same_detections']}/{r['scenes']}",
                 f"{r['same_spike_counts']}/{r['scenes']}",
                 f"{r['max_spike_diff']:.0f} (of {r['spikes_per_frame']:.3g})"] for r in rows]),
    ]

"""The benchmark suite on tiny settings: run_all.py writes the page with the expected tables.

One run for the module (tiny model, 4 scenes, one round of one frame; the YOLOv5s and node
parts skipped), then its page and results.json are checked against figures recomputed here.
The SpikingJelly checks skip where spikingjelly is not installed (it comes with `make bench`).
The soak runs for a few seconds on the tiny model, as its own process.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_model import make_snn_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import node_e2e
import report
import run_all

BENCHMARKS = Path(run_all.__file__).parent
HAS_SPIKINGJELLY = importlib.util.find_spec("spikingjelly") is not None
LABELS = ("ANN", report.FUSED, report.FUSED_SAMPLED, report.FUSED_OFF, "SNN reference T=4")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    folder = tmp_path_factory.mktemp("bench")
    model = make_snn_file(folder)
    out = folder / "benchmarks.md"
    out.write_text("# Benchmarks\n\nan older run\n\n## Soak\n\nsoak figures 1234\n")
    argv = ["--model", str(model), "--quick", "--images", "4", "--val-images", "4",
            "--rounds", "1", "--frames", "1", "--peer-T", "1", "2", "--calibration-images", "2",
            "--threads", "1", "--skip", "big", "node", "backends", "--out", str(out)]
    assert run_all.main(argv) == 0
    torch.set_num_threads(1)
    return out.read_text(), json.loads((folder / "benchmarks" / "results.json").read_text()), \
        model


def _row(page: str, label: str, after: str = "") -> list[str]:
    """The cells of the first table row whose first cell is `label`, below the text `after`."""
    for line in page[page.index(after):].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no table row {label!r}")


def test_page_has_every_section_and_the_machine(run: tuple) -> None:
    page, results, _ = run
    assert "an older run" not in page  # rewritten, but the soak section (measured apart) kept
    assert page.count("## Soak") == 1 and "soak figures 1234" in page
    for heading in ("## Targets", "## 1. Latency", "### Default model", "## 2. The peer",
                    "## 3. The node end to end"):
        assert heading in page
    assert f"torch {torch.__version__}" in page and "1 threads" in page
    assert results["machine"]["cores"] >= 1


def test_latency_rows_are_consistent_with_the_measured_frames(run: tuple) -> None:
    page, results, _ = run
    rows = {r["label"]: r for r in results["latency_default"]}
    rate_label = f"rate coding T={results['rate_T']} (reference)"
    assert set(rows) == {*LABELS, rate_label}
    for label, r in rows.items():
        assert len(r["frame_ms"]) == r["frames"] == 1
        assert r["p50_ms"] == pytest.approx(np.median(r["frame_ms"]))
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
        cells = _row(page, label, after="### Default model")
        assert float(cells[4]) == pytest.approx(r["p50_ms"] / rows["ANN"]["p50_ms"], abs=0.006)
    assert rows[report.FUSED]["coding"] == "stdi"
    assert rows[report.FUSED_SAMPLED]["count_every"] == 10
    assert rows[rate_label]["coding"] == "rate" and rows[rate_label]["engine"] == "reference"


def test_rate_T_is_the_smallest_power_of_two_that_matches_STDI(run: tuple) -> None:
    _, results, _ = run
    stdi, *rate = results["rate_search"]
    assert stdi["coding"] == "stdi" and stdi["T"] == 4
    assert [r["T"] for r in rate] == [2**k for k in range(len(rate))]
    assert all(r["map50_95"] < stdi["map50_95"] for r in rate[:-1])
    if results["rate_T_matched"]:
        assert rate[-1]["map50_95"] >= stdi["map50_95"] and results["rate_T"] == rate[-1]["T"]
    else:
        assert len(rate) == 9 and results["rate_T"] == 256


def test_targets_quote_the_ratios_of_the_latency_table(run: tuple) -> None:
    page, results, _ = run
    rows = {r["label"]: r for r in results["latency_default"]}
    fused = rows[report.FUSED]["p50_ms"] / rows["ANN"]["p50_ms"]
    cells = _row(page, f"{report.FUSED} <= 1.15x ANN (default model, p50)")
    assert cells[1] == f"{fused:.2f}x"
    assert cells[2] == ("yes" if fused <= 1.15 else "**no**")
    sampled = rows[report.FUSED_SAMPLED]["mean_ms"] / rows["ANN"]["mean_ms"]
    assert _row(page, f"{report.FUSED_SAMPLED} <= 1.15x ANN (default model, mean)")[1] \
        == f"{sampled:.2f}x"


@pytest.mark.skipif(not HAS_SPIKINGJELLY, reason="spikingjelly not installed (make bench)")
def test_peer_rows_and_what_spikingjelly_made_of_the_network(run: tuple) -> None:
    page, results, _ = run
    assert [r["T"] for r in results["peer"]] == [1, 2]
    for r in results["peer"]:
        assert 0.0 <= r["map50_95"] <= r["map50"] <= 1.0
        assert _row(page, f"SpikingJelly rate T={r['T']}")
    notes = results["peer_notes"]
    assert notes["pools"] == 3  # SPPF's chain of three max-pool calls
    assert any(key.endswith("IFNode") for key in notes["census"])


@pytest.mark.skipif(not HAS_SPIKINGJELLY, reason="spikingjelly not installed (make bench)")
def test_peer_glue_decodes_like_our_own_head(run: tuple) -> None:
    """The glue around an unconverted trunk (no neurons) at T = 1 is exactly the ANN."""
    import copy

    import spikingjelly_peer as peer

    from suhd_ros.yolo.model_file import build_model, load_model_file

    ann = build_model(load_model_file(run[2])).eval()
    trunk = copy.deepcopy(ann)
    trunk.model[-1] = peer.RawHead(ann.detect)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        decoded, raw = peer.RateCodedYOLO(trunk, ann.detect, T=1)(x)
        expected, expected_raw = ann(x)
    torch.testing.assert_close(decoded, expected)
    torch.testing.assert_close(raw, expected_raw)


@pytest.mark.skipif(HAS_SPIKINGJELLY, reason="spikingjelly is installed")
def test_without_spikingjelly_the_page_says_so(run: tuple) -> None:
    assert "spikingjelly is not installed" in run[0]


def test_node_summary_counts_frames_latency_and_memory() -> None:
    seen = node_e2e.Observed(
        published={10, 20, 30, 40, 50},
        latency_ms={10: 30.0, 20: 50.0, 40: 40.0, 50: 60.0},
        inference_ms=[20.0, 24.0, 22.0],
        rss_mb=[(0.0, 200.0), (1.0, 201.0), (2.0, 210.0)],
    )
    s = node_e2e.summarise(seen, duration_s=2.0, rate_hz=30.0, size=(640, 480))
    assert s["processed"] == 4 and s["published"] == 5
    assert s["fps"] == pytest.approx(2.0)
    assert s["drop_rate"] == pytest.approx(0.2)
    assert s["latency_p50_ms"] == pytest.approx(45.0)
    assert s["overhead_p50_ms"] == pytest.approx(45.0 - 22.0)
    assert s["rss_growth"] == pytest.approx(0.05)


def test_node_section_puts_the_two_transports_side_by_side() -> None:
    seen = node_e2e.Observed(published={1, 2, 3, 4}, latency_ms={1: 40.0, 2: 44.0},
                             inference_ms=[30.0], rss_mb=[(0.0, 300.0), (1.0, 300.0)])
    launched = {**node_e2e.summarise(seen, 2.0, 30.0, (640, 480)),
                "fastdds_profile": "fastdds_large_images.xml"}
    default = {**launched, "fps": 0.5, "fastdds_profile": None}
    page = "\n\n".join(report._node_section({"node": launched, "node_default_dds": default}, {}))
    header = _row(page, "figure")
    assert header[1:] == ["Fast DDS profile `fastdds_large_images.xml` (as launched)",
                          "Fast DDS defaults"]
    assert _row(page, "processed")[1:] == ["2 frames, 1.0 fps", "2 frames, 0.5 fps"]


def test_backends_compare_detections_and_spikes_with_eager(tmp_path: Path) -> None:
    """channels_last only (torch.compile would take minutes here); eager against itself is
    identical by construction, so the counts of the table can be checked."""
    import backends

    from suhd_ros.synthetic.scenes import generate_scene

    model = make_snn_file(tmp_path)
    scenes = [generate_scene(k, 96, 64).image for k in range(3)]
    rows = backends.measure(str(model), scenes, rounds=1, frames=1,
                            backends=("eager", "channels_last"), progress=lambda _: None)
    torch.set_num_threads(1)
    eager, last = rows
    assert (eager["backend"], last["backend"]) == ("eager", "channels_last")
    assert eager["same_detections"] == eager["same_spike_counts"] == 3
    assert eager["max_spike_diff"] == 0 and eager["spikes_per_frame"] > 0
    assert 0 <= last["same_detections"] <= 3 and last["snn_p50_ms"] > 0
    for row in rows:  # counting on the worker thread and on the calling one, with CPU times
        assert row["snn_counting_inline_p50_ms"] > 0 and row["snn_counting_cpu_ms"] > 0
    page = "\n\n".join(report._backend_section({"backends": rows}))
    assert _row(page, "eager")[5:7] == ["3/3", "3/3"]
    assert report._backend_target(rows)[0].startswith("a faster backend")


def test_soak_samples_the_node_and_writes_its_section(model_path: Path, tmp_path: Path) -> None:
    """A few seconds of soak (tiny model, small frames at 10 Hz): the node processes frames,
    is sampled, ends cleanly on SIGINT, and the section replaces the page's earlier one."""
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Soak\n\nan older soak\n\n## After\n\nkept\n")
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "soak.py"), "--minutes", "0.1", "--interval", "2",
         "--rate", "10", "--width", "160", "--height", "120", "--model", str(model_path),
         "--markdown", str(page)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    text = page.read_text()
    assert "an older soak" not in text and text.count("## Soak") == 1
    assert text.endswith("## After\n\nkept\n")
    assert f"model `{model_path.name}`" in text
    assert "- exit status after SIGINT: camera 0, detector 0" in text
    received = re.search(r"detections received (\d+)", text)
    assert received and int(received[1]) > 0, text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \| [\d.]+ \|", line)]
    assert len(rows) >= 2, text

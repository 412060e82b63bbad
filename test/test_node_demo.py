"""`python -m suhd_ros.tools.demo` end to end, with a tiny model: live lines, summary, snapshot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2

from tiny_model import make_snn_file


def test_demo_runs_prints_a_summary_and_saves_overlays(tmp_path: Path) -> None:
    model = make_snn_file(tmp_path)
    output = tmp_path / "snapshots"
    result = subprocess.run(
        [sys.executable, "-m", "suhd_ros.tools.demo", "--model", str(model), "--duration", "5",
         "--width", "160", "--height", "120", "--device", "cpu", "--output", str(output)],
        capture_output=True, text=True, timeout=50, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    live = [line for line in result.stdout.splitlines() if "fps |" in line]
    assert len(live) >= 3
    scored = re.search(r"mAP@0\.5 (\d\.\d{3}) over (\d+) frames", live[-1])
    assert scored is not None and int(scored.group(2)) > 0, live[-1]
    assert "suhd demo summary" in result.stdout and "frames detected" in result.stdout
    snapshots = sorted(output.glob("overlay_*.png"))
    assert snapshots
    assert cv2.imread(str(snapshots[0])).shape == (120, 160, 3)


def test_demo_without_a_model_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "suhd_ros.tools.demo", "--model", str(missing), "--duration", "1"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1 and str(missing) in result.stderr

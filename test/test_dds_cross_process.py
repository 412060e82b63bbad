"""A Detection2DArray published by one OS process arrives intact in another, over real DDS."""

from __future__ import annotations

import subprocess
import sys

from suhd_ros.tools import dds_check


def test_detection_array_crosses_processes_intact() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "suhd_ros.tools.dds_check", "--hold", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 detections" in result.stdout and "intact" in result.stdout


def test_sample_message_is_not_trivially_equal() -> None:
    """The check compares real content: a changed field makes the messages differ."""
    changed = dds_check.sample_detections()
    changed.detections[1].bbox.size_y += 1.0
    assert changed != dds_check.sample_detections()

"""`colcon build` of suhd_ros works and installs what `ros2 launch` and the node need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_colcon_build_installs_share_tree(tmp_path: Path) -> None:
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed")
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    # A workspace holding the package as users would clone it (without our venv and build dirs).
    shutil.copytree(
        REPO, ws / "src" / "suhd_ros",
        ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git", "__pycache__"),
    )
    result = subprocess.run(
        [colcon, "build", "--packages-select", "suhd_ros", "--event-handlers", "console_direct-"],
        cwd=ws, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    share = ws / "install" / "suhd_ros" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "suhd_ros").is_file()
    assert (share / "suhd_ros" / "package.xml").is_file()
    for sub in ("launch", "config", "models"):
        assert (share / "suhd_ros" / sub).is_dir(), sub
    assert (share / "suhd_ros" / "launch" / "detector.launch.py").is_file()
    lib = ws / "install" / "suhd_ros" / "lib" / "suhd_ros"
    assert (lib / "suhd_detector").is_file() and (lib / "suhd_camera").is_file()

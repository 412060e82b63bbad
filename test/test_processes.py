"""suhd_ros.ros.processes on a stand-in node (a few lines of Python, no ROS): the command line
it is given, its environment and output in the log, and how a signal ends it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from suhd_ros.ros.processes import node_command, start_node, stop_node

# Prints its arguments and one variable as JSON, then waits; SIGINT ends it with status 3, or,
# with STUB_IGNORE_SIGINT set, is ignored.
STUB = """
import json, os, signal, sys, time
if os.environ.get("STUB_IGNORE_SIGINT"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
else:
    signal.signal(signal.SIGINT, lambda *_: sys.exit(3))
print(json.dumps({"argv": sys.argv[1:], "var": os.environ.get("STUB_VAR")}), flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which the module `stubs.node` is the stand-in node."""
    (tmp_path / "stubs").mkdir()
    (tmp_path / "stubs" / "__init__.py").write_text("")
    (tmp_path / "stubs" / "node.py").write_text(STUB)
    return {**os.environ, "PYTHONPATH": str(tmp_path), "STUB_VAR": "from the caller"}


def _started(log: Path, timeout_s: float = 20.0) -> dict:
    """What the stand-in printed once it is running (its signal handler is set by then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text()
        if text.endswith("\n"):
            return json.loads(text)
        time.sleep(0.05)
    raise TimeoutError(f"the stand-in node did not start: {log.read_text()!r}")


def test_command_line_of_a_package_node_leaves_empty_values_out() -> None:
    command = node_command("detector_node", "/ns", {"model_path": "", "device": "cpu",
                                                    "score_threshold": 0.25, "classes": None})
    assert command == [sys.executable, "-m", "suhd_ros.ros.detector_node", "--ros-args",
                       "-r", "__ns:=/ns", "-p", "device:=cpu", "-p", "score_threshold:=0.25"]
    assert node_command("camera_node", "/c", "rate:=5.0") == node_command(
        "camera_node", "/c", ["rate:=5.0", "model_path:="]) == [
        sys.executable, "-m", "suhd_ros.ros.camera_node", "--ros-args", "-r", "__ns:=/c",
        "-p", "rate:=5.0"]
    with pytest.raises(ValueError, match="'rate=5' is not 'name:=value'"):
        node_command("camera_node", "/c", ["rate=5"])


def test_started_node_gets_its_arguments_and_environment_and_sigint_ends_it(
    tmp_path: Path, stub_env: dict[str, str]
) -> None:
    log = tmp_path / "node.log"
    process = start_node("stubs.node", log, "/stub", {"rate": 5, "model_path": ""}, stub_env)
    try:
        printed = _started(log)
        assert printed == {"argv": ["--ros-args", "-r", "__ns:=/stub", "-p", "rate:=5"],
                           "var": "from the caller"}
        assert stop_node(process) == 3  # the node's own exit status, from its SIGINT handler
    finally:
        process.kill()
        process.wait()
    assert stop_node(process) == 3  # an ended process: only its status, no error


def test_node_that_ignores_the_signal_is_killed_after_the_timeout(
    tmp_path: Path, stub_env: dict[str, str]
) -> None:
    log = tmp_path / "node.log"
    process = start_node("stubs.node", log, "/stub", env={**stub_env, "STUB_IGNORE_SIGINT": "1"})
    try:
        _started(log)
        start = time.monotonic()
        assert stop_node(process, timeout_s=0.5) == -signal.SIGKILL
        assert 0.5 <= time.monotonic() - start < 5.0
    finally:
        process.kill()
        process.wait()


def test_other_signals_are_sent_as_asked(tmp_path: Path, stub_env: dict[str, str]) -> None:
    log = tmp_path / "node.log"
    process = start_node("stubs.node", log, "/stub", env=stub_env)
    try:
        _started(log)
        assert stop_node(process, signal.SIGTERM) == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()

"""A signal at any moment of a node's start-up (imports, model loading in the autostart
configure, spinning) ends it quietly: status 0, no traceback, no error. What `ros2 launch` and
systemd send (SIGINT, SIGTERM) goes to the console scripts, so those are what is run here.

Before the fix a SIGINT 0.3 s in ended the detector with a KeyboardInterrupt traceback (status
-2); under launch, about 1 in 50 signals during the torch import aborted it (SIGABRT) and some
were swallowed, which these samples catch only now and then."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suhd_ros.ros.processes import stop_node

SCRIPTS = Path(sys.executable).parent
BAD_OUTPUT = ("Traceback", "KeyboardInterrupt", "[ERROR]")


def _signalled_run(script: str, after_s: float, sig: signal.Signals, log: Path) -> int:
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(SCRIPTS / script), "--ros-args", "-r", "__ns:=/startup_signals",
             "-p", "device:=cpu"] if script == "suhd_detector" else [str(SCRIPTS / script)],
            stdout=out, stderr=subprocess.STDOUT)
    time.sleep(after_s)
    return stop_node(process, sig, timeout_s=20)


@pytest.mark.parametrize(("script", "after_s", "sig"), [
    ("suhd_detector", 0.3, signal.SIGINT),  # importing torch
    ("suhd_detector", 1.5, signal.SIGINT),  # importing, or loading the embedded model
    ("suhd_detector", 3.0, signal.SIGINT),  # loading, or spinning
    ("suhd_detector", 8.0, signal.SIGINT),  # spinning: rclpy's handlers have taken over
    ("suhd_detector", 1.5, signal.SIGTERM),
    ("suhd_camera", 0.3, signal.SIGTERM),
])
def test_a_signal_during_start_up_ends_the_node_quietly(script: str, after_s: float,
                                                      sig: signal.Signals,
                                                      tmp_path: Path) -> None:
    log = tmp_path / f"{script}.log"
    status = _signalled_run(script, after_s, sig, log)
    output = log.read_text()
    assert status == 0, output
    assert not [bad for bad in BAD_OUTPUT if bad in output], output

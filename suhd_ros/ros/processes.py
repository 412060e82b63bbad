"""Start a node of this package in its own OS process, and stop it with a signal.

The node tests and the benchmarks run nodes as separate processes over real DDS, as they are
deployed; this one place starts and ends them all the same way. Nothing here imports ROS: a node
is `python -m suhd_ros.ros.<module> --ros-args ...` run with this interpreter (the venv's, whose
start sets the ROS wheels' library path).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PACKAGE = "suhd_ros.ros"
STOP_TIMEOUT_S = 20.0  # a node that ignores its signal this long is killed


def _pairs(parameters: Mapping[str, object] | Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(parameters, Mapping):
        return [(name, "" if value is None else str(value))
                for name, value in parameters.items()]
    if isinstance(parameters, str):  # one "name:=value", not a sequence of characters
        parameters = [parameters]
    pairs = []
    for parameter in parameters:
        name, sep, value = parameter.partition(":=")
        if not sep:
            raise ValueError(f"parameter {parameter!r} is not 'name:=value'")
        pairs.append((name, value))
    return pairs


def node_command(module: str, namespace: str,
                 parameters: Mapping[str, object] | Sequence[str] = ()) -> list[str]:
    """The command line of a node in `namespace` with parameters {name: value} or
    ["name:=value", ...]; `module` is a module of suhd_ros.ros ("detector_node") or, dotted,
    any module. An empty value (or None) is left out, which keeps the node's default: rcl cannot
    parse an empty `-p model_path:=`."""
    target = module if "." in module else f"{PACKAGE}.{module}"
    args = [sys.executable, "-m", target, "--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in _pairs(parameters):
        if value != "":
            args += ["-p", f"{name}:={value}"]
    return args


def start_node(module: str, log: Path, namespace: str,
               parameters: Mapping[str, object] | Sequence[str] = (),
               env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The node (see node_command) running, both output streams written to `log` (so a failing
    test or benchmark can show what the node said); `env` is its whole environment (None: this
    process's)."""
    with log.open("w") as out:
        return subprocess.Popen(node_command(module, namespace, parameters), stdout=out,
                                stderr=subprocess.STDOUT, env=None if env is None else dict(env))


def stop_node(process: subprocess.Popen, sig: int = signal.SIGINT,
              timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Send `sig` (SIGINT: what Ctrl-C and ros2 launch send), wait up to `timeout_s`, then kill;
    the exit status (negative: the signal that ended it). A process that already ended is only
    reaped, so this is safe in a `finally`."""
    process.send_signal(sig)  # a no-op once the process has been reaped
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()

"""Helpers the node tests share (no tests here): a peer node that spins and reads /diagnostics,
stamped headers, a check that boxes lie inside the image. The tiny model file they run is
tiny_model.py's; node processes are started with suhd_ros.ros.processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Header

from suhd_ros.ros.conversions import diagnostic_values


def stamped_header(node: Node, frame_id: str) -> Header:
    return Header(frame_id=frame_id, stamp=node.get_clock().now().to_msg())


class Peer:
    """A test-side node, its executor (which may also spin in-process nodes) and diagnostics."""

    def __init__(self, name: str, *extra_nodes: Node) -> None:
        self.node = Node(name)
        self.executor = SingleThreadedExecutor()
        for node in (self.node, *extra_nodes):
            self.executor.add_node(node)
        self.diagnostics: DiagnosticArray | None = None
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics = msg

    def spin_until(self, done: Callable[[], Any], timeout_s: float = 10.0,
                   every: Callable[[], None] | None = None, every_s: float = 0.25) -> Any:
        """Spin until ``done()`` is truthy and return it; ``every()`` runs every ``every_s``.

        Publishing again in ``every`` covers the first messages DDS drops before discovery.
        """
        deadline = time.monotonic() + timeout_s
        next_every = time.monotonic()
        while time.monotonic() < deadline:
            if every is not None and time.monotonic() >= next_every:
                every()
                next_every = time.monotonic() + every_s
            self.executor.spin_once(timeout_sec=0.02)
            result = done()
            if result:
                return result
        raise TimeoutError(f"condition not met within {timeout_s} s")

    def status(self, concern: str, node: str = "") -> tuple[bytes, str, dict[str, str]] | None:
        """Level, message and values of the newest "<node>: <concern>" status, if any; node
        (a fully qualified name) picks one of several nodes."""
        if self.diagnostics is None:
            return None
        for status in self.diagnostics.status:
            if status.name.endswith(f": {concern}") and status.name.startswith(node):
                return status.level, status.message, diagnostic_values(status)
        return None

    def wait_status(self, concern: str, accept: Callable[[dict[str, str]], bool],
                    timeout_s: float = 10.0, every: Callable[[], None] | None = None,
                    node: str = "") -> tuple[bytes, str, dict[str, str]]:
        """Spin until a diagnostics status for ``concern`` satisfies ``accept(values)``."""
        def ready() -> tuple | None:
            status = self.status(concern, node)
            return status if status is not None and accept(status[2]) else None
        return self.spin_until(ready, timeout_s, every, every_s=0.5)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def boxes_inside(boxes_xyxy: np.ndarray, width: int, height: int, tol: float = 1e-3) -> bool:
    boxes = np.asarray(boxes_xyxy).reshape(-1, 4)
    return bool(np.all(boxes[:, :2] >= -tol) and np.all(boxes[:, 2] <= width + tol)
                and np.all(boxes[:, 3] <= height + tol) and np.all(boxes[:, 2:] >= boxes[:, :2]))



DIAGNOSTICS_PERIOD_NS = 50_000_000


def diagnostics_often(node: Node) -> None:
    """An in-process detector's one timer (1 Hz /diagnostics) at 20 Hz, from now on, so tests
    that wait for what /diagnostics says do not wait for the clock."""
    assert [t.timer_period_ns for t in node.timers] == [1_000_000_000]  # no other timer to speed
    for timer in node.timers:
        timer.timer_period_ns = DIAGNOSTICS_PERIOD_NS
        timer.reset()  # the new period counts from now, not from the next 1 Hz tick

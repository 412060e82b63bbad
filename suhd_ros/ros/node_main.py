"""The nodes' console scripts and shared `main()`: init, spin, and a quiet, complete shutdown.

A signal (Ctrl-C, SIGTERM from launch, systemd or docker) at any moment ends a node with status
0 and no traceback: during the imports (torch takes seconds), during construction (autostart
loads the model there) and while spinning. This module imports nothing heavy at the top, so the
console scripts can catch a signal that arrives while the node's module is still importing.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable
from typing import Any


def detector() -> int:
    """Console script `suhd_detector`."""
    return _run_main_of("suhd_ros.ros.detector_node")


def camera() -> int:
    """Console script `suhd_camera`."""
    return _run_main_of("suhd_ros.ros.camera_node")


def _run_main_of(module: str) -> int:
    """Import the node's module and run its main(); a signal before rclpy takes the signals
    over (SIGTERM made to raise KeyboardInterrupt like SIGINT) means a quiet exit."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt:
        return 0


def run_node(make_node: Callable[[], Any], program: str, args: list[str] | None,
             startup_errors: tuple[type[Exception], ...],
             on_exit: Callable[[Any], None] | None = None) -> int:
    """Spin one node until Ctrl-C or SIGTERM; 2 when it cannot start (the reason on stderr).

    A signal shuts the context down under whatever runs (the constructor, or a callback about
    to publish): that error is part of a normal shutdown, not a crash, so it is not re-raised.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except startup_errors as exc:  # e.g. -p timesteps:=100, out of its range
        if node is not None:
            raise
        print(f"{program}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            if on_exit is not None:
                on_exit(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

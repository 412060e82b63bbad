"""The shared `main()` of the package's nodes: init, spin, and a quiet, complete shutdown."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], program: str, args: list[str] | None,
             startup_errors: tuple[type[Exception], ...],
             on_exit: Callable[[Node], None] | None = None) -> int:
    """Spin one node until Ctrl-C or SIGTERM; 2 when it cannot start (the reason on stderr).

    A signal shuts the context down under a running callback (e.g. a timer about to publish):
    that callback's error is part of a normal shutdown, not a crash, so it is not re-raised.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except startup_errors as exc:  # e.g. -p timesteps:=100, out of its range
        print(f"{program}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if node.context.ok():
            raise
    finally:
        if on_exit is not None:
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0

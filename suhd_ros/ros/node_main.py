"""The nodes' console scripts and shared `main()`: init, spin, and a quiet, complete shutdown.

A signal (Ctrl-C, SIGTERM from launch, systemd or docker) at any moment ends a node with status
0 and no traceback: during the imports (torch takes seconds), during construction (autostart
loads the model there) and while spinning. The console scripts install handlers that only note
the signal, before anything heavy is imported: a KeyboardInterrupt raised inside torch's C++
initialisation aborts the process (SIGABRT), one raised under Python's import lock can be
swallowed, leaving the node running, and a context shut down under the constructor fails the
configure with errors. So signals are only noted until the node is built; then a noted one
ends the process, and later ones reach rclpy's handlers, which end `spin`.
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


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # signals noted while nothing could act on them yet


def _note(signum: int, _frame: Any) -> None:
    _received.append(signum)


def _run_main_of(module: str) -> int:
    """Import the node's module and run its main(), with signals noted rather than raised."""
    for sig in _SIGNALS:
        signal.signal(sig, _note)
    main = importlib.import_module(module).main
    return 0 if _received else main()


def run_node(make_node: Callable[[], Any], program: str, args: list[str] | None,
             startup_errors: tuple[type[Exception], ...],
             on_exit: Callable[[Any], None] | None = None) -> int:
    """Spin one node until Ctrl-C or SIGTERM; 2 when it cannot start (the reason on stderr).

    A signal shuts the context down under a running callback (e.g. a timer about to publish):
    that callback's error is part of a normal shutdown, not a crash, so it is not re-raised.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions, install_signal_handlers

    noting = signal.getsignal(signal.SIGINT) is _note  # started by a console script above
    rclpy.init(args=args, signal_handler_options=(
        SignalHandlerOptions.NO if noting else SignalHandlerOptions.ALL))
    node = None
    try:
        if not _received:
            node = make_node()
        if noting:
            install_signal_handlers(SignalHandlerOptions.ALL)  # they chain to _note
        if not _received:  # checked after installing: no signal falls between the two
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

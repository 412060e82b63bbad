"""Approximate-time matching of side streams (depth, camera_info) to a colour frame's stamp.

message_filters is not installable from PyPI, and the node needs less than its synchronizer:
the colour frame drives, and for it we want the side message whose stamp is nearest, within a
window. Each stream keeps its last few messages in a bounded queue (newest last); a lookup
takes the nearest one within ``window_ns`` and never waits, so a late depth image costs that
frame its 3D output, never latency. Plain Python, no ROS: callers pass stamps in nanoseconds.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class StampQueue(Generic[T]):
    """The last ``depth`` messages of one stream with their stamps; thread-safe."""

    def __init__(self, depth: int, window_ns: int) -> None:
        if depth < 1 or window_ns < 0:
            raise ValueError(f"depth must be >= 1 and window_ns >= 0, got {depth}, {window_ns}")
        self.window_ns = window_ns
        self._items: deque[tuple[int, T]] = deque(maxlen=depth)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, message: T) -> None:
        """Keep a message; the oldest one goes when the queue is full."""
        with self._lock:
            self._items.append((stamp_ns, message))

    def nearest(self, stamp_ns: int) -> T | None:
        """The message whose stamp is nearest to ``stamp_ns`` within the window, else None.

        On a tie the newer message wins (a re-sent or corrected message replaces the old one).
        """
        with self._lock:
            best: tuple[int, T] | None = None
            for stamp, message in self._items:
                gap = abs(stamp - stamp_ns)
                if gap <= self.window_ns and (best is None or gap <= best[0]):
                    best = (gap, message)
        return None if best is None else best[1]

    def newest(self) -> T | None:
        """The last message received, whatever its stamp."""
        with self._lock:
            return self._items[-1][1] if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

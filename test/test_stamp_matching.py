"""The approximate-time matcher: nearest stamp within the window, bounded queue, threads."""

from __future__ import annotations

import threading

import pytest

from suhd_ros.stamp_matching import StampQueue

MS = 1_000_000


def test_nearest_within_the_window() -> None:
    queue: StampQueue[str] = StampQueue(depth=5, window_ns=10 * MS)
    for t in (0, 33, 66, 100):
        queue.add(t * MS, f"depth{t}")
    assert queue.nearest(34 * MS) == "depth33"
    assert queue.nearest(60 * MS) == "depth66"
    assert queue.nearest(110 * MS) == "depth100"
    assert queue.nearest(111 * MS) is None  # 11 ms from the nearest: outside the window
    assert queue.nearest(-20 * MS) is None


def test_the_queue_is_bounded_and_keeps_the_newest() -> None:
    queue: StampQueue[int] = StampQueue(depth=3, window_ns=0)
    for t in range(10):
        queue.add(t, t)
    assert queue.nearest(6) is None  # dropped
    assert [queue.nearest(t) for t in (7, 8, 9)] == [7, 8, 9]
    assert queue.newest() == 9
    queue.clear()
    assert queue.newest() is None and queue.nearest(9) is None


def test_a_tie_goes_to_the_newer_message() -> None:
    queue: StampQueue[str] = StampQueue(depth=4, window_ns=5)
    queue.add(10, "first")
    queue.add(10, "resent")
    queue.add(0, "early")
    queue.add(20, "late")
    assert queue.nearest(10) == "resent"
    assert queue.nearest(15) == "late"  # 5 from both "resent" and "late"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        StampQueue(depth=0, window_ns=1)
    with pytest.raises(ValueError, match="window_ns >= 0"):
        StampQueue(depth=1, window_ns=-1)


def test_adding_from_one_thread_while_another_looks_up() -> None:
    queue: StampQueue[int] = StampQueue(depth=8, window_ns=0)
    found: list[int | None] = []

    def writer() -> None:
        for t in range(20000):
            queue.add(t, t)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        found.append(queue.newest())
    thread.join()
    assert queue.nearest(19999) == 19999
    assert all(v is None or 0 <= v < 20000 for v in found)

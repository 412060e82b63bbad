"""Test-wide ROS 2 environment: localhost-only discovery, a domain id per run, logs in build/."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy

from tiny_model import make_snn_file

REPO = Path(__file__).resolve().parent.parent

# Each test run gets its own DDS domain so parallel runs never see each other; child processes
# inherit it. Domain ids 1..101 are valid on every platform with default port settings.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOG_DIR", str(REPO / "build" / "ros_log"))
os.environ.setdefault("ROS_HOME", str(REPO / "build" / "ros_home"))


@pytest.fixture(scope="module")
def ros() -> Iterator[None]:
    """An rclpy context for a test module (use with pytestmark = usefixtures("ros"))."""
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny converted model file (random weights: plumbing only, never accuracy)."""
    return make_snn_file(tmp_path_factory.mktemp("model"))

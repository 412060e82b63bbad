"""Test-wide ROS 2 environment: localhost-only discovery, a domain id per run, logs in build/."""

from __future__ import annotations

import os
import random
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Each test run gets its own DDS domain so parallel runs never see each other; child processes
# inherit it. Domain ids 1..101 are valid on every platform with default port settings.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOG_DIR", str(REPO / "build" / "ros_log"))
os.environ.setdefault("ROS_HOME", str(REPO / "build" / "ros_home"))

"""The package's Fast DDS profile for camera-sized images (see config/fastdds_large_images.xml).

Fast DDS reads the profile file named by an environment variable when a process creates its
first participant, so it must be set before `rclpy.init()`, in every process that publishes or
subscribes to the images. The launch file does this for the nodes it starts.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from suhd_ros.paths import share_dir

# Kilted and Jazzy's Fast DDS read the first name, Humble's the second
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def profile_path() -> Path:
    return share_dir() / "config" / "fastdds_large_images.xml"


def use_package_profile(environ: MutableMapping[str, str] = os.environ) -> str:
    """Point both variables at the package's profile unless one is set; the profile in use."""
    current = next((environ[v] for v in PROFILE_VARIABLES if environ.get(v)), None)
    chosen = current or str(profile_path())
    for name in PROFILE_VARIABLES:
        environ.setdefault(name, chosen)
    return chosen

"""The package's Fast DDS profile for camera-sized images (see config/fastdds_large_images.xml).

Fast DDS reads the profile file named by an environment variable when a process creates its
first participant, so it must be set before `rclpy.init()`, in every process that publishes or
subscribes to the images. The launch file, the demo and the benchmarks set it through here.

Which variable: Fast DDS 2.x (Humble, Iron, Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE;
Fast DDS 3.x (Kilted, Rolling) reads FASTDDS_DEFAULT_PROFILES_FILE and logs a deprecation
warning from every node when the old name is set. So exactly one is set, chosen by ROS_DISTRO,
and the other one is removed (a profile found under it is carried over to the right name).
A variable set to the empty string counts as unset, everywhere.

With the package's profile, RMW_FASTRTPS_USE_QOS_FROM_XML=1 is set too (unless already set), so
that rmw_fastrtps takes the profile's DYNAMIC history memory policy instead of its own
PREALLOCATED_WITH_REALLOC, under which every history slot keeps the largest sample it ever held
(measured: one 8000x8000 rgb8 frame left the node 198 MB larger for good; with DYNAMIC, 14 MB).
Publication mode then is Fast DDS's default, synchronous (rmw_fastrtps's own default since Iron).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from suhd_ros.paths import share_dir

FASTDDS_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"  # Fast DDS >= 3.0
FASTRTPS_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2.x
PROFILE_VARIABLES = (FASTDDS_VARIABLE, FASTRTPS_VARIABLE)
FAST_DDS_2_DISTROS = frozenset({"humble", "iron", "jazzy"})
QOS_FROM_XML_VARIABLE = "RMW_FASTRTPS_USE_QOS_FROM_XML"


def profile_path() -> Path:
    return share_dir() / "config" / "fastdds_large_images.xml"


def profile_variable(environ: Mapping[str, str] = os.environ) -> str:
    """The variable this distro's Fast DDS reads; no ROS_DISTRO (e.g. the PyPI wheels, which
    are Kilted) or an unknown one means a newer distro, hence Fast DDS 3."""
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    return FASTRTPS_VARIABLE if distro in FAST_DDS_2_DISTROS else FASTDDS_VARIABLE


def user_profile(environ: Mapping[str, str] = os.environ) -> str | None:
    """A profile already chosen in the environment under either name, else None."""
    return next((environ[v] for v in PROFILE_VARIABLES if environ.get(v, "").strip()), None)


def profile_environment(requested: str = "",
                        environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """What to set for the nodes to start: {this distro's variable: profile}, plus {the other
    name: None} (to unset) where the environment has it. The profile is `requested` if not
    empty, else the one already in the environment, else the package's (which comes with
    RMW_FASTRTPS_USE_QOS_FROM_XML=1 unless that is set already: see the module's docstring)."""
    profile = requested.strip() or user_profile(environ) or str(profile_path())
    chosen = profile_variable(environ)
    memory = {QOS_FROM_XML_VARIABLE: "1"} if (
        profile == str(profile_path()) and QOS_FROM_XML_VARIABLE not in environ) else {}
    return {chosen: profile} | memory | {name: None for name in PROFILE_VARIABLES
                                         if name != chosen and name in environ}


def use_package_profile(environ: MutableMapping[str, str] = os.environ) -> str:
    """Change this process's environment as `profile_environment` says; the profile in use."""
    for name, value in profile_environment("", environ).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ[profile_variable(environ)]

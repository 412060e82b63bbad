"""`make demo`: until the detector node lands, prove the ROS 2 environment end to end."""

from __future__ import annotations

import sys

from suhd_ros.tools.dds_check import run_check


def main(argv: list[str] | None = None) -> int:
    print("suhd demo: the detector node is not there yet; checking ROS 2 between two processes")
    return 0 if run_check() else 1


if __name__ == "__main__":
    sys.exit(main())

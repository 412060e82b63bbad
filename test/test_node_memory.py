"""One huge frame does not leave the node holding its size in memory for good.

Under rmw_fastrtps's own history memory policy (PREALLOCATED_WITH_REALLOC) the subscription's
history slot keeps the largest sample it ever received: one 8000 x 8000 rgb8 frame (192 MB) left
the node ~198 MB larger for the rest of its life. The environment the launch file gives the
nodes (suhd_ros.ros.fastdds) makes Fast DDS free each sample once taken.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.ros.fastdds import PROFILE_VARIABLES, QOS_FROM_XML_VARIABLE, use_package_profile
from suhd_ros.ros.processes import start_node, stop_node

from ros_peer import Peer, stamped_header

pytestmark = pytest.mark.usefixtures("ros")
NAMESPACE = "/memory_probe"
HUGE_SIDE = 8000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _frame(peer: Peer, height: int, width: int) -> Image:
    return Image(header=stamped_header(peer.node, "camera"), height=height, width=width,
                 encoding="rgb8", step=width * 3, data=bytes(height * width * 3))


def test_node_memory_returns_after_a_huge_frame(model_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in (*PROFILE_VARIABLES, QOS_FROM_XML_VARIABLE)}
    use_package_profile(env)  # what the launch file does
    node = start_node("detector_node", tmp_path / "node.log", NAMESPACE,
                      {"model_path": str(model_path), "energy_every_n": 0}, env=env)
    peer = Peer("memory_probe_peer")
    received: list[int] = []
    peer.node.create_subscription(Detection2DArray, f"{NAMESPACE}/detections",
                                  lambda _msg: received.append(1), 10)
    publisher = peer.node.create_publisher(Image, f"{NAMESPACE}/image", 1)
    small = _frame(peer, 96, 128)

    def detections_after(count: int, timeout_s: float) -> None:
        target = len(received) + count
        peer.spin_until(lambda: len(received) >= target, timeout_s,
                        every=lambda: publisher.publish(small), every_s=0.1)

    try:
        detections_after(5, 60.0)
        before = _rss_mb(node.pid)
        huge = _frame(peer, HUGE_SIDE, HUGE_SIDE)
        publisher.publish(huge)
        del huge
        detections_after(20, 120.0)  # the huge frame has been received (or lost) and released
        grown = _rss_mb(node.pid) - before
    finally:
        stop_node(node)
        peer.close()
    assert grown < 64, f"the node kept {grown:.0f} MB after one {HUGE_SIDE}^2 frame; log: " \
                       f"{(tmp_path / 'node.log').read_text()[-800:]}"

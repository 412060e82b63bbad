"""Send one vision_msgs/Detection2DArray between two OS processes over real DDS and check it.

Run without arguments: it starts a publisher process, receives its message, compares it with the
expected one and says so. It proves the ROS 2 environment (rclpy, Fast DDS, vision_msgs) works.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

TOPIC = "/suhd/dds_check"
QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def sample_detections() -> Detection2DArray:
    """A fixed message with every nested field set, so a wrong layout cannot pass unnoticed."""
    msg = Detection2DArray()
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = 1_700_000_000
    msg.header.stamp.nanosec = 123_456_789
    for i in range(3):
        det = Detection2D()
        det.header = msg.header
        det.id = f"track-{i}"
        det.bbox.center.position.x = 100.5 + i
        det.bbox.center.position.y = 50.25 * (i + 1)
        det.bbox.size_x = 20.0 + i
        det.bbox.size_y = 40.0 - i
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(i)
        hyp.hypothesis.score = 0.5 + 0.1 * i
        hyp.pose.pose.position.x = float(i)
        hyp.pose.covariance[0] = 0.25
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


def publish(hold_s: float) -> None:
    """Publish the sample once (transient local) and stay alive so a late subscriber gets it."""
    rclpy.init()
    node = Node("suhd_dds_check_publisher")
    pub = node.create_publisher(Detection2DArray, TOPIC, QOS)
    pub.publish(sample_detections())
    deadline = time.monotonic() + hold_s
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # the receiving side ends us with SIGTERM once it has the message
    node.destroy_node()
    rclpy.try_shutdown()


def receive(timeout_s: float) -> Detection2DArray | None:
    """Wait for one Detection2DArray on the check topic."""
    rclpy.init()
    node = Node("suhd_dds_check_subscriber")
    received: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, TOPIC, received.append, QOS)
    deadline = time.monotonic() + timeout_s
    while not received and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return received[0] if received else None


def run_check(timeout_s: float = 15.0) -> bool:
    """Start a publisher process, receive its message here, compare. True when it arrived intact."""
    publisher = subprocess.Popen(
        [sys.executable, "-m", "suhd_ros.tools.dds_check", "--publish", "--hold", str(timeout_s)]
    )
    try:
        msg = receive(timeout_s)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    if msg is None:
        print(f"dds_check: no Detection2DArray from process {publisher.pid} in {timeout_s} s")
        return False
    intact = msg == sample_detections()
    state = "intact" if intact else "CHANGED in transit"
    print(
        f"dds_check: received a Detection2DArray with {len(msg.detections)} detections "
        f"from process {publisher.pid} over DDS: {state}"
    )
    return intact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publish", action="store_true", help="be the publisher process")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds to wait (default 15)")
    args = parser.parse_args(argv)
    if args.publish:
        publish(args.hold)
        return 0
    return 0 if run_check(args.hold) else 1


if __name__ == "__main__":
    sys.exit(main())

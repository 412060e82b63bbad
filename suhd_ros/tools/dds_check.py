"""Check DDS between two OS processes: one Detection2DArray intact, or camera frames delivered.

Run without arguments: it starts a publisher process, receives its message, compares it with the
expected one and says so. It proves the ROS 2 environment (rclpy, Fast DDS, vision_msgs) works.

With --images WxH it measures what a camera needs instead: the share of best-effort rgb8 frames
at --rate that reach a subscriber in another process. Fast DDS's default transports lose most
640x480 frames; config/fastdds_large_images.xml (FASTDDS_ / FASTRTPS_DEFAULT_PROFILES_FILE, the
name this distro's Fast DDS reads) fixes that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from suhd_ros.ros.fastdds import profile_variable, user_profile

TOPIC = "/suhd/dds_check"
IMAGE_TOPIC = "/suhd/dds_check/image"
QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
FRAMES_NEEDED = 0.9  # share of the frames that must arrive for the image check to pass


def image_qos(depth: int) -> QoSProfile:
    """Best effort as camera subscribers use it; the depth keeps every frame that arrives, so
    only frames lost in transport count as lost."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


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


def publish_images(count: int, size: tuple[int, int], rate_hz: float, wait_s: float) -> None:
    """Wait for the subscriber, then publish `count` rgb8 frames at `rate_hz`, numbered."""
    rclpy.init()
    node = Node("suhd_dds_check_camera")
    pub = node.create_publisher(Image, IMAGE_TOPIC, image_qos(1))
    width, height = size
    msg = Image(width=width, height=height, encoding="rgb8", step=3 * width)
    msg.data = np.random.default_rng(0).integers(0, 256, 3 * width * height, np.uint8).tobytes()
    deadline = time.monotonic() + wait_s
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # discovery settles both ways
    start = time.monotonic()
    for i in range(count):
        msg.header.frame_id = str(i)
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) / rate_hz - time.monotonic()))
    time.sleep(1.0)  # the last frames are read from our segment before it goes
    node.destroy_node()
    rclpy.try_shutdown()


def receive_images(count: int, camera: subprocess.Popen, timeout_s: float) -> set[int]:
    """The numbers of the frames that arrived, until all did, the camera process ended (it
    does once it has sent them all) or timeout_s passed."""
    rclpy.init()
    node = Node("suhd_dds_check_receiver")
    arrived: set[int] = set()
    node.create_subscription(Image, IMAGE_TOPIC, lambda msg: arrived.add(int(msg.header.frame_id)),
                             image_qos(count))
    deadline = time.monotonic() + timeout_s
    while len(arrived) < count and camera.poll() is None and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for _ in range(20):  # frames still queued here when the camera ended
        rclpy.spin_once(node, timeout_sec=0.01)
    node.destroy_node()
    rclpy.shutdown()
    return arrived


def run_image_check(size: tuple[int, int], count: int, rate_hz: float,
                    timeout_s: float = 15.0) -> bool:
    """A camera process publishes frames, this one counts them. True when enough arrived."""
    camera = subprocess.Popen(
        [sys.executable, "-m", "suhd_ros.tools.dds_check", "--publish",
         "--images", f"{size[0]}x{size[1]}", "--count", str(count), "--rate", str(rate_hz),
         "--hold", str(timeout_s)])
    try:
        arrived = receive_images(count, camera, timeout_s + count / rate_hz)
    finally:
        camera.terminate()
        camera.wait(timeout=10)
    share = len(arrived) / count
    profile = user_profile() or "none"
    print(f"dds_check: {len(arrived)} of {count} {size[0]}x{size[1]} rgb8 frames at "
          f"{rate_hz:g} Hz arrived best effort ({share:.0%}); Fast DDS profile: {profile}")
    if share < FRAMES_NEEDED:
        print(f"dds_check: frames are lost in transport; for Fast DDS set {profile_variable()} "
              "to the package's config/fastdds_large_images.xml in the camera's and the "
              "detector's environment")
    return share >= FRAMES_NEEDED


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


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
    parser.add_argument("--images", type=_size, metavar="WxH",
                        help="check camera frames of this size instead, e.g. 640x480")
    parser.add_argument("--count", type=int, default=150, help="frames to send (default 150)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    args = parser.parse_args(argv)
    if args.publish and args.images:
        publish_images(args.count, args.images, args.rate, args.hold)
        return 0
    if args.publish:
        publish(args.hold)
        return 0
    if args.images:
        return 0 if run_image_check(args.images, args.count, args.rate, args.hold) else 1
    return 0 if run_check(args.hold) else 1


if __name__ == "__main__":
    sys.exit(main())

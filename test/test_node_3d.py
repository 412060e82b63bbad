"""suhd_detector with tracker and depth, in-process over real DDS (the tiny model).

Colour frames, aligned 16UC1 depth and camera_info in; out: Detection2D ids stable across
frames, Detection3DArray in the colour frame and stamp whose ids and centres follow the 2D
boxes and the depth, markers per object, and a /diagnostics 3D status that warns while
camera_info is missing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from test_depth_inputs import _compressed_depth
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from suhd_ros.geometry import Intrinsics, project
from suhd_ros.ros.conversions import rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer

pytestmark = pytest.mark.usefixtures("ros")

torch.set_num_threads(1)

NS = "/node3d"
WIDTH, HEIGHT = 96, 72
K = Intrinsics(fx=80.0, fy=80.0, cx=47.5, cy=35.5, width=WIDTH, height=HEIGHT)
DEPTH_MM = 2500
Key = tuple[int, int]


def _key(header: Header) -> Key:
    return header.stamp.sec, header.stamp.nanosec


class Streams:
    """The peer's publishers and what came back, keyed by stamp."""

    def __init__(self, peer: Peer) -> None:
        node = peer.node
        self.image = node.create_publisher(Image, f"{NS}/image", 10)
        self.depth = node.create_publisher(Image, f"{NS}/depth/image", 10)
        self.info = node.create_publisher(CameraInfo, f"{NS}/camera_info", 10)
        self.d2: dict[Key, Detection2DArray] = {}
        self.d3: dict[Key, Detection3DArray] = {}
        self.markers: list[MarkerArray] = []
        node.create_subscription(Detection2DArray, f"{NS}/detections",
                                 lambda m: self.d2.setdefault(_key(m.header), m), 10)
        node.create_subscription(Detection3DArray, f"{NS}/detections_3d",
                                 lambda m: self.d3.setdefault(_key(m.header), m), 10)
        node.create_subscription(MarkerArray, f"{NS}/markers", self.markers.append, 10)
        self.rgb = generate_scene(3, WIDTH, HEIGHT).image

    def send(self, sec: int, with_depth: bool = True) -> Header:
        header = Header(frame_id="colour_optical", stamp=Time(sec=sec, nanosec=0))
        if with_depth:
            depth = np.full((HEIGHT, WIDTH), DEPTH_MM, np.uint16)
            depth[:, :4] = 0  # a strip of holes
            self.depth.publish(Image(header=Header(frame_id="depth_optical", stamp=header.stamp),
                                     height=HEIGHT, width=WIDTH, encoding="16UC1", step=2 * WIDTH,
                                     data=depth.tobytes()))
            self.info.publish(CameraInfo(header=header, width=WIDTH, height=HEIGHT, k=K.k()))
        self.image.publish(rgb_to_image(self.rgb, header))
        return header


@pytest.fixture(scope="module")
def streams(model_path: Path) -> Iterator[tuple[Peer, Streams]]:
    node = SuhdDetectorNode(namespace=NS, parameter_overrides=[
        Parameter(name, value=value) for name, value in {
            "model_path": str(model_path), "device": "cpu", "score_threshold": 0.0,
            "max_detections": 5, "tracker": "bytetrack", "track_threshold": 0.0,
            "depth": True, "qos_reliability": "reliable"}.items()])
    peer = Peer("node3d_peer", node)
    try:
        yield peer, Streams(peer)
    finally:
        peer.close()
        node.release_all()
        node.destroy_node()


def test_without_camera_info_no_3d_and_a_warning(streams: tuple[Peer, Streams]) -> None:
    peer, s = streams
    peer.spin_until(lambda: (1, 0) in s.d3, every=lambda: s.send(1, with_depth=False))
    assert len(s.d3[(1, 0)].detections) == 0
    level, message, _ = peer.wait_status("3D", lambda v: v["frames without camera info"] != "0")
    assert level == DiagnosticStatus.WARN and "no camera_info received" in message


def test_ids_are_stable_and_3d_follows_the_2d_boxes(streams: tuple[Peer, Streams]) -> None:
    peer, s = streams
    stamps = list(range(10, 16))
    for sec in stamps:  # the same picture at six stamps: the same objects, the same ids
        peer.spin_until(lambda sec=sec: (sec, 0) in s.d3 and (sec, 0) in s.d2,
                        every=lambda sec=sec: s.send(sec))
    ids = [[d.id for d in s.d2[(sec, 0)].detections] for sec in stamps]
    tracked = [i for i in ids[-1] if i]
    assert tracked and ids[-1] == ids[-2] == ids[-3]
    assert len(set(tracked)) == len(tracked)
    last = s.d3[(stamps[-1], 0)]
    assert last.header.frame_id == "colour_optical" and _key(last.header) == (stamps[-1], 0)
    flat = s.d2[(stamps[-1], 0)].detections
    assert len(last.detections) == len(flat)  # the depth is valid everywhere
    for detection, d2 in zip(last.detections, flat, strict=True):
        assert detection.header == last.header and detection.id == d2.id
        p = detection.bbox.center.position
        assert p.z == pytest.approx(DEPTH_MM / 1000.0)
        u, v = project((p.x, p.y, p.z), K)
        assert (u, v) == pytest.approx((d2.bbox.center.position.x, d2.bbox.center.position.y),
                                       abs=1e-3)
        assert detection.results[0].hypothesis == d2.results[0].hypothesis
    boxes = [m for m in s.markers[-1].markers if m.ns == "suhd_boxes"]
    assert len(boxes) == len(flat) and {int(i) for i in tracked} <= {m.id for m in boxes}
    _, _, values = peer.wait_status("3D", lambda v: int(v["objects 3d"]) > 0)
    assert int(values["frames 3d"]) >= len(stamps)


def test_compressed_depth_transport(model_path: Path) -> None:
    """depth_transport compressedDepth: the node reads image_transport's compressed depth on
    'depth/image/compressedDepth' and locates the objects at its depth."""
    ns = "/node3d_compressed"
    node = SuhdDetectorNode(namespace=ns, parameter_overrides=[
        Parameter(name, value=value) for name, value in {
            "model_path": str(model_path), "device": "cpu", "score_threshold": 0.0,
            "max_detections": 5, "depth": True, "depth_transport": "compressedDepth",
            "qos_reliability": "reliable"}.items()])
    peer = Peer("node3d_compressed_peer", node)
    try:
        image = peer.node.create_publisher(Image, f"{ns}/image", 10)
        depth = peer.node.create_publisher(CompressedImage, f"{ns}/depth/image/compressedDepth",
                                           10)
        info = peer.node.create_publisher(CameraInfo, f"{ns}/camera_info", 10)
        located: list[Detection3DArray] = []
        peer.node.create_subscription(
            Detection3DArray, f"{ns}/detections_3d",
            lambda m: located.append(m) if m.detections else None, 10)
        rgb = generate_scene(3, WIDTH, HEIGHT).image

        seconds = itertools.count(21)

        def send() -> None:
            sec = next(seconds)
            header = Header(frame_id="colour_optical", stamp=Time(sec=sec, nanosec=0))
            depth.publish(_compressed_depth(np.full((HEIGHT, WIDTH), DEPTH_MM, np.uint16),
                                            "16UC1", ms=sec * 1000))
            info.publish(CameraInfo(header=header, width=WIDTH, height=HEIGHT, k=K.k()))
            image.publish(rgb_to_image(rgb, header))

        peer.spin_until(lambda: bool(located), every=send)
        assert located[0].detections[0].bbox.center.position.z == pytest.approx(DEPTH_MM / 1000)
    finally:
        peer.close()
        node.release_all()
        node.destroy_node()

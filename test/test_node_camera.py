"""suhd_camera: the scenes it publishes, their ground truth and headers, video playback, and the
moving sequence with depth, camera_info and 3D truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

from suhd_ros.geometry import Intrinsics, project
from suhd_ros.ros.camera_node import SuhdCameraNode
from suhd_ros.ros.conversions import image_to_rgb, msg_to_detections
from suhd_ros.ros.depth_inputs import depth_image_to_metres
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer

pytestmark = pytest.mark.usefixtures("ros")

WIDTH, HEIGHT, SEED = 96, 64, 4242


@contextmanager
def _camera(namespace: str, **parameters) -> Iterator[Peer]:
    """A camera node with ``parameters`` and a peer that spins it."""
    camera = SuhdCameraNode(namespace=namespace, parameter_overrides=[
        Parameter(name, value=value) for name, value in parameters.items()])
    peer = Peer(f"{namespace.strip('/')}_peer", camera)
    try:
        yield peer
    finally:
        peer.close()
        camera.destroy_node()


def _collect(peer: Peer, message_type: type, topic: str, count: int) -> list:
    received: list = []
    peer.node.create_subscription(message_type, topic, received.append, 10)
    peer.spin_until(lambda: len(received) >= count)
    return received


def test_scenes_come_with_ground_truth_under_the_same_header() -> None:
    with _camera("/cam_test", rate=20.0, width=WIDTH, height=HEIGHT, seed=SEED, encoding="bgr8",
                 frame_id="test_optical_frame") as peer:
        first, *rest = _check_scenes(peer)  # discovery may cost the first frames
        assert rest == [first + 1, first + 2]


def test_replayed_scenes_loop_with_their_ground_truth() -> None:
    with _camera("/cam_test", rate=20.0, width=WIDTH, height=HEIGHT, seed=SEED, encoding="bgr8",
                 frame_id="test_optical_frame", replay_scenes=2) as peer:
        first, *rest = _check_scenes(peer, count=5)
        assert rest == [(first + k) % 2 for k in range(1, 5)]


def _check_scenes(peer: Peer, count: int = 3) -> list[int]:
    """Which scenes the first ``count`` images were, each checked against its ground truth."""
    truths = {}
    peer.node.create_subscription(Detection2DArray, "/cam_test/image/ground_truth",
                                  lambda m: truths.setdefault(m.header.stamp.nanosec, m), 10)
    images = _collect(peer, Image, "/cam_test/image", count)[:count]
    peer.spin_until(lambda: all(i.header.stamp.nanosec in truths for i in images))
    scenes = [generate_scene(SEED + k, WIDTH, HEIGHT) for k in range(10)]
    indices = []
    for image in images:
        assert image.encoding == "bgr8" and image.header.frame_id == "test_optical_frame"
        rgb = image_to_rgb(image)
        index = next(k for k, s in enumerate(scenes) if np.array_equal(s.image, rgb))
        indices.append(index)
        truth = truths[image.header.stamp.nanosec]
        assert truth.header == image.header
        boxes, scores, class_ids = msg_to_detections(truth)
        np.testing.assert_allclose(boxes, scenes[index].boxes_xyxy, atol=1e-4)
        np.testing.assert_array_equal(class_ids, scenes[index].class_ids)
        assert np.all(scores == 1.0)
    publishers = peer.node.get_publishers_info_by_topic("/cam_test/image")
    assert [p.qos_profile.reliability for p in publishers] == [ReliabilityPolicy.RELIABLE]
    return indices


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


VIDEO_FRAMES = [np.full((48, 64, 3), (40 * k, 200 - 40 * k, 90), np.uint8) for k in range(4)]


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    _write_video(path, VIDEO_FRAMES)
    return path


def test_video_file_is_played_in_a_loop(video: Path) -> None:
    with _camera("/video_test", rate=50.0, video_path=str(video)) as peer:
        images = _collect(peer, Image, "/video_test/image", 2 * len(VIDEO_FRAMES) + 1)
        means = [image_to_rgb(m).reshape(-1, 3).mean(axis=0) for m in images]
        assert all((m.width, m.height) == (64, 48) for m in images)
        # MJPEG is lossy: match each frame to the nearest of the flat colours written
        order = [int(np.argmin([np.abs(mean - f[0, 0]).sum() for f in VIDEO_FRAMES]))
                 for mean in means]
        first = order[0]
        assert order == [(first + k) % len(VIDEO_FRAMES) for k in range(len(order))]
        assert peer.node.count_publishers("/video_test/image/ground_truth") == 0


def test_motion_publishes_depth_camera_info_and_both_truths_under_one_header() -> None:
    ns = "/cam_motion"
    streams = {"image": Image, "depth/image": Image, "camera_info": CameraInfo,
               "image/ground_truth": Detection2DArray,
               "image/ground_truth_3d": Detection3DArray}
    with _camera(ns, rate=20.0, width=160, height=120, seed=SEED, motion=True) as peer:
        received: dict[str, dict] = {name: {} for name in streams}
        for name, message_type in streams.items():
            peer.node.create_subscription(
                message_type, f"{ns}/{name}",
                lambda m, name=name: received[name].setdefault(
                    (m.header.stamp.sec, m.header.stamp.nanosec), m), 10)
        common = peer.spin_until(lambda: sorted(set.intersection(
            *(set(r) for r in received.values())))[:3] or None if all(received.values()) else None)
        stamp = common[0]
        info = received["camera_info"][stamp]
        k = Intrinsics.from_k(list(info.k), info.width, info.height)
        depth = depth_image_to_metres(received["depth/image"][stamp])
        assert depth.shape == (120, 160) and np.isfinite(depth).mean() > 0.9
        truth_2d = received["image/ground_truth"][stamp].detections
        truth_3d = received["image/ground_truth_3d"][stamp].detections
        assert [d.id for d in truth_2d] == [d.id for d in truth_3d] and truth_2d
        for d2, d3 in zip(truth_2d, truth_3d, strict=True):
            p = d3.bbox.center.position
            u, v = project((p.x, p.y, p.z), k)
            assert abs(u - d2.bbox.center.position.x) <= d2.bbox.size_x / 2 + 1
            assert abs(v - d2.bbox.center.position.y) <= d2.bbox.size_y / 2 + 1
            assert d3.header.frame_id == "camera_optical_frame"

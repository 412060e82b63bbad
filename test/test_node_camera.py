"""suhd_camera: the scenes it publishes, their ground truth and headers, and video playback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.ros.camera_node import SuhdCameraNode
from suhd_ros.ros.conversions import image_to_rgb, msg_to_detections
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

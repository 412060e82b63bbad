"""The synthetic camera's frames and ground truth written straight to a bag, no ROS running.

The same scenes (``generate_scene(seed + k)``), messages and topics as `suhd_camera` publishes
(suhd_ros/ros/camera_node.py): the image on ``topic`` and its boxes on
``topic/ground_truth``, both with the image's header. The stamps start at a fixed time and
advance at ``rate``, so the same settings write the same bag. JPEG or PNG frames go out as
CompressedImage on ``topic/compressed``, as image_transport names it.

With ``motion`` it writes one moving sequence instead (suhd_ros/synthetic/sequence.py), as the
camera node's ``motion:=true`` publishes it: beside the image, the aligned depth image
(16UC1 millimetres) on ``depth/image`` and ``camera_info`` in the image topic's namespace, the
2D truth with identities in its ids, and the 3D truth on ``topic/ground_truth_3d``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from std_msgs.msg import Header

from suhd_ros.geometry import Box3D
from suhd_ros.ros.bag_detect import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    DETECTIONS,
    DETECTIONS_3D,
    IMAGE,
)
from suhd_ros.ros.bag_io import BagWriter, qos, ros_time
from suhd_ros.ros.conversions import detections_to_msg, rgb_to_compressed, rgb_to_image
from suhd_ros.ros.depth_inputs import camera_info_msg, depth_to_image, detections_3d_to_msg
from suhd_ros.ros.image_encoding import SUPPORTED_ENCODINGS
from suhd_ros.synthetic.scenes import generate_scene, split_seed
from suhd_ros.synthetic.sequence import SceneSequence, SequenceFrame, SequenceStyle

CODECS = ("jpeg", "png")
ENCODINGS = (*SUPPORTED_ENCODINGS, *CODECS)
START_NS = 1_735_689_600 * 10**9  # 2025-01-01 00:00 UTC
CAMERA_QOS = (qos(10),)  # the camera's: reliable, volatile, keep last 10


@dataclass(frozen=True)
class SyntheticSettings:
    """The camera node's parameters, plus how many frames and when the first is stamped."""

    frames: int
    topic: str = "/image"
    width: int = 640
    height: int = 480
    encoding: str = "rgb8"  # one of ENCODINGS
    rate: float = 10.0
    seed: int = split_seed("test", 0)
    frame_id: str = "camera_optical_frame"
    start_ns: int = START_NS
    motion: bool = False  # one moving sequence with depth, camera_info and 3D truth

    @property
    def image_topic(self) -> str:
        return f"{self.topic}/compressed" if self.encoding in CODECS else self.topic

    @property
    def truth_topic(self) -> str:
        return f"{self.topic}/ground_truth"

    @property
    def truth_3d_topic(self) -> str:
        return f"{self.topic}/ground_truth_3d"

    def _beside(self, name: str) -> str:
        """A topic in the image topic's namespace, as the camera node's relative names are."""
        return f"{self.topic.rpartition('/')[0]}/{name}"

    @property
    def depth_topic(self) -> str:
        return self._beside("depth/image")

    @property
    def camera_info_topic(self) -> str:
        return self._beside("camera_info")


def _image(rgb: np.ndarray, header: Header, encoding: str) -> Any:
    if encoding in CODECS:
        return rgb_to_compressed(rgb, header, encoding)
    return rgb_to_image(rgb, header, encoding)


def write_synthetic(writer: BagWriter, settings: SyntheticSettings,
                    progress: Callable[[], Any] | None = None) -> None:
    """Frames 0..frames-1 and their ground truth, at the camera's rate in bag time."""
    if settings.encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, got {settings.encoding!r}")
    if settings.frames < 1 or settings.rate <= 0:
        raise ValueError("frames must be at least 1 and rate above 0")
    image_type = COMPRESSED_IMAGE if settings.encoding in CODECS else IMAGE
    writer.add_topic(settings.image_topic, image_type, CAMERA_QOS)
    writer.add_topic(settings.truth_topic, DETECTIONS, CAMERA_QOS)
    if settings.motion:
        _write_sequence(writer, settings, progress)
        return
    for k in range(settings.frames):
        scene = generate_scene(settings.seed + k, settings.width, settings.height)
        t_ns, header = _stamp(settings, k)
        writer.write(settings.image_topic, t_ns, _image(scene.image, header, settings.encoding))
        writer.write(settings.truth_topic, t_ns, detections_to_msg(
            header, scene.boxes_xyxy, np.ones(len(scene.class_ids)), scene.class_ids))
        if progress:
            progress()


def _stamp(settings: SyntheticSettings, k: int) -> tuple[int, Header]:
    """Frame k's bag time and header."""
    t_ns = settings.start_ns + round(k * 1e9 / settings.rate)
    return t_ns, Header(frame_id=settings.frame_id, stamp=ros_time(t_ns))


def _write_sequence(writer: BagWriter, settings: SyntheticSettings,
                    progress: Callable[[], Any] | None) -> None:
    """The moving sequence: image, depth, camera_info, 2D truth with ids, 3D truth."""
    for topic, msgtype in ((settings.depth_topic, IMAGE), (settings.camera_info_topic,
                                                           CAMERA_INFO),
                           (settings.truth_3d_topic, DETECTIONS_3D)):
        writer.add_topic(topic, msgtype, CAMERA_QOS)
    sequence = SceneSequence(settings.seed, settings.width, settings.height,
                             SequenceStyle(fps=settings.rate))
    for k in range(settings.frames):
        frame = sequence.next_frame()
        t_ns, header = _stamp(settings, k)
        writer.write(settings.image_topic, t_ns, _image(frame.image, header, settings.encoding))
        writer.write(settings.depth_topic, t_ns, depth_to_image(frame.depth_mm, header))
        writer.write(settings.camera_info_topic, t_ns, camera_info_msg(sequence.k, header))
        _write_truth(writer, settings, frame, header, t_ns)
        if progress:
            progress()


def _write_truth(writer: BagWriter, settings: SyntheticSettings, frame: SequenceFrame,
                 header: Header, t_ns: int) -> None:
    ids = [str(t) for t in frame.track_ids.tolist()]
    ones = np.ones(len(ids))
    writer.write(settings.truth_topic, t_ns, detections_to_msg(
        header, frame.boxes_xyxy, ones, frame.class_ids, ids))
    boxes = [Box3D(tuple(c.tolist()), tuple(s.tolist()))
             for c, s in zip(frame.centers_m, frame.sizes_m, strict=True)]
    writer.write(settings.truth_3d_topic, t_ns, detections_3d_to_msg(
        header, boxes, ones, frame.class_ids, ids))

"""The node `suhd_camera`: a camera for tests and demos, with ground truth when it draws scenes.

By default it draws the project's procedural scenes (`generate_scene(seed + frame)`) and
publishes each one's boxes on `image/ground_truth` with the image's header, so a consumer can
score detections frame by frame. With `video_path` or `device_index` it plays a video file or a
V4L2 device through OpenCV instead (no ground truth then). Images go out with the system default
QoS (reliable), as camera drivers do. Note that remapping `image` does not move
`image/ground_truth`: remap both.

With `motion:=true` it films one moving sequence instead (suhd_ros/synthetic/sequence.py): the
same objects move, enter, leave and occlude each other, and it also publishes an aligned depth
image on `depth/image` (16UC1 millimetres), `camera_info` (K of the colour image), the 2D truth
with each object's identity in Detection2D.id, and the 3D truth on `image/ground_truth_3d`
(Detection3DArray: centres and sizes in the optical frame), all with the colour image's header.
"""

from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray

from suhd_ros.geometry import Box3D
from suhd_ros.ros.conversions import detections_to_msg, rgb_to_image
from suhd_ros.ros.depth_inputs import camera_info_msg, depth_to_image, detections_3d_to_msg
from suhd_ros.ros.image_encoding import SUPPORTED_ENCODINGS
from suhd_ros.ros.node_main import run_node
from suhd_ros.ros.parameters import descriptor
from suhd_ros.synthetic.scenes import Scene, generate_scene, split_seed
from suhd_ros.synthetic.sequence import SceneSequence, SequenceFrame, SequenceStyle

CAMERA_QOS = QoSProfile(depth=10)  # reliable, volatile: the system default camera drivers use


class SuhdCameraNode(Node):
    """Publishes synthetic scenes (with ground truth), a video file or a V4L2 device."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("suhd_camera", **kwargs)
        self._declare("rate", 10.0, "frames per second", floats=(0.1, 1000.0))
        self._declare("width", 640, "synthetic image width [px]", ints=(16, 8192))
        self._declare("height", 480, "synthetic image height [px]", ints=(16, 8192))
        self._declare("encoding", "rgb8", f"one of {list(SUPPORTED_ENCODINGS)}")
        self._declare("frame_id", "camera_optical_frame", "header.frame_id of every image")
        self._declare("seed", split_seed("test", 0), "seed of the first synthetic scene; "
                      "frame k shows scene seed + k (default: the benchmark's test split)")
        self._declare("replay_scenes", 0, "draw this many scenes at start and publish them in a "
                      "loop: a camera's CPU cost without the drawing; 0 = draw every frame",
                      ints=(0, 1000))
        self._declare("video_path", "", "play this video file (looping) instead of scenes")
        self._declare("device_index", -1, "open /dev/video<N> instead of scenes; -1 = none",
                      ints=(-1, 255))
        self._declare("motion", False, "film one moving sequence (from seed) with depth, "
                      "camera_info and 3D truth instead of independent scenes")
        self._encoding = self._checked_encoding()
        self._frame = 0
        self._capture = self._open_capture()
        self._replay = [] if self._capture is not None else [
            self._scene(k) for k in range(self._param("replay_scenes"))]
        self._image_pub = self.create_publisher(Image, "image", CAMERA_QOS)
        self._truth_pub = None
        if self._capture is None:
            self._truth_pub = self.create_publisher(
                Detection2DArray, "image/ground_truth", CAMERA_QOS)
        self._sequence: SceneSequence | None = None
        if self._capture is None and self._param("motion"):
            self._sequence = SceneSequence(
                self._param("seed"), self._param("width"), self._param("height"),
                SequenceStyle(fps=self._param("rate")))
            self._depth_pub = self.create_publisher(Image, "depth/image", CAMERA_QOS)
            self._info_pub = self.create_publisher(CameraInfo, "camera_info", CAMERA_QOS)
            self._truth_3d_pub = self.create_publisher(
                Detection3DArray, "image/ground_truth_3d", CAMERA_QOS)
        self.create_timer(1.0 / self._param("rate"), self._publish_frame)

    def _declare(self, name: str, default: Any, description: str, **ranges: Any) -> None:
        """Every camera parameter is read once, at start: read-only."""
        self.declare_parameter(name, default, descriptor(description, read_only=True, **ranges))

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _checked_encoding(self) -> str:
        encoding = self._param("encoding")
        if encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(f"encoding must be one of {list(SUPPORTED_ENCODINGS)}, "
                             f"got {encoding!r}")
        return encoding

    def _open_capture(self) -> cv2.VideoCapture | None:
        """The OpenCV source the parameters name, or None for synthetic scenes."""
        video_path, device_index = self._param("video_path"), self._param("device_index")
        if not video_path and device_index < 0:
            return None
        source = video_path or device_index
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open {source!r}")
        self.get_logger().info(f"publishing frames of {source!r}")
        return capture

    def _read_capture(self) -> np.ndarray | None:
        """The next RGB frame; a video file starts again at its end."""
        ok, bgr = self._capture.read()
        if not ok and self._param("video_path"):
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok:
            self.get_logger().warning("no frame from the capture source",
                                      throttle_duration_sec=5.0)
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _publish_frame(self) -> None:
        header = Header(frame_id=self._param("frame_id"), stamp=self.get_clock().now().to_msg())
        if self._capture is not None:
            rgb = self._read_capture()
            if rgb is not None:
                self._publish_image(rgb, header)
            return
        if self._sequence is not None:
            self._publish_sequence_frame(self._sequence.next_frame(), header)
            return
        scene = (self._replay[self._frame % len(self._replay)] if self._replay
                 else self._scene(self._frame))
        self._frame += 1
        self._publish_image(scene.image, header)
        self._truth_pub.publish(detections_to_msg(
            header, scene.boxes_xyxy, np.ones(len(scene.class_ids)), scene.class_ids))

    def _publish_sequence_frame(self, frame: SequenceFrame, header: Header) -> None:
        """Colour, depth, camera_info and both truths of one moving frame, one header."""
        self._publish_image(frame.image, header)
        self._depth_pub.publish(depth_to_image(frame.depth_mm, header))
        self._info_pub.publish(camera_info_msg(self._sequence.k, header))
        ids = [str(t) for t in frame.track_ids.tolist()]
        ones = np.ones(len(ids))
        self._truth_pub.publish(detections_to_msg(header, frame.boxes_xyxy, ones,
                                                  frame.class_ids, ids))
        boxes = [Box3D(tuple(c.tolist()), tuple(s.tolist()))
                 for c, s in zip(frame.centers_m, frame.sizes_m, strict=True)]
        self._truth_3d_pub.publish(detections_3d_to_msg(header, boxes, ones, frame.class_ids,
                                                        ids))

    def _scene(self, k: int) -> Scene:
        """Synthetic frame k."""
        return generate_scene(self._param("seed") + k, self._param("width"), self._param("height"))

    def _publish_image(self, rgb: np.ndarray, header: Header) -> None:
        try:
            self._image_pub.publish(rgb_to_image(rgb, header, self._encoding))
        except ValueError as exc:  # e.g. yuv422 and an odd-width video: say so, keep running
            self.get_logger().error(f"cannot encode the frame: {exc}", throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        if self._capture is not None:
            self._capture.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """`python -m suhd_ros.ros.camera_node`; the console script `suhd_camera` runs it through
    node_main.camera, which also makes a signal during the imports quiet."""
    return run_node(SuhdCameraNode, "suhd_camera", args, (ValueError,))

if __name__ == "__main__":
    sys.exit(main())

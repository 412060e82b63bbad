"""ROS messages <-> numpy: images, vision_msgs detections and labels, diagnostic values.

The nodes, the demo and the tests all build and read messages through these functions, so the
vision_msgs layout (centre + full size in source-image pixels, ``class_id`` = class index as a
string) is written down once.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from suhd_ros.ros.image_encoding import decode_compressed, decode_image, encode_image


def stamp_ns(header: Header) -> int:
    """The header's stamp in nanoseconds; 0 means the publisher left it unset."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def image_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """Decode either image message to ``H x W x 3`` uint8 RGB; ImageDecodeError says why not."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data)
    return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """An Image message holding ``rgb`` converted to ``encoding``, with ``header``."""
    height, width, encoding, step, data = encode_image(rgb, encoding)
    return Image(
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=step, data=data,
    )


def rgb_to_compressed(rgb: np.ndarray, header: Header, codec: str = "jpeg") -> CompressedImage:
    """A CompressedImage holding ``rgb`` as JPEG or PNG, with the format string
    compressed_image_transport writes ("rgb8; jpeg compressed bgr8")."""
    ok, data = cv2.imencode(".jpg" if codec == "jpeg" else f".{codec}",
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {rgb.shape} image as {codec}")
    return CompressedImage(header=header, format=f"rgb8; {codec} compressed bgr8",
                           data=data.tobytes())


def detections_to_msg(
    header: Header,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    ids: Sequence[str] | None = None,
) -> Detection2DArray:
    """A Detection2DArray: one Detection2D per box, each with one hypothesis and ``header``;
    ``ids`` fills Detection2D.id (the tracker's id, "" when untracked)."""
    msg = Detection2DArray(header=header)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    id_strings = [""] * len(boxes) if ids is None else list(ids)
    for (x1, y1, x2, y2), score, class_id, detection_id in zip(
        boxes.tolist(), np.asarray(scores).tolist(), np.asarray(class_ids).tolist(), id_strings,
        strict=True,
    ):
        detection = Detection2D(header=header, id=detection_id)
        detection.bbox.center.position.x = (x1 + x2) / 2.0
        detection.bbox.center.position.y = (y1 + y2) / 2.0
        detection.bbox.size_x = x2 - x1
        detection.bbox.size_y = y2 - y1
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(int(class_id))
        hypothesis.hypothesis.score = float(score)
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg


def msg_to_detections(msg: Detection2DArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes xyxy ``[K, 4]``, scores ``[K]`` and class ids ``[K]`` of the best hypotheses.

    A detection without hypotheses or with a non-integer ``class_id`` cannot be scored against
    class indices, so it is skipped.
    """
    boxes, scores, class_ids = [], [], []
    for detection in msg.detections:
        if not detection.results:
            continue
        best = max(detection.results, key=lambda r: r.hypothesis.score).hypothesis
        try:
            class_id = int(best.class_id)
        except ValueError:
            continue
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        half_w, half_h = detection.bbox.size_x / 2.0, detection.bbox.size_y / 2.0
        boxes.append([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
        scores.append(best.score)
        class_ids.append(class_id)
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(class_ids, np.int64),
    )


def label_info(header: Header, class_names: Sequence[str], threshold: float) -> LabelInfo:
    """LabelInfo mapping each class index to its name, with the score threshold in use."""
    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=k, class_name=name) for k, name in enumerate(class_names)],
        threshold=float(threshold),
    )


def diagnostic_values(status: DiagnosticStatus) -> dict[str, str]:
    """The status's KeyValues as a dict, for readers of /diagnostics (suhd_ros/ros/diagnostics.py
    writes them)."""
    return {kv.key: kv.value for kv in status.values}

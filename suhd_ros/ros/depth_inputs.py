"""The detector node's optional depth inputs: decoding, matching to the colour frame, counting.

A camera with depth has two more subscriptions, `depth/image` (aligned to the colour image,
16UC1 millimetres or 32FC1 metres) and `camera_info`; their callbacks only queue messages
(suhd_ros/stamp_matching.py). For each colour frame the worker asks DepthInputs.locate for the
objects' 3D boxes: the depth image nearest in stamp within the window, and the newest
camera_info (intrinsics rarely change, and many drivers publish it at a lower rate), checked
against the colour image's size. What is missing or does not fit is a reason string for a
throttled warning and a count in /diagnostics, never an exception out of the worker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from suhd_ros.geometry import Box3D, GeometryError, Intrinsics, boxes_to_3d, depth_in_metres
from suhd_ros.ros.conversions import stamp_ns
from suhd_ros.ros.diagnostics import OK, WARN, diagnostic_status
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.stamp_matching import StampQueue

_DEPTH_TYPES = {"16UC1": np.dtype(np.uint16), "mono16": np.dtype(np.uint16),
                "32FC1": np.dtype(np.float32)}


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """A depth Image as float32 metres, NaN where invalid; ImageDecodeError says why not."""
    return depth_in_metres(depth_image_array(msg))


def depth_image_array(msg: Image) -> np.ndarray:
    """A depth Image's values as they are (uint16 millimetres or float32 metres, native byte
    order), unconverted: 3D converts only the boxes' pixels (geometry.box_to_3d). A view of the
    message's buffer where the byte order is native (a copy of 600 kB per frame saved)."""
    dtype = _DEPTH_TYPES.get(msg.encoding)
    if dtype is None:
        raise ImageDecodeError(f"depth encoding must be one of {list(_DEPTH_TYPES)}, "
                               f"found {msg.encoding!r}")
    row = msg.width * dtype.itemsize
    data = np.frombuffer(msg.data, np.uint8)
    if msg.height <= 0 or msg.width <= 0 or msg.step < row or data.size != msg.step * msg.height:
        raise ImageDecodeError(f"depth image {msg.width}x{msg.height}, step {msg.step}: "
                               f"expected step >= {row} and step x height bytes, "
                               f"found {data.size}")
    rows = data.reshape(msg.height, msg.step)[:, :row]
    byte_order = ">" if msg.is_bigendian else "<"
    return rows.view(dtype.newbyteorder(byte_order)).astype(dtype, copy=False)


def depth_to_image(depth_mm: np.ndarray, header: Header) -> Image:
    """A 16UC1 depth Image (little-endian millimetres, 0 = no value), as a depth camera
    publishes it."""
    height, width = depth_mm.shape
    return Image(header=header, height=height, width=width, encoding="16UC1", is_bigendian=0,
                 step=2 * width, data=np.ascontiguousarray(depth_mm, "<u2").tobytes())


def camera_info_msg(k: Intrinsics, header: Header) -> CameraInfo:
    """The CameraInfo of an ideal pinhole camera (no distortion, P = [K | 0])."""
    matrix = k.k()
    return CameraInfo(header=header, width=k.width, height=k.height,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=matrix,
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[*matrix[:3], 0.0, *matrix[3:6], 0.0, *matrix[6:], 0.0])


# image_transport's compressedDepth plugin: a 12-byte header (int32 format, float32 quantisation
# parameters a, b) before a 16-bit PNG; 16UC1 stores the millimetres, 32FC1 the inverse depth
# quantised (depth = a / (value - b), 0 = no value)
_COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")


def compressed_depth_to_metres(msg: CompressedImage) -> np.ndarray:
    """A compressedDepth CompressedImage ("16UC1; compressedDepth png", or 32FC1) as float32
    metres, NaN where invalid; ImageDecodeError says why not."""
    return depth_in_metres(compressed_depth_array(msg))


def compressed_depth_array(msg: CompressedImage) -> np.ndarray:
    """A compressedDepth image's depths in a form box_to_3d takes: 16UC1's millimetres as they
    are (converted only inside the boxes), 32FC1's inverse depth as metres."""
    encoding, _, kind = (part.strip() for part in msg.format.partition(";"))
    if not kind.startswith("compressedDepth") or encoding not in ("16UC1", "32FC1"):
        raise ImageDecodeError(f"expected a compressedDepth 16UC1 or 32FC1 image, found format "
                               f"{msg.format!r}")
    data = bytes(msg.data)
    if len(data) <= _COMPRESSED_DEPTH_HEADER.size:
        raise ImageDecodeError(f"compressedDepth image of {len(data)} bytes: no PNG after its "
                               "header")
    _, quant_a, quant_b = _COMPRESSED_DEPTH_HEADER.unpack_from(data)
    png = cv2.imdecode(np.frombuffer(data, np.uint8, offset=_COMPRESSED_DEPTH_HEADER.size),
                       cv2.IMREAD_UNCHANGED)
    if png is None or png.dtype != np.uint16 or png.ndim != 2:
        raise ImageDecodeError("compressedDepth image: its payload is not a 16-bit grey PNG")
    if encoding == "16UC1":
        return png
    values = png.astype(np.float32)
    with np.errstate(divide="ignore"):
        metres = np.where(png == 0, np.nan, np.float32(quant_a) / (values - np.float32(quant_b)))
    return metres.astype(np.float32)


def depth_array(msg: Image | CompressedImage) -> np.ndarray:
    """A depth image of either transport (raw Image, compressedDepth) in a form box_to_3d
    takes, unconverted where it can be."""
    if isinstance(msg, CompressedImage):
        return compressed_depth_array(msg)
    return depth_image_array(msg)


# CameraInfo distortion models whose coefficients are OpenCV's k1 k2 p1 p2 [k3 [k4 k5 k6]]
BROWN_CONRADY_MODELS = ("plumb_bob", "rational_polynomial")


def intrinsics_from_info(info: CameraInfo) -> Intrinsics:
    """The intrinsics of a CameraInfo, with its lens distortion (plumb_bob,
    rational_polynomial); GeometryError for an uncalibrated one, or for another model with
    non-zero coefficients (a fisheye's equidistant: rectify the image first)."""
    distortion = [float(c) for c in info.d]
    if any(distortion) and info.distortion_model not in BROWN_CONRADY_MODELS:
        raise GeometryError(f"distortion model {info.distortion_model!r} is not supported "
                            f"(only {', '.join(BROWN_CONRADY_MODELS)}): rectify the colour and "
                            "depth images (image_proc) and use the rectified camera_info")
    return Intrinsics.from_k(list(info.k), info.width, info.height, distortion)


@dataclass
class DepthCounts:
    """Monotonic counters of one camera's 3D output."""

    frames_3d: int = 0  # frames with a matching depth image and camera_info
    frames_without_depth: int = 0
    frames_without_camera_info: int = 0  # missing or not fitting the colour image
    objects_3d: int = 0
    objects_without_depth: int = 0  # too few valid depths inside the box

    def __sub__(self, other: DepthCounts) -> DepthCounts:
        return DepthCounts(**{f.name: getattr(self, f.name) - getattr(other, f.name)
                              for f in fields(self)})


class DepthInputs:
    """One camera's depth and camera_info queues, and the 3D boxes of a frame's detections."""

    def __init__(self, queue_depth: int, window_ns: int) -> None:
        self.depth: StampQueue[Image | CompressedImage] = StampQueue(queue_depth, window_ns)
        self.info: StampQueue[CameraInfo] = StampQueue(1, 0)
        self.counts = DepthCounts()
        self._reported = DepthCounts()
        self.last_problem = ""
        self._info_read: tuple[CameraInfo, Intrinsics] | None = None

    def on_depth(self, msg: Image | CompressedImage) -> None:
        self.depth.add(stamp_ns(msg.header), msg)

    def on_info(self, msg: CameraInfo) -> None:
        self.info.add(stamp_ns(msg.header), msg)

    def _inputs(self, header: Header, size: tuple[int, int]) -> tuple[np.ndarray, Intrinsics]:
        """The frame's depth (metres) and intrinsics; ValueError with the reason if none fit."""
        info = self.info.newest()
        if info is None:
            self.counts.frames_without_camera_info += 1
            raise ValueError("no camera_info received")
        width, height = size
        if (info.width, info.height) != (width, height):
            self.counts.frames_without_camera_info += 1
            raise ValueError(f"camera_info is {info.width}x{info.height} but the colour image "
                             f"is {width}x{height}")
        try:
            k = self._intrinsics(info)
        except GeometryError:
            self.counts.frames_without_camera_info += 1
            raise
        depth = self.depth.nearest(stamp_ns(header))
        if depth is None:
            self.counts.frames_without_depth += 1
            raise ValueError(f"no depth image within {self.depth.window_ns / 1e6:g} ms of the "
                             "colour frame's stamp")
        return depth_array(depth), k

    def _intrinsics(self, info: CameraInfo) -> Intrinsics:
        """The newest camera_info's intrinsics, read once per message (a camera sends the same
        one with every frame)."""
        if self._info_read is None or self._info_read[0] is not info:
            self._info_read = (info, intrinsics_from_info(info))
        return self._info_read[1]

    def locate(self, header: Header, size: tuple[int, int],
               boxes_xyxy: np.ndarray) -> list[Box3D | None] | None:
        """Each box's 3D box (None: too few valid depths), or None when the frame has no usable
        depth / camera_info (then ``last_problem`` says why)."""
        try:
            depth, k = self._inputs(header, size)
            boxes = boxes_to_3d(depth, boxes_xyxy, k)
        except ValueError as exc:  # includes GeometryError and ImageDecodeError
            self.last_problem = str(exc)
            return None
        located = sum(box is not None for box in boxes)
        self.counts.frames_3d += 1
        self.counts.objects_3d += located
        self.counts.objects_without_depth += len(boxes) - located
        return boxes

    def status(self, name: str, topic: str) -> DiagnosticStatus:
        """WARN when frames since the previous report had no usable depth or camera_info."""
        new = self.counts - self._reported
        self._reported = DepthCounts(**{f.name: getattr(self.counts, f.name)
                                        for f in fields(self.counts)})
        missing = new.frames_without_depth + new.frames_without_camera_info
        message = (f"{missing} frames without 3D: {self.last_problem}" if missing else
                   f"{new.objects_3d} objects located, {new.objects_without_depth} without "
                   "enough valid depth")
        values = {"depth topic": topic} | {f.name.replace("_", " "): getattr(self.counts, f.name)
                                           for f in fields(self.counts)}
        return diagnostic_status(name, WARN if missing else OK, message, values)


def detections_3d_to_msg(header: Header, boxes: list[Box3D | None], scores: np.ndarray,
                         class_ids: np.ndarray, ids: list[str]) -> Detection3DArray:
    """A Detection3DArray in the colour image's frame and stamp: one Detection3D per located
    object, with the 2D detection's hypothesis (its pose: the centre) and id."""
    msg = Detection3DArray(header=header)
    for box, score, class_id, track_id in zip(boxes, np.asarray(scores).tolist(),
                                              np.asarray(class_ids).tolist(), ids, strict=True):
        if box is None:
            continue
        # the messages' nested defaults are filled in place: building a Pose and assigning it
        # costs a third more per object
        detection = Detection3D(header=header, id=track_id)
        pose = detection.bbox.center
        pose.position.x, pose.position.y, pose.position.z = box.center
        pose.orientation.w = 1.0
        detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = box.size
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(int(class_id))
        hypothesis.hypothesis.score = float(score)
        hypothesis.pose.pose = pose
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg

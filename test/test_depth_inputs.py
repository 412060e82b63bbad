"""The node's 3D helpers without DDS: depth Image decoding, matching, Detection3DArray, markers."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from suhd_ros.geometry import Box3D, GeometryError, Intrinsics
from suhd_ros.ros.conversions import diagnostic_values
from suhd_ros.ros.depth_inputs import (
    DepthInputs,
    compressed_depth_to_metres,
    depth_image_array,
    depth_image_to_metres,
    detections_3d_to_msg,
    intrinsics_from_info,
)
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.ros.markers import BOX_NS, TEXT_NS, UNTRACKED_BASE, MarkerSet

K = Intrinsics(fx=100.0, fy=100.0, cx=31.5, cy=23.5, width=64, height=48)
MS = 1_000_000


def _header(ms: int, frame_id: str = "cam_optical") -> Header:
    return Header(frame_id=frame_id, stamp=Time(sec=ms // 1000, nanosec=(ms % 1000) * MS))


def _depth_msg(depth: np.ndarray, ms: int, encoding: str, pad: int = 0,
               bigendian: bool = False) -> Image:
    data = depth.astype(depth.dtype.newbyteorder(">" if bigendian else "<"))
    rows = data.view(np.uint8).reshape(depth.shape[0], -1)
    rows = np.pad(rows, ((0, 0), (0, pad)))
    return Image(header=_header(ms), height=depth.shape[0], width=depth.shape[1],
                 encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1],
                 data=rows.tobytes())


def _info(ms: int, width: int = 64, height: int = 48, k: Intrinsics = K) -> CameraInfo:
    return CameraInfo(header=_header(ms), width=width, height=height, k=k.k())


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [6, 3])  # 3: rows start at odd bytes, uint16 unaligned
def test_16uc1_millimetres_with_padding_and_byte_order(bigendian: bool, pad: int) -> None:
    mm = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    msg = _depth_msg(mm, 0, "16UC1", pad=pad, bigendian=bigendian)
    assert np.array_equal(depth_image_array(msg), mm)
    metres = depth_image_to_metres(msg)
    assert np.isnan(metres[0, 0])
    assert metres[47, 63] == pytest.approx(mm[47, 63] / 1000.0)
    assert metres.dtype == np.float32 and metres.shape == (48, 64)


def test_32fc1_metres_and_refusals() -> None:
    depth = np.full((48, 64), 1.25, np.float32)
    depth[0, :3] = (0.0, np.nan, np.inf)
    metres = depth_image_to_metres(_depth_msg(depth, 0, "32FC1"))
    assert np.isnan(metres[0, :3]).all() and metres[1, 1] == pytest.approx(1.25)
    with pytest.raises(ImageDecodeError, match="depth encoding must be one of"):
        depth_image_to_metres(_depth_msg(depth, 0, "rgb8"))
    bad = _depth_msg(depth, 0, "32FC1")
    bad.data = bad.data[:-4]
    with pytest.raises(ImageDecodeError, match="step x height"):
        depth_image_to_metres(bad)


def _compressed_depth(values: np.ndarray, encoding: str, quant_a: float = 0.0,
                      quant_b: float = 0.0, ms: int = 0) -> CompressedImage:
    """What image_transport's compressedDepth plugin publishes: its 12-byte header (format,
    two float32 quantisation parameters) and a 16-bit PNG."""
    ok, png = cv2.imencode(".png", values.astype(np.uint16))
    assert ok
    return CompressedImage(header=_header(ms), format=f"{encoding}; compressedDepth png",
                           data=struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes())


def test_compressed_depth_16uc1_and_32fc1() -> None:
    mm = np.full((48, 64), 1500, np.uint16)
    mm[0, 0] = 0
    metres = compressed_depth_to_metres(_compressed_depth(mm, "16UC1"))
    assert np.isnan(metres[0, 0]) and metres[5, 5] == pytest.approx(1.5)
    # 32FC1: inverse depth quantised as value = a / depth + b (quantisation 100, range 10 m)
    a = 100.0 * 101.0
    b = 1.0 - a / 10.0
    depth = np.full((48, 64), 2.0)
    depth[1, 1] = 4.0
    values = np.rint(a / depth + b)
    values[0, 0] = 0
    metres = compressed_depth_to_metres(_compressed_depth(values, "32FC1", a, b))
    assert np.isnan(metres[0, 0])
    assert metres[5, 5] == pytest.approx(2.0, rel=1e-3) and metres[1, 1] == pytest.approx(4.0,
                                                                                       rel=1e-3)
    with pytest.raises(ImageDecodeError, match="compressedDepth"):
        compressed_depth_to_metres(CompressedImage(format="png", data=b"x" * 20))
    with pytest.raises(ImageDecodeError, match="no PNG"):
        compressed_depth_to_metres(CompressedImage(format="16UC1; compressedDepth", data=b"x"))
    with pytest.raises(ImageDecodeError, match="16-bit grey PNG"):
        compressed_depth_to_metres(CompressedImage(format="16UC1; compressedDepth png",
                                                   data=b"\0" * 12 + b"not a png"))


def test_locate_takes_a_compressed_depth_image() -> None:
    inputs = DepthInputs(queue_depth=4, window_ns=10 * MS)
    inputs.on_info(_info(0))
    inputs.on_depth(_compressed_depth(np.full((48, 64), 2500, np.uint16), "16UC1", ms=100))
    boxes = inputs.locate(_header(100), (64, 48), np.array([[16.0, 12.0, 48.0, 36.0]]))
    assert boxes is not None and boxes[0].center == pytest.approx((0.0, 0.0, 2.5))


def test_locate_matches_depth_by_stamp_and_counts_what_is_missing() -> None:
    inputs = DepthInputs(queue_depth=4, window_ns=10 * MS)
    box = np.array([[16.0, 12.0, 48.0, 36.0]])  # centred: (0, 0, z)
    assert inputs.locate(_header(100), (64, 48), box) is None
    assert "no camera_info" in inputs.last_problem
    inputs.on_info(_info(0))
    for ms, mm in ((70, 1000), (100, 2000), (130, 3000)):
        inputs.on_depth(_depth_msg(np.full((48, 64), mm, np.uint16), ms, "16UC1"))
    boxes = inputs.locate(_header(105), (64, 48), box)  # nearest: the 100 ms image
    assert boxes is not None and boxes[0] is not None
    assert boxes[0].center == pytest.approx((0.0, 0.0, 2.0))
    assert inputs.locate(_header(115), (64, 48), box) is None  # 15 ms from both neighbours
    assert "no depth image within 10 ms" in inputs.last_problem
    assert inputs.locate(_header(100), (320, 240), box) is None
    assert "camera_info is 64x48 but the colour image is 320x240" in inputs.last_problem
    inputs.on_info(_info(0, k=Intrinsics(0.0, 0.0, 0.0, 0.0, 64, 48)))
    assert inputs.locate(_header(100), (64, 48), box) is None
    assert "uncalibrated" in inputs.last_problem
    counts = inputs.counts
    assert (counts.frames_3d, counts.frames_without_depth, counts.frames_without_camera_info,
            counts.objects_3d) == (1, 1, 3, 1)
    status = inputs.status("n: 3D", "/depth/image")
    assert status.level == DiagnosticStatus.WARN and "uncalibrated" in status.message
    assert diagnostic_values(status)["frames without camera info"] == "3"
    # nothing new since that report: OK, and the object without depth is counted
    inputs.on_info(_info(0))
    holes = np.zeros((48, 64), np.uint16)
    inputs.on_depth(_depth_msg(holes, 200, "16UC1"))
    assert inputs.locate(_header(200), (64, 48), box) == [None]
    status = inputs.status("n: 3D", "/depth/image")
    assert status.level == DiagnosticStatus.OK
    assert "1 without enough valid depth" in status.message


def test_detections_3d_keep_the_colour_header_hypotheses_and_ids() -> None:
    header = _header(1234, "colour_optical")
    boxes = [Box3D((0.1, -0.2, 2.0), (0.3, 0.4, 0.05)), None, Box3D((1.0, 0.0, 4.0), (1, 1, 1))]
    msg = detections_3d_to_msg(header, boxes, np.array([0.9, 0.5, 0.7]), np.array([3, 1, 2]),
                               ["7", "", ""])
    assert msg.header == header
    assert [d.id for d in msg.detections] == ["7", ""]
    first = msg.detections[0]
    assert first.header == header
    assert (first.bbox.center.position.x, first.bbox.center.position.z) == (0.1, 2.0)
    assert (first.bbox.size.x, first.bbox.size.y, first.bbox.size.z) == (0.3, 0.4, 0.05)
    assert first.results[0].hypothesis.class_id == "3"
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert first.results[0].pose.pose.position.y == -0.2


def test_markers_show_the_current_objects_and_delete_the_gone_ones() -> None:
    markers = MarkerSet()
    box = Box3D((0.0, 0.0, 2.0), (0.2, 0.2, 0.05))
    first = markers.update(_header(0), [box, box, None], np.array([0, 1, 2]), [5, -1, 6],
                           ["a", "b", "c"])
    added = [(m.ns, m.id, m.type) for m in first.markers]
    assert added == [(BOX_NS, 5, Marker.CUBE), (TEXT_NS, 5, Marker.TEXT_VIEW_FACING),
                     (BOX_NS, UNTRACKED_BASE + 1, Marker.CUBE),
                     (TEXT_NS, UNTRACKED_BASE + 1, Marker.TEXT_VIEW_FACING)]
    assert first.markers[1].text == "a #5 2.00 m"
    assert first.markers[0].header.frame_id == "cam_optical"
    second = markers.update(_header(33), [box], np.array([0]), [5], ["a", "b", "c"])
    actions = [(m.ns, m.id, m.action) for m in second.markers]
    assert actions == [(BOX_NS, 5, Marker.ADD), (TEXT_NS, 5, Marker.ADD),
                       (BOX_NS, UNTRACKED_BASE + 1, Marker.DELETE),
                       (TEXT_NS, UNTRACKED_BASE + 1, Marker.DELETE)]
    assert markers.update(_header(66), [], np.array([]), [], []).markers[0].action == \
        Marker.DELETE


def test_camera_info_distortion_is_used_or_refused_by_model() -> None:
    """plumb_bob / rational_polynomial D is undone before back-projection; a fisheye
    (equidistant) D is refused with the way out, and the frame gets no 3D."""
    info = _info(0)
    info.distortion_model, info.d = "plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0]
    k = intrinsics_from_info(info)
    assert k.distortion == (-0.2, 0.05, 0.0, 0.0, 0.0)
    info.d = [0.0] * 5
    assert intrinsics_from_info(info).distortion == ()
    info.distortion_model, info.d = "equidistant", [0.1, 0.0, 0.0, 0.0]
    with pytest.raises(GeometryError, match=r"'equidistant' is not supported.*rectify"):
        intrinsics_from_info(info)
    inputs = DepthInputs(queue_depth=2, window_ns=10 * MS)
    inputs.on_info(info)
    inputs.on_depth(_depth_msg(np.full((48, 64), 2000, np.uint16), 0, "16UC1"))
    assert inputs.locate(_header(0), (64, 48), np.array([[22.0, 14.0, 42.0, 34.0]])) is None
    assert "equidistant" in inputs.last_problem
    assert inputs.counts.frames_without_camera_info == 1

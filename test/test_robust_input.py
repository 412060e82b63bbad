"""Fuzzing the detector node's input path: hypothesis-made Image and CompressedImage messages go
over DDS to an in-process suhd_detector whose worker thread really runs.

Every message must end as detections carrying its header or as a counted rejection whose reason
is the decoder's; nothing may be counted as an inference error, every received frame must be
accounted for (processed + rejected + dropped), and afterwards a valid frame still comes back.
The overlay is subscribed, so drawing on odd-sized images is fuzzed too.

Long cases: set SUHD_LONG_TESTS=1 for many more examples (default: a fast CI subset).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from suhd_ros.ros.conversions import image_to_rgb, rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.ros.image_encoding import SUPPORTED_ENCODINGS, ImageDecodeError
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer, diagnostics_often

pytestmark = pytest.mark.usefixtures("ros")

torch.set_num_threads(1)

LONG = os.environ.get("SUHD_LONG_TESTS") == "1"
EXAMPLES = 400 if LONG else 40
UINT32_MAX = 2**32 - 1
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.too_slow])


class Target:
    """One node under fuzz, the peer spinning it, and what the peer saw it publish."""

    def __init__(self, model_path: Path, namespace: str, transport: str) -> None:
        self.namespace = namespace
        self.node = SuhdDetectorNode(namespace=namespace, parameter_overrides=[
            Parameter("model_path", value=str(model_path)), Parameter("device", value="cpu"),
            Parameter("score_threshold", value=0.0), Parameter("input_transport", value=transport),
        ])
        diagnostics_often(self.node)
        self.peer = Peer(f"{namespace.strip('/')}_peer", self.node)
        message_type, topic = ((CompressedImage, "image/compressed") if transport == "compressed"
                               else (Image, "image"))
        self.pub = self.peer.node.create_publisher(message_type, f"{namespace}/{topic}",
                                                   QoSProfile(depth=10))
        self.detections: dict[str, Detection2DArray] = {}
        self.peer.node.create_subscription(
            Detection2DArray, f"{namespace}/detections",
            lambda m: self.detections.setdefault(m.header.frame_id, m), 10)
        self.peer.node.create_subscription(Image, f"{namespace}/overlay", lambda m: None, 10)
        self.frame_ids = (f"fuzz{k}" for k in itertools.count())
        self.rejections = self.detected = 0
        self.settled: dict[str, str] | None = None  # figures that account for every frame sent

    def figures(self) -> dict[str, str] | None:
        """The input, output and model figures of the newest /diagnostics message, once every
        frame it counts as received is also counted processed, rejected or dropped."""
        statuses = [self.peer.status(c, node=f"{self.namespace}/suhd_detector")
                    for c in ("input", "output", "device and model")]
        if None in statuses:
            return None
        values = {k: v for _, _, status in statuses for k, v in status.items()}
        accounted = sum(int(values[k]) for k in ("frames processed", "rejected frames",
                                                 "dropped frames"))
        return values if int(values["frames received"]) == accounted else None

    def outcome(self, msg: Image | CompressedImage) -> tuple[str, str]:
        """Publish until /diagnostics accounts for the frame: ("detected", "") or ("rejected",
        the reason it reports). Published again only after 3 s without it (lost before DDS
        discovery), so no copy of one frame lands in the next one's figures."""
        before = self.settled or self.peer.spin_until(self.figures)

        def counted() -> dict[str, str] | None:
            values = self.figures()
            received = int(before["frames received"])
            return values if values and int(values["frames received"]) > received else None
        self.settled = self.peer.spin_until(counted, timeout_s=10.0,
                                            every=lambda: self.pub.publish(msg), every_s=3.0)
        if int(self.settled["rejected frames"]) > int(before["rejected frames"]):
            return "rejected", self.settled["last reject reason"]
        self.peer.spin_until(lambda: msg.header.frame_id in self.detections)
        return "detected", ""

    def header(self) -> Header:
        return Header(frame_id=next(self.frame_ids),
                      stamp=self.peer.node.get_clock().now().to_msg())

    def close(self) -> None:
        self.peer.close()
        self.node.release_all()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def raw(model_path: Path) -> Iterator[Target]:
    target = Target(model_path, "/fuzz_raw", "raw")
    yield target
    target.close()


@pytest.fixture(scope="module")
def compressed(model_path: Path) -> Iterator[Target]:
    target = Target(model_path, "/fuzz_jpeg", "compressed")
    yield target
    target.close()


# ROS strings are C strings: a NUL would end them in transit
ROS_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=16)
ENCODINGS = st.one_of(st.sampled_from(SUPPORTED_ENCODINGS),
                      st.sampled_from(["", "rgb16", "BGR8", "yuv420", "bayer_rggb8", "32FC1"]),
                      ROS_TEXT)


@st.composite
def raw_images(draw: st.DrawFn) -> dict:
    """Sizes up to 48 px (or absurd), steps exact / padded / short / random, data of any length."""
    height = draw(st.one_of(st.integers(0, 48), st.sampled_from([1, UINT32_MAX])))
    width = draw(st.one_of(st.integers(0, 48), st.sampled_from([1, UINT32_MAX])))
    encoding = draw(ENCODINGS)
    pixel = draw(st.sampled_from([1, 2, 3, 4, 6]))
    step = draw(st.one_of(
        st.just(min(width * pixel, UINT32_MAX)),
        st.integers(0, 8).map(lambda pad: min(width * pixel + pad, UINT32_MAX)),
        st.integers(0, 300)))
    exact = step * height if step * height <= 48 * 48 * 8 else 0
    size = draw(st.one_of(st.just(exact), st.just(exact), st.integers(0, 2000),
                          st.just(max(exact - 1, 0)), st.just(exact + 1)))
    return dict(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=draw(st.integers(0, 255)),
                data=draw(st.binary(min_size=size, max_size=size)))


def _encoded(ext: str, seed: int) -> bytes:
    bgr = cv2.cvtColor(generate_scene(seed, 40, 30).image, cv2.COLOR_RGB2BGR)
    return cv2.imencode(ext, bgr)[1].tobytes()


VALID_COMPRESSED = [_encoded(ext, seed) for ext in (".png", ".jpg") for seed in (1, 2)]
FORMATS = st.one_of(
    st.sampled_from(["jpeg", "png", "", "bgr8; jpeg compressed bgr8", "rgb8; png compressed",
                     "16UC1; compressedDepth png", "tiff", "JPG"]),
    ROS_TEXT)


@st.composite
def compressed_payloads(draw: st.DrawFn) -> bytes:
    """Garbage, magic bytes + garbage, or a real PNG / JPEG cut short and with bytes flipped."""
    kind = draw(st.sampled_from(["garbage", "magic", "damaged", "damaged", "valid"]))
    if kind == "garbage":
        return draw(st.binary(max_size=400))
    if kind == "magic":
        magic = draw(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
        return magic + draw(st.binary(max_size=400))
    data = bytearray(draw(st.sampled_from(VALID_COMPRESSED)))
    if kind == "damaged":
        if draw(st.booleans()):
            del data[draw(st.integers(0, len(data))):]
        for _ in range(draw(st.integers(0, 6))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _expected_reason(msg: Image | CompressedImage) -> str | None:
    """None if the frame decodes, else the reason the node must report (any other exception
    raised here is itself a bug in the input path)."""
    try:
        image_to_rgb(msg)
    except ImageDecodeError as exc:
        return str(exc)
    return None


def _check_outcome(target: Target, msg: Image | CompressedImage) -> None:
    expected = _expected_reason(msg)
    kind, reason = target.outcome(msg)
    event(kind)
    if expected is None:
        assert kind == "detected", f"a decodable frame was rejected: {reason}"
        assert target.detections[msg.header.frame_id].header == msg.header
        target.detected += 1
    else:
        assert kind == "rejected" and reason == expected
        target.rejections += 1


def _check_afterwards(target: Target, valid: Image | CompressedImage, log: str) -> None:
    """No stuck worker, no inference error, every received frame accounted for, a logged reason."""
    assert target.outcome(valid)[0] == "detected"
    target.peer.diagnostics = None  # only figures published after that detection count
    values = target.peer.spin_until(target.figures)
    assert int(values["rejected frames"]) >= target.rejections > 0 and target.detected > 0
    assert values["inference errors"] == "0", values["last error"]
    assert "rejected a frame on image" in log


def test_fuzzed_images_end_as_detections_or_counted_rejections(
    raw: Target, capfd: pytest.CaptureFixture
) -> None:
    @FUZZ
    @given(fields=raw_images())
    def fuzz(fields: dict) -> None:
        _check_outcome(raw, Image(header=raw.header(), **fields))
    fuzz()
    valid = rgb_to_image(generate_scene(3, 64, 48).image, raw.header())
    _check_afterwards(raw, valid, capfd.readouterr().err)


def test_fuzzed_compressed_images_end_as_detections_or_counted_rejections(
    compressed: Target, capfd: pytest.CaptureFixture
) -> None:
    @FUZZ
    @given(format=FORMATS, data=compressed_payloads())
    def fuzz(format: str, data: bytes) -> None:
        _check_outcome(compressed, CompressedImage(header=compressed.header(), format=format,
                                                   data=data))
    fuzz()
    valid = CompressedImage(header=compressed.header(), format="png", data=VALID_COMPRESSED[0])
    _check_afterwards(compressed, valid, capfd.readouterr().err)

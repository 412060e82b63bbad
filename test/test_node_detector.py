"""suhd_detector in its own OS process, over real DDS (one node process for the module).

Images in every supported encoding come back as Detection2DArrays with their own header and
with the boxes a Detector in this process finds on the same pixels; a late subscriber gets the
labels; the overlay is rendered only while subscribed; malformed images are rejected, counted,
and detection goes on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from suhd_ros.detector import Detector
from suhd_ros.paths import default_model_path
from suhd_ros.ros.conversions import image_to_rgb, msg_to_detections, rgb_to_image
from suhd_ros.ros.image_encoding import SUPPORTED_ENCODINGS, ImageDecodeError, decode_image
from suhd_ros.ros.processes import start_node, stop_node
from suhd_ros.synthetic.scenes import CLASS_NAMES, generate_scene, split_seed

from ros_peer import Peer, boxes_inside, stamped_header

torch.set_num_threads(1)

NS = "/suhd_test"
WIDTH, HEIGHT = 96, 72  # not the model's square input: boxes must come back in image pixels
MAX_DETECTIONS = 20
Key = tuple[int, int, str]


def _key(header: Header) -> Key:
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


def _start_node(log_path: Path, namespace: str, *parameters: str) -> subprocess.Popen:
    """The node in its own process, on the CPU with one thread."""
    return start_node("detector_node", log_path, namespace, ["device:=cpu", *parameters],
                      env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def node_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node") / "suhd_detector.log"


@pytest.fixture(scope="module")
def peer(model_path: Path, node_log: Path) -> Iterator[Peer]:
    process = _start_node(node_log, NS, f"model_path:={model_path}", "score_threshold:=0.0",
                          f"max_detections:={MAX_DETECTIONS}")
    rclpy.init()
    peer = Peer("detector_test_peer")
    try:
        yield peer
    finally:
        peer.close()
        rclpy.shutdown()
        stop_node(process)


@pytest.fixture(scope="module")
def detections(peer: Peer) -> dict[Key, Detection2DArray]:
    received: dict[Key, Detection2DArray] = {}
    peer.node.create_subscription(Detection2DArray, f"{NS}/detections",
                                  lambda msg: received.setdefault(_key(msg.header), msg), 10)
    return received


@pytest.fixture(scope="module")
def image_pub(peer: Peer):
    return peer.node.create_publisher(Image, f"{NS}/image", QoSProfile(depth=10))


@pytest.fixture(scope="module")
def reference(model_path: Path) -> Detector:
    return Detector(model_path, device="cpu")


def _detect_over_dds(peer: Peer, image_pub, detections: dict, msg: Image) -> Detection2DArray:
    return peer.spin_until(lambda: detections.get(_key(msg.header)),
                           every=lambda: image_pub.publish(msg), timeout_s=15.0)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_every_encoding_gives_detections_with_the_image_header(
    peer: Peer, image_pub, detections: dict, reference: Detector, encoding: str
) -> None:
    rgb = generate_scene(7, WIDTH, HEIGHT).image
    msg = rgb_to_image(rgb, stamped_header(peer.node, f"camera_{encoding}"), encoding)
    out = _detect_over_dds(peer, image_pub, detections, msg)

    assert out.header == msg.header
    assert 0 < len(out.detections) <= MAX_DETECTIONS
    for detection in out.detections:
        assert detection.header == msg.header and detection.id == ""
        assert len(detection.results) == 1 and detection.bbox.center.theta == 0.0
        assert 0 <= int(detection.results[0].hypothesis.class_id) < len(CLASS_NAMES)
    boxes, scores, class_ids = msg_to_detections(out)
    assert boxes_inside(boxes, WIDTH, HEIGHT)
    expected = reference.detect([image_to_rgb(msg)], score_threshold=0.0,
                                max_detections=MAX_DETECTIONS)[0]
    np.testing.assert_allclose(boxes, expected.boxes_xyxy, atol=1e-2)
    np.testing.assert_allclose(scores, expected.scores, atol=1e-4)
    np.testing.assert_array_equal(class_ids, expected.class_ids)


def test_late_subscriber_still_gets_the_labels(peer: Peer) -> None:
    peer.wait_status("output", lambda values: True)  # the node is active since before this
    labels: list[LabelInfo] = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.node.create_subscription(LabelInfo, f"{NS}/label_info", labels.append, qos)
    peer.spin_until(lambda: labels)
    assert [c.class_name for c in labels[0].class_map] == list(CLASS_NAMES)
    assert [c.class_id for c in labels[0].class_map] == list(range(len(CLASS_NAMES)))
    assert labels[0].threshold == 0.0


def test_overlay_is_rendered_only_while_someone_subscribes(
    peer: Peer, image_pub, detections: dict
) -> None:
    rgb = generate_scene(11, WIDTH, HEIGHT).image

    def publish_new_frame() -> Image:
        msg = rgb_to_image(rgb, stamped_header(peer.node, "overlay_test"))
        image_pub.publish(msg)
        return msg

    values = peer.wait_status("output", lambda v: True)[2]
    processed, overlays = int(values["frames processed"]), int(values["overlays rendered"])
    values = peer.wait_status("output", lambda v: int(v["frames processed"]) >= processed + 3,
                              every=publish_new_frame)[2]
    assert int(values["overlays rendered"]) == overlays

    received: list[Image] = []
    peer.node.create_subscription(Image, f"{NS}/overlay", received.append, 10)
    sent: dict[Key, Image] = {}

    def publish_and_remember() -> None:
        msg = publish_new_frame()
        sent[_key(msg.header)] = msg

    overlay = peer.spin_until(lambda: next((m for m in received if _key(m.header) in sent), None),
                              every=publish_and_remember, every_s=0.5)
    assert overlay.encoding == "rgb8" and (overlay.width, overlay.height) == (WIDTH, HEIGHT)
    drawn = image_to_rgb(overlay)
    assert np.any(drawn != rgb)  # boxes and the info line are drawn on a copy
    values = peer.wait_status("output", lambda v: int(v["overlays rendered"]) > overlays)[2]
    assert int(values["frames processed"]) > processed


def _bad_image(header: Header, **fields) -> Image:
    good = dict(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3,
                data=bytes(WIDTH * 3 * HEIGHT))
    return Image(header=header, **{**good, **fields})


MALFORMED = {
    "wrong step": dict(step=WIDTH * 3 - 1, data=bytes((WIDTH * 3 - 1) * HEIGHT)),
    "short data": dict(data=bytes(WIDTH * 3 * HEIGHT - 1)),
    "unknown encoding": dict(encoding="rgb7"),
    "zero size": dict(height=0, width=0, step=0, data=b""),
}


def _decode_error(msg: Image) -> str:
    with pytest.raises(ImageDecodeError) as error:
        decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data)
    return str(error.value)


def test_malformed_images_are_rejected_counted_and_detection_goes_on(
    peer: Peer, image_pub, detections: dict
) -> None:
    rejected = int(peer.wait_status("input", lambda v: True)[2]["rejected frames"])
    for name, fields in MALFORMED.items():
        msg = _bad_image(stamped_header(peer.node, name), **fields)
        expected_reason = _decode_error(msg)
        level, _, values = peer.wait_status(
            "input", lambda v, r=rejected: int(v["rejected frames"]) > r,
            every=lambda m=msg: image_pub.publish(m))
        assert values["last reject reason"] == expected_reason, name
        assert level == DiagnosticStatus.WARN
        assert _key(msg.header) not in detections
        rejected = int(values["rejected frames"])

    good = rgb_to_image(generate_scene(3, WIDTH, HEIGHT).image, stamped_header(peer.node, "ok"))
    assert len(_detect_over_dds(peer, image_pub, detections, good).detections) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


@pytest.mark.skipif(not default_model_path().is_file(), reason="no embedded default model yet")
def test_real_model_finds_the_drawn_objects(peer: Peer, tmp_path: Path) -> None:
    """The embedded model, run by a second node process, puts most boxes on the objects."""
    namespace = "/suhd_real"
    process = _start_node(tmp_path / "real.log", namespace)  # no model_path: the embedded one
    try:
        received: dict[Key, Detection2DArray] = {}
        peer.node.create_subscription(
            Detection2DArray, f"{namespace}/detections",
            lambda msg: received.setdefault(_key(msg.header), msg), 10)
        pub = peer.node.create_publisher(Image, f"{namespace}/image", QoSProfile(depth=10))
        on_objects = boxes_total = found = 0
        for index in range(3):
            scene = generate_scene(split_seed("test", index), 320, 240)
            msg = rgb_to_image(scene.image, stamped_header(peer.node, f"scene{index}"))
            out = peer.spin_until(lambda m=msg: received.get(_key(m.header)),
                                  every=lambda m=msg: pub.publish(m), timeout_s=40.0)
            boxes, _, class_ids = msg_to_detections(out)
            truths = list(zip(scene.boxes_xyxy, scene.class_ids, strict=True))
            hits = [any(_iou(truth, box) >= 0.5 and k == c for truth, c in truths)
                    for box, k in zip(boxes, class_ids, strict=True)]
            on_objects += sum(hits)
            boxes_total += len(hits)
            found += len(hits) > 0
        # most published boxes lie on a drawn object of their class (precision); recall is the
        # model's own business (its mAP is in models/suhd-yolov5n-shapes.md)
        assert found == 3 and on_objects / boxes_total >= 0.5, (on_objects, boxes_total)
    finally:
        stop_node(process)

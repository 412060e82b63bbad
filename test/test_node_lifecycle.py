"""suhd_detector in this process: lifecycle, live and refused parameters, ~/enable, QoS warnings,
compressed input and several cameras (the peer still talks to it through DDS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State as StateMsg
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool
from vision_msgs.msg import Detection2DArray, LabelInfo

from suhd_ros.detector import Detector
from suhd_ros.ros.conversions import msg_to_detections, rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode, camera_keys, inference_threads
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer, stamped_header

pytestmark = pytest.mark.usefixtures("ros")

torch.set_num_threads(1)

WIDTH, HEIGHT = 80, 60


def _node(namespace: str, model_path: Path | str, **parameters) -> SuhdDetectorNode:
    values = {"model_path": str(model_path), "device": "cpu", "score_threshold": 0.0,
              **parameters}
    return SuhdDetectorNode(namespace=namespace,
                            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


@pytest.fixture()
def make_node() -> Iterator:
    """Nodes made through this are released and destroyed after the test."""
    nodes: list[SuhdDetectorNode] = []

    def make(namespace: str, model_path: Path | str, **parameters) -> SuhdDetectorNode:
        nodes.append(_node(namespace, model_path, **parameters))
        return nodes[-1]
    yield make
    for node in nodes:
        node.release_all()
        node.destroy_node()


def _frame(peer: Peer, seed: int = 5, frame_id: str = "cam") -> Image:
    return rgb_to_image(generate_scene(seed, WIDTH, HEIGHT).image,
                        stamped_header(peer.node, frame_id))


def _detect(peer: Peer, pub, topic: str, msg: Image | CompressedImage) -> Detection2DArray:
    """Publish ``msg`` until detections with its header come out on ``topic``."""
    received: list[Detection2DArray] = []
    sub = peer.node.create_subscription(Detection2DArray, topic, received.append, 10)
    try:
        return peer.spin_until(
            lambda: next((m for m in received if m.header == msg.header), None),
            every=lambda: pub.publish(msg), every_s=0.3)
    finally:
        peer.node.destroy_subscription(sub)


def _call(peer: Peer, client, request):
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(request)
    return peer.spin_until(lambda: future.result() if future.done() else None)


def test_camera_keys_name_each_camera_once() -> None:
    assert camera_keys(["/left/image_raw", "/right/image_raw"]) == ["left", "right"]
    assert camera_keys(["/cam/image_raw"]) == ["cam"]
    assert camera_keys(["front", "rear/image"]) == ["front", "image"]
    assert camera_keys(["/a/image", "/b/c/image", "/c/image"]) == ["camera0", "camera1", "camera2"]


def test_lifecycle_transitions_through_the_services(make_node, model_path: Path) -> None:
    node = make_node("/lc", model_path, autostart=False)
    peer = Peer("lifecycle_peer", node)
    try:
        get_state = peer.node.create_client(GetState, "/lc/suhd_detector/get_state")
        change = peer.node.create_client(ChangeState, "/lc/suhd_detector/change_state")

        def state() -> int:
            return _call(peer, get_state, GetState.Request()).current_state.id

        def transition(transition_id: int) -> bool:
            request = ChangeState.Request(transition=Transition(id=transition_id))
            return _call(peer, change, request).success

        def publishers(count: int) -> bool:
            return peer.spin_until(lambda: peer.node.count_publishers("/lc/detections") == count)

        pub = peer.node.create_publisher(Image, "/lc/image", 10)
        assert state() == StateMsg.PRIMARY_STATE_UNCONFIGURED
        assert publishers(0)
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert state() == StateMsg.PRIMARY_STATE_INACTIVE
        assert publishers(1)
        assert node.count_subscribers("/lc/image") == 0
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == StateMsg.PRIMARY_STATE_ACTIVE
        assert len(_detect(peer, pub, "/lc/detections", _frame(peer)).detections) > 0
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == StateMsg.PRIMARY_STATE_INACTIVE
        assert node.count_subscribers("/lc/image") == 0
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == StateMsg.PRIMARY_STATE_UNCONFIGURED
        assert publishers(0)
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert len(_detect(peer, pub, "/lc/detections", _frame(peer, 6)).detections) > 0
        assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert state() == StateMsg.PRIMARY_STATE_FINALIZED
    finally:
        peer.close()


def test_failed_configure_is_reported_and_can_be_retried(
    make_node, model_path: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "later.safetensors"
    node = make_node("/retry", missing, autostart=False)
    peer = Peer("retry_peer", node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        level, message, values = peer.wait_status(
            "device and model", lambda v: v.get("configure error", "") != "")
        assert level == DiagnosticStatus.ERROR
        assert str(missing) in message and "not found" in values["configure error"]
        shutil.copy(model_path, missing)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        level, _, values = peer.wait_status("device and model", lambda v: "engine" in v)
        assert level == DiagnosticStatus.OK and values["model path"] == str(missing)
    finally:
        peer.close()


def test_invalid_topic_fails_configure_with_the_reason(make_node, model_path: Path) -> None:
    node = make_node("/badtopic", model_path, autostart=False, image_topics=["ok", "not ok"])
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    peer = Peer("badtopic_peer", node)
    try:
        level, message, _ = peer.wait_status("device and model", lambda v: True)
        assert level == DiagnosticStatus.ERROR and "image_topics" in message
        assert "not ok" in message
    finally:
        peer.close()


def test_threshold_set_at_run_time_applies_to_the_next_frame(
    make_node, model_path: Path
) -> None:
    node = make_node("/live", model_path)
    peer = Peer("live_peer", node)
    reference = Detector(model_path, device="cpu")
    try:
        pub = peer.node.create_publisher(Image, "/live/image", 10)
        labels: list[LabelInfo] = []
        peer.node.create_subscription(
            LabelInfo, "/live/label_info", labels.append,
            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        before = msg_to_detections(_detect(peer, pub, "/live/detections", _frame(peer)))[1]
        threshold = float(np.median(before))
        assert node.set_parameters([Parameter("score_threshold", value=threshold)])[0].successful
        frame = _frame(peer, seed=5, frame_id="after")
        _, scores, _ = msg_to_detections(_detect(peer, pub, "/live/detections", frame))
        expected = reference.detect([generate_scene(5, WIDTH, HEIGHT).image],
                                    score_threshold=threshold)[0].scores
        assert len(scores) < len(before) and np.all(scores >= threshold - 1e-6)
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        label = peer.spin_until(lambda: next(
            (m for m in labels if abs(m.threshold - threshold) < 1e-6), None))
        assert len(label.class_map) == len(reference.names)
    finally:
        peer.close()


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("score_threshold", 1.5, "score_threshold"),
    ("iou_threshold", -0.1, "iou_threshold"),
    ("max_detections", 0, "max_detections"),
    ("classes", [-1], "class indices >= 0"),
    ("classes", [10], "below 10"),
    ("device", "cuda", "read-only"),
    ("model_path", "other.safetensors", "read-only"),
])
def test_invalid_parameters_are_refused_with_a_reason(
    make_node, model_path: Path, name: str, value, reason: str
) -> None:
    node = make_node("/refuse", model_path)
    old = node.get_parameter_or(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason
    assert node.get_parameter_or(name).value == old


def test_classes_filter_and_enable_service(make_node, model_path: Path) -> None:
    node = make_node("/filter", model_path)
    peer = Peer("filter_peer", node)
    try:
        pub = peer.node.create_publisher(Image, "/filter/image", 10)
        assert node.set_parameters([Parameter("classes", value=[2, 7])])[0].successful
        _, _, class_ids = msg_to_detections(_detect(peer, pub, "/filter/detections", _frame(peer)))
        assert len(class_ids) > 0 and set(class_ids.tolist()) <= {2, 7}

        enable = peer.node.create_client(SetBool, "/filter/suhd_detector/enable")
        assert _call(peer, enable, SetBool.Request(data=False)).success
        values = peer.wait_status("output", lambda v: v["detection enabled"] == "False")[2]
        processed = int(values["frames processed"])
        received = int(peer.status("input")[2]["frames received"])
        peer.wait_status("input", lambda v: int(v["frames received"]) >= received + 3,
                         every=lambda: pub.publish(_frame(peer, frame_id="paused")))
        assert int(peer.status("output")[2]["frames processed"]) == processed
        assert _call(peer, enable, SetBool.Request(data=True)).success
        assert len(_detect(peer, pub, "/filter/detections", _frame(peer, 8)).detections) > 0
    finally:
        peer.close()


def test_energy_is_counted_on_one_frame_in_n(make_node, model_path: Path) -> None:
    node = make_node("/energy", model_path, energy_every_n=3)
    quiet = make_node("/no_energy", model_path, energy_every_n=0)
    peer = Peer("energy_peer", node, quiet)
    try:
        pub = peer.node.create_publisher(Image, "/energy/image", 10)
        for seed in range(7):
            _detect(peer, pub, "/energy/detections", _frame(peer, seed))

        def counted_one_in_three(values: dict[str, str]) -> bool:  # one message, one snapshot
            processed = int(peer.status("output", "/energy/")[2]["frames processed"])
            return processed >= 7 and int(values["frames counted"]) == (processed + 2) // 3
        values = peer.wait_status("energy", lambda v: "frames counted" in v and
                                  counted_one_in_three(v), node="/energy/")[2]
        assert float(values["spikes per frame"]) > 0
        assert float(values["energy per frame SNN [J]"]) > 0

        quiet_pub = peer.node.create_publisher(Image, "/no_energy/image", 10)
        _detect(peer, quiet_pub, "/no_energy/detections", _frame(peer))
        _, message, values = peer.wait_status("energy", lambda v: True, node="/no_energy/")
        assert message == "not counted: energy_every_n is 0" and not values
    finally:
        peer.close()


def test_inference_threads_follow_the_parameter(
    make_node, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Detector sets torch's thread count before each inference, in the thread that infers
    (OpenMP keeps the count per thread), so it is read there."""
    inferring: list[int] = []  # torch's thread count in the inference thread, per detect()
    detect = Detector.detect

    def spy(self: Detector, *args, **kwargs) -> list:
        results = detect(self, *args, **kwargs)
        inferring.append(torch.get_num_threads())
        return results
    monkeypatch.setattr(Detector, "detect", spy)
    before = torch.get_num_threads()
    try:
        # default 0: all cores but one
        for ns, parameters, threads in (("/threads", {"threads": 3}, 3),
                                        ("/threads_auto", {}, inference_threads())):
            peer = Peer(f"{ns[1:]}_peer", make_node(ns, model_path, **parameters))
            try:
                values = peer.wait_status("device and model", lambda v: "CPU threads" in v,
                                          node=f"{ns}/")[2]
                pub = peer.node.create_publisher(Image, f"{ns}/image", 10)
                _detect(peer, pub, f"{ns}/detections", _frame(peer))
                assert values["CPU threads"] == str(threads) and inferring[-1] == threads
            finally:
                peer.close()
        assert inferring[-1] == inference_threads() == max(1, os.cpu_count() - 1)
    finally:
        torch.set_num_threads(before)


def test_incompatible_publisher_qos_is_counted(make_node, model_path: Path) -> None:
    node = make_node("/qos", model_path, qos_reliability="reliable")
    peer = Peer("qos_peer", node)
    try:
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = peer.node.create_publisher(Image, "/qos/image", best_effort)
        level, message, values = peer.wait_status(
            "input", lambda v: int(v["incompatible QoS events"]) > 0,
            every=lambda: pub.publish(_frame(peer)))
        assert level == DiagnosticStatus.WARN and "QoS" in message
        assert int(values["frames received"]) == 0
    finally:
        peer.close()


def test_compressed_input(make_node, model_path: Path) -> None:
    node = make_node("/jpeg", model_path, input_transport="compressed")
    peer = Peer("jpeg_peer", node)
    try:
        pub = peer.node.create_publisher(CompressedImage, "/jpeg/image/compressed", 10)
        bgr = cv2.cvtColor(generate_scene(4, WIDTH, HEIGHT).image, cv2.COLOR_RGB2BGR)
        msg = CompressedImage(header=stamped_header(peer.node, "jpeg"), format="jpeg",
                              data=cv2.imencode(".jpg", bgr)[1].tobytes())
        assert len(_detect(peer, pub, "/jpeg/detections", msg).detections) > 0
        corrupt = CompressedImage(header=stamped_header(peer.node, "bad"), format="jpeg",
                                  data=b"\xff\xd8\xff" + bytes(40))
        values = peer.wait_status("input", lambda v: int(v["rejected frames"]) > 0,
                                  every=lambda: pub.publish(corrupt))[2]
        assert "jpeg" in values["last reject reason"]
    finally:
        peer.close()


def test_several_cameras_share_one_model(make_node, model_path: Path) -> None:
    node = make_node("/multi", model_path,
                     image_topics=["/multi/left/image_raw", "/multi/right/image_raw"])
    peer = Peer("multi_peer", node)
    try:
        for side, seed in (("left", 1), ("right", 2)):
            pub = peer.node.create_publisher(Image, f"/multi/{side}/image_raw", 10)
            msg = _frame(peer, seed, side)
            out = _detect(peer, pub, f"/multi/{side}/detections", msg)
            assert out.header.frame_id == side and len(out.detections) > 0
            values = peer.wait_status(f"output ({side})", lambda v: int(v["frames processed"]))[2]
            assert int(values["frames processed"]) >= 1
    finally:
        peer.close()

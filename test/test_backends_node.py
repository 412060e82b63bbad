"""suhd_detector with backend:=openvino / onnxruntime (in this process, talking through DDS)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.ros.conversions import rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer, stamped_header

pytestmark = pytest.mark.usefixtures("ros")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUHD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "suhd_cache"))


@pytest.fixture()
def make_node() -> Iterator:
    nodes: list[SuhdDetectorNode] = []

    def make(namespace: str, model_path: Path, **parameters) -> SuhdDetectorNode:
        values = {"model_path": str(model_path), "device": "cpu", "score_threshold": 0.0,
                  **parameters}
        nodes.append(SuhdDetectorNode(namespace=namespace, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()]))
        return nodes[-1]
    yield make
    for node in nodes:
        node.release_all()
        node.destroy_node()


def test_node_detects_through_openvino(make_node, model_path: Path) -> None:
    node = make_node("/ov", model_path, backend="openvino", energy_every_n=1)
    assert node._detector.backend.name == "openvino"
    peer = Peer("ov_peer", node)
    try:
        received: list[Detection2DArray] = []
        peer.node.create_subscription(Detection2DArray, "/ov/detections", received.append, 10)
        pub = peer.node.create_publisher(Image, "/ov/image", 10)
        msg = rgb_to_image(generate_scene(5, 80, 60).image, stamped_header(peer.node, "cam"))
        # the first OpenVINO frame took over 10 s on a core shared with a training job
        result = peer.spin_until(lambda: next((m for m in received if m.header == msg.header),
                                              None), timeout_s=30.0,
                                 every=lambda: pub.publish(msg), every_s=0.3)
        assert len(result.detections) > 0
        _, _, values = peer.wait_status(
            "energy", lambda v: float(v.get("spikes per frame", 0)) > 0,
            every=lambda: pub.publish(msg))  # counted in the graph, read by the energy model
        assert float(values["spikes per frame"]) > 0
    finally:
        peer.close()


def test_missing_runtime_fails_configure_with_the_reason(make_node, model_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    node = make_node("/noort", model_path, backend="onnxruntime", autostart=False)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "onnxruntime package, which is not installed" in node._configure_error

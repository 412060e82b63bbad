"""Every parameter of suhd_detector, systematically: each out-of-range, ill-typed, disallowed or
read-only value is refused with a reason, at run time and at start, and the node keeps its old
value and its behaviour (an in-process node; the peer talks to it through DDS).

The table below is the expected parameter set, written from docs/ros-interface.md and the
node's documentation; a parameter added without an entry here fails the first test.

Long cases: none here; the whole file is part of the fast CI subset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.detector import Detector
from suhd_ros.ros.conversions import msg_to_detections, rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.synthetic.scenes import generate_scene

from ros_peer import Peer, stamped_header

pytestmark = pytest.mark.usefixtures("ros")

torch.set_num_threads(1)

Type = Parameter.Type
NS = "/params"
CLASSES = 10  # the tiny model's class count


class Spec(NamedTuple):
    type: Type
    limits: tuple[float, float] | None = None  # the descriptor's range, both ends allowed
    read_only: bool = True


DECLARED: dict[str, Spec] = {
    "model_path": Spec(Type.STRING),
    "device": Spec(Type.STRING),
    "engine": Spec(Type.STRING),
    "backend": Spec(Type.STRING),
    "threads": Spec(Type.INTEGER, (0, 256)),
    "timesteps": Spec(Type.INTEGER, (0, 64)),
    "compression": Spec(Type.INTEGER, (0, 16)),
    "score_threshold": Spec(Type.DOUBLE, (0.0, 1.0), read_only=False),
    "iou_threshold": Spec(Type.DOUBLE, (0.0, 1.0), read_only=False),
    "max_detections": Spec(Type.INTEGER, (1, 1000), read_only=False),
    "classes": Spec(Type.INTEGER_ARRAY, read_only=False),
    "publish_overlay": Spec(Type.BOOL, read_only=False),
    "energy_every_n": Spec(Type.INTEGER, (0, 10000), read_only=False),
    "counting_thread": Spec(Type.BOOL),
    "input_transport": Spec(Type.STRING),
    "image_topics": Spec(Type.STRING_ARRAY),
    "qos_reliability": Spec(Type.STRING),
    "qos_depth": Spec(Type.INTEGER, (1, 100)),
    "tracker": Spec(Type.STRING),
    "track_threshold": Spec(Type.DOUBLE, (0.0, 1.0)),
    "track_per_class": Spec(Type.BOOL),
    "depth": Spec(Type.BOOL),
    "depth_transport": Spec(Type.STRING),
    "depth_window_ms": Spec(Type.DOUBLE, (0.0, 1000.0)),
    "depth_queue": Spec(Type.INTEGER, (1, 100)),
    "autostart": Spec(Type.BOOL),
}
ROS_OWN = {"use_sim_time", "start_type_description_service"}  # every rclpy node has these

# one value of every parameter type, each valid for some parameter of that type
SAMPLES: dict[Type, Any] = {
    Type.BOOL: False, Type.INTEGER: 3, Type.DOUBLE: 0.5, Type.STRING: "cpu",
    Type.BYTE_ARRAY: [b"\x01"], Type.BOOL_ARRAY: [True], Type.INTEGER_ARRAY: [1],
    Type.DOUBLE_ARRAY: [0.5], Type.STRING_ARRAY: ["image"],
}
# values a string parameter refuses at configure (read-only: they can only come at start)
DISALLOWED_STRINGS = {
    "device": ["tpu", "cuda:x", "", "gpu0"],
    "engine": ["fast", "FUSED ", ""],
    "backend": ["tensorrt", "ORT", ""],
    "tracker": ["deepsort", "ByteTrack", ""],
    "input_transport": ["theora", "Raw", ""],
    "depth_transport": ["compressed", "compresseddepth", ""],
    "qos_reliability": ["sometimes", "best effort", ""],
}


def _out_of_range(spec: Spec) -> list[Any]:
    if spec.limits is None:
        return []
    low, high = spec.limits
    if spec.type == Type.INTEGER:
        return [low - 1, high + 1, -(2**63), 2**63 - 1]
    return [low - 0.01, high + 0.01, -math.inf, math.inf, math.nan]


def refusals(name: str, spec: Spec) -> list[tuple[Parameter, str]]:
    """(parameter, words its refusal must contain): wrong types, out of range, undeclaring."""
    own = "read-only" if spec.read_only else None
    cases = [(Parameter(name, other, value), own or "type")
             for other, value in SAMPLES.items() if other != spec.type]
    cases += [(Parameter(name, spec.type, value), own or "out of range")
              for value in _out_of_range(spec)]
    cases.append((Parameter(name, Type.NOT_SET), own or "cannot be undeclared"))
    if spec.read_only:
        cases.append((Parameter(name, spec.type, SAMPLES[spec.type]), "read-only"))
    if name == "classes":
        cases += [(Parameter(name, spec.type, value), reason) for value, reason in (
            ([-1], "indices >= 0"), ([0, -5], "indices >= 0"), ([CLASSES], f"below {CLASSES}"),
            ([2**62], f"below {CLASSES}"))]
    return cases


RUNTIME_CASES = [(name, p, reason) for name, spec in DECLARED.items()
                 for p, reason in refusals(name, spec)]


def _node(model_path: Path, namespace: str = NS, values: dict[str, Any] | None = None
          ) -> SuhdDetectorNode:
    values = {"model_path": str(model_path), "device": "cpu", "score_threshold": 0.0,
              **(values or {})}
    return SuhdDetectorNode(namespace=namespace, parameter_overrides=[
        Parameter(name, value=value) for name, value in values.items()])


@pytest.fixture(scope="module")
def node(model_path: Path) -> Iterator[SuhdDetectorNode]:
    node = _node(model_path)
    yield node
    node.release_all()
    node.destroy_node()


@pytest.fixture(scope="module")
def peer(node: SuhdDetectorNode) -> Iterator[Peer]:
    peer = Peer("params_peer", node)
    yield peer
    peer.close()


def _values(node: SuhdDetectorNode) -> dict[str, Any]:
    return {name: node.get_parameter_or(name).value for name in DECLARED}


def test_declared_parameters_are_exactly_the_table(node: SuhdDetectorNode) -> None:
    names = set(node.list_parameters([], 0).names) - ROS_OWN
    assert names == set(DECLARED)
    for descriptor in node.describe_parameters(sorted(DECLARED)):
        spec = DECLARED[descriptor.name]
        assert descriptor.type == spec.type.value, descriptor.name
        assert descriptor.read_only == spec.read_only, descriptor.name
        assert descriptor.description, descriptor.name
        ranges = [(r.from_value, r.to_value) for r in
                  (*descriptor.integer_range, *descriptor.floating_point_range)]
        assert ranges == ([spec.limits] if spec.limits else []), descriptor.name


@pytest.mark.parametrize(("name", "parameter", "reason"), RUNTIME_CASES,
                         ids=[f"{n}={p.type_.name}:{p.value!r}" for n, p, _ in RUNTIME_CASES])
def test_bad_value_is_refused_with_a_reason_and_the_old_value_kept(
    node: SuhdDetectorNode, name: str, parameter: Parameter, reason: str
) -> None:
    before = _values(node)
    result = node.set_parameters([parameter])[0]
    assert not result.successful
    assert reason in result.reason
    assert _values(node) == before


def test_a_refused_value_spoils_the_whole_atomic_set(node: SuhdDetectorNode) -> None:
    before = _values(node)
    result = node.set_parameters_atomically([
        Parameter("score_threshold", value=0.9), Parameter("iou_threshold", value=1.5)])
    assert not result.successful and "iou_threshold" in result.reason
    assert _values(node) == before


def test_refusal_reaches_a_remote_client_with_its_reason(
    node: SuhdDetectorNode, peer: Peer
) -> None:
    client = peer.node.create_client(SetParameters, f"{NS}/suhd_detector/set_parameters")
    assert client.wait_for_service(timeout_sec=5.0)
    request = SetParameters.Request(parameters=[
        ParameterMsg(name="max_detections", value=Parameter(
            "max_detections", value=5000).get_parameter_value())])
    future = client.call_async(request)
    result = peer.spin_until(lambda: future.result() if future.done() else None).results[0]
    assert not result.successful and "max_detections" in result.reason
    assert node.get_parameter("max_detections").value == 100


def test_edge_values_are_accepted_and_applied(node: SuhdDetectorNode) -> None:
    """The refusals above are not blanket ones: both ends of each range are fine."""
    before = _values(node)
    try:
        for name, spec in DECLARED.items():
            for value in spec.limits if spec.limits and not spec.read_only else ():
                cast = float if spec.type == Type.DOUBLE else int
                parameter = Parameter(name, spec.type, cast(value))
                assert node.set_parameters([parameter])[0].successful, (name, value)
                assert node.get_parameter(name).value == value
        for value in ([0, CLASSES - 1], []):
            assert node.set_parameters([Parameter("classes", Type.INTEGER_ARRAY, value)])[
                0].successful
    finally:
        node.set_parameters([Parameter(n, value=v) for n, v in before.items()
                             if not DECLARED[n].read_only and v is not None])


def _detect(peer: Peer, frame_id: str) -> Detection2DArray:
    received: list[Detection2DArray] = []
    sub = peer.node.create_subscription(Detection2DArray, f"{NS}/detections", received.append, 10)
    pub = peer.node.create_publisher(Image, f"{NS}/image", 10)
    msg = rgb_to_image(generate_scene(9, 80, 60).image, stamped_header(peer.node, frame_id))
    try:
        return peer.spin_until(lambda: next((m for m in received if m.header == msg.header),
                                            None), every=lambda: pub.publish(msg), every_s=0.3)
    finally:
        peer.node.destroy_subscription(sub)
        peer.node.destroy_publisher(pub)


def test_after_refusals_the_node_detects_with_its_old_settings(
    node: SuhdDetectorNode, peer: Peer, model_path: Path
) -> None:
    for name, spec in DECLARED.items():
        if not spec.read_only:
            for parameter, _ in refusals(name, spec):
                assert not node.set_parameters([parameter])[0].successful
    _, scores, class_ids = msg_to_detections(_detect(peer, "after_refusals"))
    expected = Detector(model_path, device="cpu").detect(
        [generate_scene(9, 80, 60).image], score_threshold=0.0)[0]
    assert len(scores) == len(expected.scores) > 0
    np.testing.assert_allclose(scores, expected.scores, atol=1e-4)
    np.testing.assert_array_equal(class_ids, expected.class_ids)


def _start_cases() -> list[tuple[str, Any, str]]:
    """Values refused while the node is made: out of range, or of another scalar type."""
    cases = []
    for name, spec in DECLARED.items():
        cases += [(name, value, "out of range") for value in _out_of_range(spec)]
        cases += [(name, SAMPLES[other], "type") for other in
                  (Type.BOOL, Type.INTEGER, Type.DOUBLE, Type.STRING) if other != spec.type]
    return cases


START_CASES = _start_cases()


@pytest.mark.parametrize(("name", "value", "reason"), START_CASES)
def test_bad_start_value_stops_the_node_from_being_made(
    model_path: Path, name: str, value: Any, reason: str
) -> None:
    with pytest.raises(ParameterException, match=name) as error:
        _node(model_path, "/start_bad", {"autostart": False, name: value})
    assert reason in str(error.value)


@pytest.mark.parametrize(("name", "value", "shown"), [
    (name, value, repr(value)) for name, values in DISALLOWED_STRINGS.items()
    for value in values] + [("classes", [-3], "[-3]"),
                            ("image_topics", ["ok", "not ok"], "not ok")])
def test_disallowed_start_value_fails_configure_with_the_reason(
    model_path: Path, name: str, value: Any, shown: str, capfd: pytest.CaptureFixture
) -> None:
    node = _node(model_path, "/start_refused", {"autostart": False, name: value})
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        log = capfd.readouterr().err
        failure = log[log.index("configure failed"):]
        assert name in failure and shown in failure
    finally:
        node.destroy_node()

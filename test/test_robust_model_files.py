"""Hostile and broken model files given to the lifecycle node suhd_detector (in this process).

Each file makes configure fail before anything runs (no outputs created, no code from the file
executed), with a clear reason in the log and in /diagnostics; then a good file written to the
same path (model_path is read-only) configures and detects without a restart.

Every case runs in CI: the node publishes /diagnostics at 20 Hz here instead of 1 Hz, so a case
waits for what the diagnostics say rather than for the next tick (about 2 s a case otherwise).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from safetensors import safe_open
from safetensors.torch import save_file
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from suhd_ros.ros.conversions import rgb_to_image
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.synthetic.scenes import generate_scene
from suhd_ros.yolo.model_file import LAMBDA_PREFIX

from ros_peer import Peer, diagnostics_often, stamped_header

pytestmark = pytest.mark.usefixtures("ros")

torch.set_num_threads(1)


class Payload:
    """Runs a shell command if ever unpickled: the marker file must never appear."""

    marker = ""

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def _raw_safetensors(header: dict | list, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _rewritten(model_path: Path, meta: Callable[[dict], None] = lambda m: None,
               tensors: Callable[[dict], None] = lambda t: None) -> bytes:
    """The good file with its metadata and / or tensors changed, as bytes."""
    with safe_open(str(model_path), "pt") as f:
        metadata = json.loads(f.metadata()["suhd"])
        contents = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    meta(metadata)
    tensors(contents)
    out = model_path.with_name("rewritten.safetensors")
    save_file(contents, str(out), metadata={"suhd": json.dumps(metadata)})
    return out.read_bytes()


def _first(contents: dict, prefix: str = "", suffix: str = "") -> str:
    return next(k for k in sorted(contents) if k.startswith(prefix) and k.endswith(suffix))


def _set(contents: dict, key: str, value: torch.Tensor) -> None:
    contents[key] = value


def _png() -> bytes:
    return cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def _torch_zip(obj: object) -> bytes:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"suhd_zip_{os.getpid()}.pt"
    torch.save(obj, path)
    data = path.read_bytes()
    path.unlink()
    return data


# name -> (bytes of the file given the good file, words the reason must contain)
CASES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "empty": (lambda g: b"", "is empty"),
    "header cut": (lambda g: g.read_bytes()[:5], "truncated"),
    "half the file": (lambda g: g.read_bytes()[: g.stat().st_size // 2], "truncated"),
    "png picture": (lambda g: _png(), "not a safetensors file"),
    "pytorch state dict": (lambda g: _torch_zip({"w": torch.zeros(2)}), "PyTorch pickle"),
    "hostile torch.save": (lambda g: _torch_zip({"w": Payload()}), "PyTorch pickle"),
    "hostile pickle protocol 2": (lambda g: pickle.dumps(Payload(), protocol=2),
                                  "PyTorch pickle"),
    "hostile pickle protocol 0": (lambda g: pickle.dumps(Payload(), protocol=0),
                                  "not a safetensors file"),
    "header not json": (lambda g: struct.pack("<Q", 6) + b"{oops}", "not a safetensors file"),
    "no suhd metadata": (lambda g: _raw_safetensors({"__metadata__": {"other": "x"}}),
                         "not a suhd_ros model file"),
    "metadata a list": (lambda g: _raw_safetensors({"__metadata__": [1, 2]}),
                        "not a suhd_ros model file"),
    "metadata nested too deep": (
        lambda g: _raw_safetensors({"__metadata__": {"suhd": "[" * 100_000 + "]" * 100_000}}),
        "invalid 'suhd' metadata JSON"),
    "format version 99": (lambda g: _rewritten(g, lambda m: m.update(format_version=99)),
                          "format version 99"),
    "names a string": (lambda g: _rewritten(g, lambda m: m.update(names="abcdefghij")),
                       "'names' must be a list"),
    "names too few": (lambda g: _rewritten(g, lambda m: m.update(names=["one"])),
                      "1 class names for nc=10"),
    "input size zero": (lambda g: _rewritten(g, lambda m: m.update(input_size=[0, 0])),
                        "'input_size' must be"),
    "input size huge": (lambda g: _rewritten(g, lambda m: m.update(input_size=[10**5, 10**5])),
                        "'input_size' must be"),
    "snn settings a list": (lambda g: _rewritten(g, lambda m: m.update(snn=[4])),
                            "'snn' must be an object"),
    "unknown spike coding": (lambda g: _rewritten(g, lambda m: m["snn"].update(coding="morse")),
                             "kind must be 'stdi' or 'rate'"),
    "description of another size": (
        lambda g: _rewritten(g, lambda m: m["description"].update(width_multiple=0.25)),
        "do not match the model"),
    "weight of the wrong shape": (
        lambda g: _rewritten(g, tensors=lambda t: _set(
            t, _first(t, suffix="conv.weight"), torch.zeros(1, 1, 1, 1))),
        "shape (1, 1, 1, 1)"),
    "NaN weights": (
        lambda g: _rewritten(g, tensors=lambda t: _set(
            t, _first(t, suffix="conv.weight"),
            torch.full_like(t[_first(t, suffix="conv.weight")], float("nan")))),
        "non-finite"),
    "lambda of the wrong shape": (
        lambda g: _rewritten(g, tensors=lambda t: _set(
            t, _first(t, LAMBDA_PREFIX), torch.ones(7))),
        "values, expected 1 or"),
    "lambda missing": (
        lambda g: _rewritten(g, tensors=lambda t: t.pop(_first(t, LAMBDA_PREFIX))),
        "no calibrated lambda"),
    "no lambdas at all": (
        lambda g: _rewritten(g, tensors=lambda t: [t.pop(k) for k in list(t)
                                                   if k.startswith(LAMBDA_PREFIX)]),
        "no calibrated thresholds"),
}

def _detect_one(peer: Peer, namespace: str) -> Detection2DArray:
    received: list[Detection2DArray] = []
    peer.node.create_subscription(Detection2DArray, f"{namespace}/detections",
                                  received.append, 10)
    pub = peer.node.create_publisher(Image, f"{namespace}/image", 10)
    msg = rgb_to_image(generate_scene(2, 80, 60).image, stamped_header(peer.node, "after"))
    return peer.spin_until(lambda: next((m for m in received if m.header == msg.header), None),
                           every=lambda: pub.publish(msg), every_s=0.3)


@pytest.mark.parametrize("case", CASES)
def test_bad_model_file_fails_configure_cleanly_and_a_good_one_then_loads(
    case: str, model_path: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    make, reason = CASES[case]
    Payload.marker = str(tmp_path / "unpickled")
    path = tmp_path / "model.safetensors"
    path.write_bytes(make(model_path))
    namespace = "/bad_" + "".join(c if c.isalnum() else "_" for c in case)
    node = SuhdDetectorNode(namespace=namespace, parameter_overrides=[
        Parameter("model_path", value=str(path)), Parameter("device", value="cpu"),
        Parameter("score_threshold", value=0.0), Parameter("autostart", value=False)])
    diagnostics_often(node)
    peer = Peer(namespace.strip("/") + "_peer", node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert not Path(Payload.marker).exists()
        assert peer.node.count_publishers(f"{namespace}/detections") == 0
        level, message, values = peer.wait_status(
            "device and model", lambda v: v["configure error"] != "")
        assert level == DiagnosticStatus.ERROR and reason in values["configure error"]
        assert message == f"configure failed: {values['configure error']}"
        assert f"configure failed: {values['configure error']}" in capfd.readouterr().err

        shutil.copy(model_path, path)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        level, _, values = peer.wait_status("device and model", lambda v: "engine" in v)
        assert level == DiagnosticStatus.OK and values["configure error"] == ""
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert len(_detect_one(peer, namespace).detections) > 0
    finally:
        peer.close()
        node.release_all()
        node.destroy_node()

"""The round trip against the live node: the synthetic camera and the detector node running over
real DDS, and the same scenes written to a bag and run through suhd-bag, give the same
detections frame by frame and so the same mAP against the camera's ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter
from vision_msgs.msg import Detection2DArray

from suhd_ros.detector import Detector
from suhd_ros.evaluation.coco import evaluate_detections
from suhd_ros.ros.bag_detect import BagDetection, BagSettings
from suhd_ros.ros.bag_io import BagReader, BagWriter, decode
from suhd_ros.ros.bag_synthetic import SyntheticSettings, write_synthetic
from suhd_ros.ros.camera_node import SuhdCameraNode
from suhd_ros.ros.conversions import msg_to_detections, stamp_ns
from suhd_ros.ros.detector_node import SuhdDetectorNode
from suhd_ros.synthetic.scenes import CLASS_NAMES, generate_scene

from ros_peer import Peer

pytestmark = pytest.mark.usefixtures("ros")

WIDTH, HEIGHT, SEED, SCENES = 96, 64, 777, 40
FRAMES = 6  # live frames to compare
SCORE = 0.0  # the tiny model's random weights: at 0 it always gives boxes


def _live(model_path: Path) -> dict[int, tuple]:
    """Scene index -> (boxes, scores, class ids) the live node published for that scene."""
    camera = SuhdCameraNode(namespace="/live", parameter_overrides=[
        Parameter("rate", value=20.0), Parameter("width", value=WIDTH),
        Parameter("height", value=HEIGHT), Parameter("seed", value=SEED)])
    node = SuhdDetectorNode(namespace="/live", parameter_overrides=[
        Parameter(k, value=v) for k, v in {
            "model_path": str(model_path), "device": "cpu", "threads": 1,
            "score_threshold": SCORE, "energy_every_n": 0, "publish_overlay": False}.items()])
    peer = Peer("bag_live_peer", camera, node)
    truth_boxes = [generate_scene(SEED + k, WIDTH, HEIGHT).boxes_xyxy for k in range(SCENES)]
    scene_of: dict[int, int] = {}  # stamp -> scene index, told by the ground truth's boxes
    found: dict[int, tuple] = {}

    def on_truth(msg: Detection2DArray) -> None:
        boxes = msg_to_detections(msg)[0]
        scene_of[stamp_ns(msg.header)] = next(
            k for k, b in enumerate(truth_boxes) if b.shape == boxes.shape
            and np.allclose(b, boxes, atol=1e-3))

    peer.node.create_subscription(Detection2DArray, "/live/image/ground_truth", on_truth, 50)
    peer.node.create_subscription(Detection2DArray, "/live/detections", lambda m: found.update(
        {stamp_ns(m.header): msg_to_detections(m)}), 50)
    try:
        peer.spin_until(lambda: len(set(found) & set(scene_of)) >= FRAMES, timeout_s=30.0)
    finally:
        peer.close()
        node.release_all()
        node.destroy_node()
        camera.destroy_node()
    return {scene_of[stamp]: detections for stamp, detections in found.items()
            if stamp in scene_of}


def _from_bag(model_path: Path, tmp_path: Path, scenes: int) -> dict[int, tuple]:
    """Scene index -> detections suhd-bag wrote for the same scenes recorded to a bag."""
    settings = SyntheticSettings(scenes, width=WIDTH, height=HEIGHT, seed=SEED)
    with BagWriter(tmp_path / "scenes") as writer:
        write_synthetic(writer, settings)
    reader = BagReader(tmp_path / "scenes")
    detector = Detector(model_path, "cpu", threads=1)
    with BagWriter(tmp_path / "out") as writer:
        BagDetection(reader, writer, detector, str(model_path), BagSettings(
            ("/image",), score_threshold=SCORE, energy_every_n=0)).run()
    reader.close()
    out = BagReader(tmp_path / "out")
    written = [msg_to_detections(decode(data, "vision_msgs/msg/Detection2DArray", "test"))
               for _, _, data in out.messages(["/suhd/detections"])]
    out.close()
    return dict(enumerate(written))


def _map(indices: list[int], detections: dict[int, tuple]) -> dict:
    scenes = [generate_scene(SEED + k, WIDTH, HEIGHT) for k in indices]
    return evaluate_detections([(s.boxes_xyxy, s.class_ids, WIDTH, HEIGHT) for s in scenes],
                               [detections[k] for k in indices], len(CLASS_NAMES), CLASS_NAMES)


def test_the_bag_gives_the_live_nodes_detections_and_map(model_path: Path,
                                                        tmp_path: Path) -> None:
    live = _live(model_path)
    indices = sorted(live)
    bag = _from_bag(model_path, tmp_path, indices[-1] + 1)
    assert len(indices) >= FRAMES and any(len(live[k][0]) for k in indices)
    for k in indices:
        for ours, theirs in zip(bag[k], live[k], strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-4)
    live_map, bag_map = _map(indices, live), _map(indices, bag)
    assert (bag_map["map50"], bag_map["map50_95"]) == (live_map["map50"], live_map["map50_95"])

"""suhd-bag end to end on tiny bags and the tiny model: OUT reads back with rosbags and with the
mcap reader's own ROS 2 decoder, holds the Detector's detections at the input's stamps, scores
like evaluation/coco.py, and bad input leaves no OUT."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from std_msgs.msg import Header
from test_vision_msgs_hashes import GOLDEN

from suhd_ros.detector import Detector
from suhd_ros.evaluation.coco import evaluate_detections
from suhd_ros.ros.bag_detect import (
    DETECTIONS,
    IMAGE,
    LABEL_INFO,
    BagDetection,
    BagSettings,
    BagSummary,
)
from suhd_ros.ros.bag_io import BagReader, BagWriter, decode, type_hash
from suhd_ros.ros.bag_synthetic import ENCODINGS, SyntheticSettings, write_synthetic
from suhd_ros.ros.conversions import label_info, msg_to_detections, stamp_ns
from suhd_ros.synthetic.scenes import CLASS_NAMES, generate_scene
from suhd_ros.tools.bag import main

WIDTH, HEIGHT = 96, 64  # the tiny model's input: nothing is scaled
FRAMES = 4
TRUTH = "/image/ground_truth"
LOSSLESS = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "png")


@pytest.fixture(scope="module")
def scenes_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic camera's first FRAMES scenes, written by `suhd-bag --synthetic`."""
    path = tmp_path_factory.mktemp("scenes") / "scenes"
    assert main(["--synthetic", str(FRAMES), "--width", str(WIDTH), "--height", str(HEIGHT),
                 "-o", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return Detector(model_path, "cpu", threads=1)


def _scenes(count: int = FRAMES) -> list[Any]:
    seed = SyntheticSettings(count).seed
    return [generate_scene(seed + k, WIDTH, HEIGHT) for k in range(count)]


def _run(source: Path, out: Path, detector: Detector, storage: str = "mcap",
         **settings: Any) -> BagSummary:
    """One in-process run over the image topic of ``source``, the scores threshold at 0 (the
    tiny model's random weights then always give boxes)."""
    reader = BagReader(source)
    topic = next(t for t, m in reader.topic_types().items() if m != DETECTIONS)
    with BagWriter(out, storage) as writer:
        summary = BagDetection(reader, writer, detector, "", BagSettings(
            (topic,), **{"score_threshold": 0.0, **settings})).run()
    reader.close()
    return summary


def _messages(path: Path, topic: str) -> list[tuple[int, Any]]:
    reader = BagReader(path)
    msgtype = reader.topic_types()[topic]
    found = [(log_ns, decode(data, msgtype, "test")) for _, log_ns, data in
             reader.messages([topic])]
    reader.close()
    return found


def _mcap(path: Path) -> tuple[dict[str, Any], dict[str, list[tuple[int, Any]]]]:
    """Channels by topic and decoded messages by topic, read by mcap + mcap-ros2-support."""
    (file,) = path.glob("*.mcap")
    decoded = defaultdict(list)
    with open(file, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        channels = {c.topic: (c, summary.schemas[c.schema_id]) for c in summary.channels.values()}
        for _, channel, message, msg in reader.iter_decoded_messages(log_time_order=True):
            decoded[channel.topic].append((message.log_time, msg))
    return channels, decoded


def test_out_reads_back_with_rosbags_and_with_the_mcap_ros2_decoder(
        scenes_bag: Path, model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([str(scenes_bag), "-o", str(out), "--model", str(model_path), "--threads", "1",
                 "--overlay", "compressed", "--copy-input", "--ground-truth", TRUTH,
                 "--score-threshold", "0", "--energy-every-n", "1", "--quiet"]) == 0
    channels, decoded = _mcap(out)
    assert set(channels) == {"/image", TRUTH, "/suhd/detections", "/suhd/label_info",
                             "/suhd/overlay/compressed", "/diagnostics"}
    for channel, schema in channels.values():
        assert (schema.encoding, channel.message_encoding) == ("ros2msg", "cdr")
        assert channel.metadata["topic_type_hash"] == type_hash(schema.name)
    assert channels["/suhd/detections"][0].metadata["topic_type_hash"] == \
        f"RIHS01_{GOLDEN['Detection2DArray']}"
    images, detections = decoded["/image"], decoded["/suhd/detections"]
    assert len(images) == len(detections) == FRAMES
    for (image_ns, image), (ns, found) in zip(images, detections, strict=True):
        assert ns == image_ns  # the input's bag time ...
        assert (found.header.stamp.sec, found.header.stamp.nanosec, found.header.frame_id) == \
            (image.header.stamp.sec, image.header.stamp.nanosec, image.header.frame_id)  # header
        assert found.detections and all(d.results[0].hypothesis.class_id.isdigit()
                                        for d in found.detections)
    ((_, labels),) = decoded["/suhd/label_info"]
    assert [c.class_name for c in labels.class_map] == list(CLASS_NAMES)
    overlay = cv2.imdecode(np.frombuffer(decoded["/suhd/overlay/compressed"][0][1].data,
                                         np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (HEIGHT, WIDTH, 3)
    energy = [{kv.key: kv.value for kv in s.values} for _, array in decoded["/diagnostics"]
              for s in array.status if s.name.endswith(": energy")]
    assert energy and float(energy[-1]["energy per frame SNN [J]"]) > 0
    # rosbags reads the same bag to the same messages
    reader = BagReader(out)
    assert reader.topic_types() == {t: schema.name for t, (_, schema) in channels.items()}
    assert all(c.digest == type_hash(c.msgtype) for c in reader.connections)
    reader.close()
    ours = [msg_to_detections(msg)[0] for _, msg in _messages(out, "/suhd/detections")]
    theirs = [[(d.bbox.center.position.x, d.bbox.size_x) for d in msg.detections]
              for _, msg in detections]
    for boxes, pairs in zip(ours, theirs, strict=True):
        np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, [x for x, _ in pairs],
                                   rtol=1e-6)


def test_detections_and_map_are_the_detectors_own(scenes_bag: Path, detector: Detector,
                                                 tmp_path: Path) -> None:
    """The node's protocol end to end: what OUT holds is detect() on the same frames, and the
    score is evaluate_detections of those against the scenes' own boxes."""
    summary = _run(scenes_bag, tmp_path / "out", detector, ground_truth=(TRUTH,))
    scenes = _scenes()
    direct = [detector.detect([s.image], score_threshold=0.0)[0] for s in scenes]
    written = [msg_to_detections(msg) for _, msg in _messages(tmp_path / "out",
                                                              "/suhd/detections")]
    for result, (boxes, scores, class_ids) in zip(direct, written, strict=True):
        np.testing.assert_allclose(boxes, result.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(scores, result.scores, atol=1e-6)
        np.testing.assert_array_equal(class_ids, result.class_ids)
    expected = evaluate_detections(
        [(s.boxes_xyxy, s.class_ids, WIDTH, HEIGHT) for s in scenes],
        [(r.boxes_xyxy, r.scores, r.class_ids) for r in direct], len(CLASS_NAMES), CLASS_NAMES)
    assert summary.scored_frames == FRAMES and summary.unmatched_frames == 0
    assert summary.score["map50"] == pytest.approx(expected["map50"], abs=1e-9)
    assert summary.score["map50_95"] == pytest.approx(expected["map50_95"], abs=1e-9)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_the_node_decodes(encoding: str, detector: Detector,
                                         tmp_path: Path) -> None:
    with BagWriter(tmp_path / "in") as writer:
        write_synthetic(writer, SyntheticSettings(2, width=WIDTH, height=HEIGHT,
                                                  encoding=encoding))
    summary = _run(tmp_path / "in", tmp_path / "out", detector)
    assert (summary.frames, summary.rejected) == (2, 0)
    if encoding in LOSSLESS:
        written = [msg_to_detections(m)[0] for _, m in _messages(tmp_path / "out",
                                                                 "/suhd/detections")]
        for scene, boxes in zip(_scenes(2), written, strict=True):
            expected = detector.detect([scene.image], score_threshold=0.0)[0].boxes_xyxy
            np.testing.assert_allclose(boxes, expected, atol=1e-3)


def test_several_cameras_are_named_as_in_the_node(detector: Detector, tmp_path: Path) -> None:
    with BagWriter(tmp_path / "in") as writer:
        for side in ("left", "right"):
            write_synthetic(writer, SyntheticSettings(2, f"/{side}/image_raw", WIDTH, HEIGHT))
    reader = BagReader(tmp_path / "in")
    with BagWriter(tmp_path / "out") as writer:
        summary = BagDetection(reader, writer, detector, "", BagSettings(
            ("/left/image_raw", "/right/image_raw"), namespace="stereo/")).run()
    reader.close()
    assert summary.frames == 4
    out = BagReader(tmp_path / "out")
    assert sorted(out.topic_types()) == ["/diagnostics", "/stereo/left/detections",
                                         "/stereo/left/label_info", "/stereo/right/detections",
                                         "/stereo/right/label_info"]
    assert out.count(["/stereo/left/detections"]) == out.count(["/stereo/right/detections"]) == 2
    out.close()


def test_sqlite3_in_and_out(detector: Detector, tmp_path: Path) -> None:
    with BagWriter(tmp_path / "in", "sqlite3") as writer:
        write_synthetic(writer, SyntheticSettings(2, width=WIDTH, height=HEIGHT))
    assert [p.suffix for p in (tmp_path / "in").iterdir() if p.suffix != ".yaml"] == [".db3"]
    summary = _run(tmp_path / "in", tmp_path / "out", detector, "sqlite3")
    assert summary.frames == 2
    assert (tmp_path / "out" / "out.db3").is_file()
    detections = _messages(tmp_path / "out", "/suhd/detections")
    images = _messages(tmp_path / "in", "/image")
    assert [stamp_ns(m.header) for _, m in detections] == [stamp_ns(m.header) for _, m in images]


def test_a_run_is_deterministic(scenes_bag: Path, detector: Detector, tmp_path: Path) -> None:
    """The same input and settings write the same messages at the same times. (Not the same
    bytes: rclpy's CDR serialiser leaves alignment padding uninitialised, as on the wire.)"""
    runs = []
    for name in ("a", "b"):
        _run(scenes_bag, tmp_path / name, detector, overlay="raw", ground_truth=(TRUTH,),
             energy_every_n=1)
        reader = BagReader(tmp_path / name)
        runs.append({topic: _messages(tmp_path / name, topic) for topic in reader.topic_types()})
        reader.close()
    assert set(runs[0]) == {"/suhd/detections", "/suhd/label_info", "/suhd/overlay",
                            "/diagnostics"}
    assert runs[0] == runs[1]


def test_a_stop_leaves_a_complete_bag(scenes_bag: Path, detector: Detector,
                                      tmp_path: Path) -> None:
    reader = BagReader(scenes_bag)
    stop = threading.Event()
    done = []

    def progress() -> None:
        done.append(1)
        if len(done) == 2:
            stop.set()

    with BagWriter(tmp_path / "out") as writer:
        summary = BagDetection(reader, writer, detector, "", BagSettings(("/image",))).run(
            stop, progress)
    assert summary.interrupted and summary.frames == 2
    assert len(_messages(tmp_path / "out", "/suhd/detections")) == 2


def _labels_only(tmp_path: Path, scenes_bag: Path) -> list[str]:
    with BagWriter(tmp_path / "in") as writer:
        writer.add_topic("/labels", LABEL_INFO)
        writer.write("/labels", 1, label_info(Header(), ["a"], 0.5))
    return [str(tmp_path / "in")]


def _no_frames(tmp_path: Path, scenes_bag: Path) -> list[str]:
    with BagWriter(tmp_path / "in") as writer:
        writer.add_topic("/image", IMAGE)
    return [str(tmp_path / "in"), "--image-topic", "/image"]


def _truncated(tmp_path: Path, scenes_bag: Path) -> list[str]:
    whole = (scenes_bag / "scenes.mcap").read_bytes()
    (tmp_path / "in.mcap").write_bytes(whole[: len(whole) // 2])
    return [str(tmp_path / "in.mcap")]


def _noise(tmp_path: Path, scenes_bag: Path) -> list[str]:
    (tmp_path / "in.db3").write_bytes(bytes(range(256)) * 64)
    return [str(tmp_path / "in.db3")]


def _corrupt_message(tmp_path: Path, scenes_bag: Path) -> list[str]:
    """A bag whose index is sound but whose third image does not deserialise."""
    with BagWriter(tmp_path / "in", "sqlite3") as writer:
        write_synthetic(writer, SyntheticSettings(3, width=WIDTH, height=HEIGHT))
    with sqlite3.connect(tmp_path / "in" / "in.db3") as db:
        db.execute("UPDATE messages SET data = ? WHERE id = (SELECT MAX(m.id) FROM messages m "
                   "JOIN topics t ON m.topic_id = t.id WHERE t.name = '/image')",
                   (b"\x00\x01\x00\x00garbage",))
    db.close()
    return [str(tmp_path / "in")]


def _existing_output(tmp_path: Path, scenes_bag: Path) -> list[str]:
    (tmp_path / "out").mkdir()
    return [str(scenes_bag)]


BAD_INPUT = {
    "missing topic": (lambda t, s: [str(s), "--image-topic", "/nope"], "no topic /nope"),
    "not an image": (lambda t, s: [str(s), "--image-topic", TRUTH],
                     f"{TRUTH} holds {DETECTIONS}; expected"),
    "truth of an unknown type": (lambda t, s: [str(s), "--ground-truth", "/image"],
                                 f"/image holds {IMAGE}; expected {DETECTIONS}"),
    "no image topic": (_labels_only, "holds 0 image topics"),
    "no frames": (_no_frames, "no messages on /image"),
    "truncated": (_truncated, "cannot open as a rosbag2 bag"),
    "not a bag": (_noise, "cannot open as a rosbag2 bag"),
    "corrupt message": (_corrupt_message, "does not deserialise"),
    "output exists": (_existing_output, "exists already"),
    "no model file": (lambda t, s: [str(s), "--model", str(t / "none.safetensors")],
                      "model file not found"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_no_output(case: str, scenes_bag: Path, model_path: Path,
                                             tmp_path: Path, capsys) -> None:
    make, reason = BAD_INPUT[case]
    args = make(tmp_path, scenes_bag)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["-o", str(tmp_path / "out"), "--model", str(model_path), "--threads", "1",
                 "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("suhd-bag: error: ") and err.count("\n") == 1, err
    assert reason in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no OUT, no temporary left


def test_ctrl_c_stops_after_a_frame_and_leaves_a_readable_bag(model_path: Path,
                                                              tmp_path: Path) -> None:
    frames = 400
    with BagWriter(tmp_path / "in") as writer:
        write_synthetic(writer, SyntheticSettings(frames, width=WIDTH, height=HEIGHT))
    process = subprocess.Popen(
        [sys.executable, "-m", "suhd_ros.tools.bag", str(tmp_path / "in"), "-o",
         str(tmp_path / "out"), "--model", str(model_path), "--threads", "1",
         "--overlay", "raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = b""
    deadline = time.monotonic() + 60
    while not re.search(rb"\b[1-9]\d*/%d" % frames, progress) and time.monotonic() < deadline:
        progress += process.stderr.read1(4096)  # tqdm's bar: "  3%|...| 12/400 [...]"
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130, stdout
    done = int(re.search(rb"holds the first (\d+) of %d frames" % frames, stdout)[1])
    assert 0 < done < frames
    assert len(_messages(tmp_path / "out", "/suhd/detections")) == done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]

"""suhd-bag with depth and tracking: the synthetic moving sequence written as a real bag (depth,
camera_info, truth with identities), read back by rosbags and the mcap ROS 2 decoder, and
detected (the tiny model: plumbing, not accuracy) with 3D detections and markers under the
colour image's header and track ids that are the library's and last across frames. How well
the ids follow the true objects is the benchmark's (benchmarks/tracking_3d.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from test_depth_inputs import _compressed_depth

from suhd_ros.detector import Detector
from suhd_ros.geometry import Intrinsics, box_to_3d, depth_in_metres
from suhd_ros.ros.bag_detect import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    BagDetection,
    BagSettings,
    find_depth_topics,
)
from suhd_ros.ros.bag_io import BagError, BagReader, BagWriter, decode, ros_time
from suhd_ros.ros.bag_synthetic import CAMERA_QOS, SyntheticSettings
from suhd_ros.ros.conversions import msg_to_detections, rgb_to_image
from suhd_ros.ros.depth_inputs import camera_info_msg, depth_to_image
from suhd_ros.synthetic.sequence import SceneSequence, SequenceStyle
from suhd_ros.tools.bag import main
from suhd_ros.tracking import NO_ID, make_tracker

WIDTH, HEIGHT, FRAMES = 96, 64, 8  # the tiny model's input: nothing is scaled
SEED = SyntheticSettings(1).seed
OUT_TOPICS = ("/suhd/detections", "/suhd/detections_3d", "/suhd/markers")


@pytest.fixture(scope="module")
def moving_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("moving") / "moving"
    assert main(["--synthetic", str(FRAMES), "--motion", "--width", str(WIDTH), "--height",
                 str(HEIGHT), "--storage", "sqlite3", "-o", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def tracked_bag(moving_bag: Path, model_path: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model over the moving bag (its best 5 boxes, all tracked: its scores are low),
    ids from ByteTrack, depth found by itself."""
    out = tmp_path_factory.mktemp("tracked") / "tracked"
    assert main([str(moving_bag), "-o", str(out), "--model", str(model_path), "--tracker",
                 "bytetrack", "--score-threshold", "0", "--max-detections", "5",
                 "--track-threshold", "0", "--threads", "1", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The Detector probes its graph at construction in torch's threads: one, as the runs
    detect, or two OpenMP threads on a busy 2-core machine took minutes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _by_topic(path: Path) -> dict[str, list[Any]]:
    reader = BagReader(path)
    types = reader.topic_types()
    found = defaultdict(list)
    for connection, _, data in reader.messages(sorted(types)):
        found[connection.topic].append(decode(data, connection.msgtype, "test"))
    reader.close()
    return found


def _mcap(path: Path) -> dict[str, list[tuple[int, Any]]]:
    (file,) = path.glob("*.mcap")
    decoded = defaultdict(list)
    with open(file, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for _, channel, message, msg in reader.iter_decoded_messages(log_time_order=True):
            decoded[channel.topic].append((message.log_time, msg))
    return decoded


def _stamp(msg: Any) -> tuple[int, int, str]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id


def test_motion_bag_holds_the_sequence_with_depth_and_camera_info(moving_bag: Path) -> None:
    messages = _by_topic(moving_bag)
    assert set(messages) == {"/image", "/depth/image", "/camera_info", "/image/ground_truth",
                             "/image/ground_truth_3d"}
    sequence = SceneSequence(SEED, WIDTH, HEIGHT, SequenceStyle(fps=10.0))
    k = Intrinsics.from_fov(WIDTH, HEIGHT, SequenceStyle().hfov_deg)
    for index in range(FRAMES):
        frame = sequence.next_frame()
        image, depth, info, truth, truth_3d = (messages[t][index] for t in (
            "/image", "/depth/image", "/camera_info", "/image/ground_truth",
            "/image/ground_truth_3d"))
        assert len({_stamp(m) for m in (image, depth, info, truth, truth_3d)}) == 1
        assert (depth.encoding, depth.width, depth.height) == ("16UC1", WIDTH, HEIGHT)
        np.testing.assert_array_equal(
            np.frombuffer(bytes(depth.data), "<u2").reshape(HEIGHT, WIDTH), frame.depth_mm)
        np.testing.assert_allclose(info.k, k.k())
        assert [d.id for d in truth.detections] == [str(t) for t in frame.track_ids.tolist()]
        np.testing.assert_allclose([[d.bbox.center.position.x, d.bbox.center.position.y,
                                     d.bbox.center.position.z] for d in truth_3d.detections],
                                   frame.centers_m.reshape(-1, 3), atol=1e-6)


def test_3d_and_markers_are_framed_and_stamped_like_the_image(moving_bag: Path,
                                                              tracked_bag: Path) -> None:
    decoded = _mcap(tracked_bag)  # the mcap reader's own decoder: another reader than ours
    assert set(decoded) >= set(OUT_TOPICS)
    source = _by_topic(moving_bag)
    k = Intrinsics.from_fov(WIDTH, HEIGHT, SequenceStyle().hfov_deg)
    located = 0
    for index, image in enumerate(source["/image"]):
        (log_2d, found), (log_3d, found_3d), (log_markers, markers) = (
            decoded[t][index] for t in OUT_TOPICS)
        assert log_2d == log_3d == log_markers
        assert _stamp(found) == _stamp(found_3d) == _stamp(image)
        assert all(_stamp(d) == _stamp(image) for d in found_3d.detections)
        assert all(m.header.frame_id == image.header.frame_id for m in markers.markers)
        # each located object is its 2D box on the frame's own depth image, with its id
        depth = source["/depth/image"][index]
        depth_m = depth_in_metres(np.frombuffer(bytes(depth.data), "<u2").reshape(HEIGHT, WIDTH))
        by_id = {d.id: d for d in found.detections}
        boxes = [box_to_3d(depth_m, _box(d), k) for d in found.detections]
        assert len(found_3d.detections) == sum(b is not None for b in boxes)
        for detection, box in zip(found_3d.detections,
                                  [b for b in boxes if b is not None], strict=True):
            assert detection.id in by_id
            np.testing.assert_allclose([detection.bbox.center.position.x,
                                        detection.bbox.center.position.y,
                                        detection.bbox.center.position.z], box.center, rtol=1e-4)
            located += 1
        shown = {m.id for m in markers.markers if m.action == 0 and m.ns == "suhd_boxes"}  # ADD
        assert {int(d.id) for d in found_3d.detections if d.id} <= shown
    assert located >= FRAMES


def _box(detection: Any) -> np.ndarray:
    centre, w, h = detection.bbox.center.position, detection.bbox.size_x, detection.bbox.size_y
    return np.array([centre.x - w / 2, centre.y - h / 2, centre.x + w / 2, centre.y + h / 2])


def test_track_ids_are_the_trackers_and_last_across_frames(tracked_bag: Path) -> None:
    replay = make_tracker("bytetrack", 0.0)  # the same detections through the library: same ids
    frames_of: dict[str, int] = defaultdict(int)
    for found in _by_topic(tracked_bag)["/suhd/detections"]:
        boxes, scores, class_ids = msg_to_detections(found)
        expected = replay.update(boxes, scores, class_ids).tolist()
        assert [d.id for d in found.detections] == [str(i) if i != NO_ID else ""
                                                    for i in expected]
        for detection in found.detections:
            if detection.id:
                frames_of[detection.id] += 1
    assert frames_of and max(frames_of.values()) >= FRAMES - 2  # an id kept frame after frame


@pytest.mark.parametrize("compressed", [False, True])
def test_a_depth_image_logged_after_its_colour_frame_is_matched(
        compressed: bool, model_path: Path, tmp_path: Path) -> None:
    """A recorder logs the depth image a few ms after its colour frame: the colour frame waits
    for it (the window), so each frame has its 3D detections; raw or compressedDepth."""
    sequence = SceneSequence(3, 96, 64)
    depth_topic = "/cam/depth/image_raw" + ("/compressedDepth" if compressed else "")
    with BagWriter(tmp_path / "in") as writer:
        for topic, msgtype in (("/cam/image_raw", IMAGE),
                               (depth_topic, COMPRESSED_IMAGE if compressed else IMAGE),
                               ("/cam/camera_info", CAMERA_INFO)):
            writer.add_topic(topic, msgtype, CAMERA_QOS)
        for index in range(3):
            t_ns = 10**18 + index * 100_000_000
            header = Header(frame_id="cam", stamp=ros_time(t_ns))
            frame = sequence.next_frame()
            writer.write("/cam/image_raw", t_ns, rgb_to_image(frame.image, header))
            writer.write("/cam/camera_info", t_ns + 1_000_000, camera_info_msg(sequence.k, header))
            writer.write(depth_topic, t_ns + 15_000_000, _compressed_depth(
                frame.depth_mm, "16UC1", ms=t_ns // 1_000_000) if compressed
                else depth_to_image(frame.depth_mm, header))
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), "-o", str(out), "--model", str(model_path),
                 "--score-threshold", "0", "--threads", "1", "--quiet"]) == 0
    diagnostics = _by_topic(out)["/diagnostics"]
    counts = [{kv.key: kv.value for kv in s.values} for array in diagnostics
              for s in array.status if s.name.endswith(": 3D")]
    assert counts and counts[-1]["frames 3d"] == "3" and counts[-1]["frames without depth"] == "0"
    assert all(m.detections for m in _by_topic(out)["/suhd/detections_3d"])


def _topics_bag(path: Path, topics: dict[str, str]) -> BagReader:
    """A bag with one small message on each topic (Image or CameraInfo)."""
    header = Header(frame_id="cam", stamp=ros_time(10**18))
    with BagWriter(path) as writer:
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype, CAMERA_QOS)
            message = (CameraInfo(header=header) if msgtype == CAMERA_INFO else
                       Image(header=header, encoding="16UC1", width=1, height=1, step=2,
                             data=b"\0\0"))
            writer.write(topic, 10**18, message)
    return BagReader(path)


def test_depth_topics_are_found_next_to_the_image(tmp_path: Path) -> None:
    reader = _topics_bag(tmp_path / "rs", {
        "/cam/color/image_raw": IMAGE, "/cam/color/camera_info": CAMERA_INFO,
        "/cam/depth/image_rect_raw": IMAGE, "/cam/depth/camera_info": CAMERA_INFO,
        "/cam/aligned_depth_to_color/image_raw": IMAGE, "/other/depth/image": IMAGE})
    assert find_depth_topics(reader, "/cam/color/image_raw/compressed") == (
        "/cam/aligned_depth_to_color/image_raw", "/cam/color/camera_info")
    reader.close()
    reader = _topics_bag(tmp_path / "none", {"/image": IMAGE})
    assert find_depth_topics(reader, "/image") == ("", "")
    reader.close()
    reader = _topics_bag(tmp_path / "two", {"/image": IMAGE, "/a/depth": IMAGE,
                                            "/b/depth": IMAGE, "/camera_info": CAMERA_INFO})
    with pytest.raises(BagError, match="--depth-topic"):
        find_depth_topics(reader, "/image")
    reader.close()


@pytest.mark.parametrize("option", [["--depth-topic", "/nope"],
                                    ["--depth-topic", "/image/ground_truth"],
                                    ["--camera-info-topic", "/depth/image"],
                                    ["--depth-topic", "/depth/image", "--depth-topic", "/x"]])
def test_bad_depth_topics_are_one_line_and_no_output(
        option: list[str], moving_bag: Path, model_path: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([str(moving_bag), "-o", str(out), "--model", str(model_path),
                 "--image-topic", "/image", *option, "--quiet"]) == 2
    assert not out.exists()
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("suhd-bag: error:")


def test_no_depth_leaves_3d_out(moving_bag: Path, model_path: Path, tmp_path: Path) -> None:
    reader = BagReader(moving_bag)
    with BagWriter(tmp_path / "out") as writer:
        detector = Detector(model_path, "cpu", threads=1)
        summary = BagDetection(reader, writer, detector, "",
                               BagSettings(("/image",), score_threshold=0.0)).run()
    reader.close()
    assert summary.frames == FRAMES
    assert set(BagReader(tmp_path / "out").topic_types()) == {
        "/diagnostics", "/suhd/detections", "/suhd/label_info"}


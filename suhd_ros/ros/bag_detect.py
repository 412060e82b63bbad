"""The detector over a recorded bag: what the node would publish, written to a new bag.

Each image on the chosen topics goes through the node's own steps (image_to_rgb, the Detector,
detections_to_msg, draw_detections, the node's diagnostics functions) and the results are
written at the image's bag time with the image's header. Time is the bag's: /diagnostics comes
once per second of recording, figured over bag time, and holds no wall-clock figures (no
latency), so a run is deterministic. Detections on frames whose header matches a ground-truth
message are scored with the project's COCO mAP (suhd_ros/evaluation/coco.py).

Tracking and 3D, as the node: a tracker per camera fills Detection2D.id; a camera with a depth
image topic and a camera_info topic (named, or found next to its image topic: see
find_depth_topics) also gets detections_3d and markers, under the colour image's header. Its
depth is matched by stamp within ``depth_window_ms`` (the node's StampQueue), and since a
recorder may log a depth image a little after its colour frame, a colour frame waits until the
bag's time has passed its own by that window before it is detected.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from suhd_ros.detector import Detector, FrameResult
from suhd_ros.evaluation.coco import Detections, GroundTruth, evaluate_detections
from suhd_ros.frame_statistics import CameraStatistics, FrameStatistics, InferenceErrors
from suhd_ros.ros import diagnostics
from suhd_ros.ros.bag_io import (
    BagError,
    BagReader,
    BagWriter,
    copy_definition,
    decode,
    qos,
    ros_time,
)
from suhd_ros.ros.conversions import (
    detections_to_msg,
    image_to_rgb,
    label_info,
    msg_to_detections,
    rgb_to_compressed,
    rgb_to_image,
    stamp_ns,
)
from suhd_ros.ros.depth_inputs import DepthInputs, detections_3d_to_msg
from suhd_ros.ros.detector_node import camera_keys
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.ros.markers import MarkerSet
from suhd_ros.ros.overlay import draw_detections
from suhd_ros.tracking import (
    DEFAULT_TRACK_THRESHOLD,
    NO_ID,
    ObjectTracker,
    make_tracker,
    track_detections,
)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
DETECTIONS = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS_3D = "vision_msgs/msg/Detection3DArray"
MARKERS = "visualization_msgs/msg/MarkerArray"
OVERLAYS = ("none", "raw", "compressed")
NODE_NAME = "suhd_bag"
DIAGNOSTICS_PERIOD_NS = 1_000_000_000  # the node's 1 Hz, in bag time
OUTPUT_QOS = (qos(10),)  # the node's: reliable, volatile, keep last 10
LABEL_QOS = (qos(1, transient_local=True),)  # the node's: late readers get the labels

FrameKey = tuple[str, int]  # (frame_id, stamp [ns]): what pairs an image with its ground truth


@dataclass(frozen=True)
class BagSettings:
    """What to read and write, and the node's live settings."""

    image_topics: tuple[str, ...]
    ground_truth: tuple[str, ...] = ()
    namespace: str = "/suhd"
    overlay: str = "none"  # one of OVERLAYS
    copy_input: bool = False
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    classes: tuple[int, ...] = ()
    energy_every_n: int = 10
    tracker: str = "none"  # one of tracking.TRACKERS
    track_threshold: float = DEFAULT_TRACK_THRESHOLD
    track_per_class: bool = True
    # per image topic, in its order: the depth image and camera_info topics ("": no 3D)
    depth_topics: tuple[str, ...] = ()
    camera_info_topics: tuple[str, ...] = ()
    depth_window_ms: float = 20.0
    depth_queue: int = 10


@dataclass
class BagSummary:
    """What a run did: frames, time split between the Detector and the rest, the score."""

    images: int  # image messages on the chosen topics
    frames: int = 0  # detected
    rejected: int = 0  # not decodable (as the node: counted, logged, skipped)
    last_reject: str = ""
    copied: int = 0  # input messages copied
    not_copied: list[str] = field(default_factory=list)  # topics --copy-input could not keep
    inference_s: float = 0.0  # the Detector's time (preprocess, network, NMS)
    wall_s: float = 0.0
    interrupted: bool = False
    scored_frames: int = 0
    unmatched_frames: int = 0  # detected frames without ground truth
    score: dict | None = None  # evaluate_detections' result

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def overhead_ms(self) -> float:
        """Per frame, everything but the Detector: reading, decoding, messages, writing."""
        return 1e3 * (self.wall_s - self.inference_s) / self.frames if self.frames else 0.0


@dataclass
class _Camera:
    """One image topic and where its outputs go."""

    topic: str
    key: str  # "" for a single camera, else its name under the namespace
    prefix: str  # of its output topics, ending in "/"
    statistics: CameraStatistics = field(default_factory=CameraStatistics)
    labelled: bool = False  # LabelInfo written
    tracker: ObjectTracker | None = None
    depth_topic: str = ""
    camera_info_topic: str = ""
    depth: DepthInputs | None = None  # with depth_topic and camera_info_topic
    markers: MarkerSet = field(default_factory=MarkerSet)


def image_topics(reader: BagReader) -> list[str]:
    """The bag's topics of an image type, sorted, but for depth images (named "depth"), which
    are not the detector's input."""
    return sorted(t for t, msgtype in reader.topic_types().items()
                  if msgtype in IMAGE_TYPES and "depth" not in t.lower())


def _image_namespace(topic: str) -> str:
    """The namespace of an image topic's camera: "/cam/color/image_raw/compressed" ->
    "/cam/color"."""
    return topic.removesuffix("/compressed").rpartition("/")[0]


def _nearest_topics(topics: list[str], image_topic: str) -> list[str]:
    """The topics sharing the most leading name segments with the image topic's namespace
    (a camera's depth and camera_info sit next to its image: /cam/color/camera_info,
    /cam/aligned_depth_to_color/image_raw)."""
    base = [s for s in _image_namespace(image_topic).split("/") if s]

    def shared(topic: str) -> int:
        count = 0
        for a, b in zip(base, [s for s in topic.split("/") if s], strict=False):
            if a != b:
                break
            count += 1
        return count

    best = max((shared(t) for t in topics), default=-1)
    return [t for t in topics if shared(t) == best]


def find_depth_topics(reader: BagReader, image_topic: str) -> tuple[str, str]:
    """(depth image topic, camera_info topic) for an image topic, ("", "") when the bag has
    none: the Image (or compressedDepth CompressedImage) topics with "depth" in their name and
    the CameraInfo topics, nearest to
    the image topic's namespace; among depth images an "aligned" one is preferred (it is in
    the colour image's pixels, which locating a box needs). BagError when that still leaves
    more than one: the user names them."""
    types = reader.topic_types()
    depth = [t for t, m in types.items() if m in IMAGE_TYPES and "depth" in t.lower()]
    infos = [t for t, m in types.items() if m == CAMERA_INFO]
    if not depth or not infos:
        return "", ""
    depth = _nearest_topics(depth, image_topic)
    depth = [t for t in depth if "aligned" in t.lower()] or depth
    infos = _nearest_topics(infos, image_topic)
    for kind, found in (("depth image", depth), ("camera_info", infos)):
        if len(found) > 1:
            raise BagError(f"{reader.path}: {len(found)} {kind} topics could belong to "
                           f"{image_topic} ({', '.join(sorted(found))}): choose with "
                           f"--{'depth' if kind == 'depth image' else 'camera-info'}-topic")
    return depth[0], infos[0]


def check_topics(reader: BagReader, settings: BagSettings) -> None:
    """BagError unless every topic asked for is in the bag, of a type we read, with messages."""
    types = reader.topic_types()
    wanted = [(t, IMAGE_TYPES) for t in settings.image_topics]
    wanted += [(t, (DETECTIONS,)) for t in settings.ground_truth]
    wanted += [(t, IMAGE_TYPES) for t in settings.depth_topics if t]  # raw or compressedDepth
    wanted += [(t, (CAMERA_INFO,)) for t in settings.camera_info_topics if t]
    for topic, allowed in wanted:
        if topic not in types:
            there = sorted(t for t, m in types.items() if m in allowed)
            raise BagError(f"{reader.path}: no topic {topic} (topics of its type there: "
                           f"{', '.join(there) or 'none'})")
        if types[topic] not in allowed:
            raise BagError(f"{reader.path}: {topic} holds {types[topic]}; expected "
                           f"{' or '.join(allowed)}")
    if reader.count(settings.image_topics) == 0:
        raise BagError(f"{reader.path}: no messages on {', '.join(settings.image_topics)}")


def _namespace(settings: BagSettings) -> str:
    """The absolute namespace without a trailing slash ("" for the root)."""
    name = settings.namespace.strip("/")
    return f"/{name}" if name else ""


def _cameras(settings: BagSettings) -> list[_Camera]:
    """The node's naming: one camera's outputs straight under the namespace, several cameras'
    each under the name that tells their topics apart."""
    topics = list(settings.image_topics)
    keys = [""] if len(topics) == 1 else camera_keys(topics)
    base = _namespace(settings)
    depth = settings.depth_topics or ("",) * len(topics)
    infos = settings.camera_info_topics or ("",) * len(topics)
    if not len(depth) == len(infos) == len(topics):
        raise BagError(f"{len(topics)} image topics but {len(depth)} depth and {len(infos)} "
                       "camera_info topics: give one of each per image topic")
    cameras = []
    for topic, key, depth_topic, info_topic in zip(topics, keys, depth, infos, strict=True):
        camera = _Camera(topic, key, f"{base}/{key}/" if key else f"{base}/",
                         tracker=make_tracker(settings.tracker, settings.track_threshold,
                                              per_class=settings.track_per_class),
                         depth_topic=depth_topic, camera_info_topic=info_topic)
        if depth_topic and info_topic:
            camera.depth = DepthInputs(settings.depth_queue,
                                       round(settings.depth_window_ms * 1e6))
        cameras.append(camera)
    return cameras


class BagDetection:
    """One run over one bag: declare the outputs, then run()."""

    def __init__(self, reader: BagReader, writer: BagWriter, detector: Detector,
                 model_path: str, settings: BagSettings) -> None:
        self.reader, self.writer, self.detector = reader, writer, detector
        self.settings = settings
        self.cameras = {c.topic: c for c in _cameras(settings)}
        self.node = f"{_namespace(settings)}/{NODE_NAME}"
        self._model_path = model_path
        self._statistics = FrameStatistics(0.0)
        self._errors = InferenceErrors()
        self._next_report_ns: int | None = None
        self._detections: dict[FrameKey, tuple[Detections, int, int]] = {}
        self._truth: dict[FrameKey, tuple[np.ndarray, np.ndarray]] = {}  # boxes, class ids
        check_topics(reader, settings)
        self.summary = BagSummary(images=reader.count(settings.image_topics))
        self._copied = self._declare()

    def _overlay_topic(self, camera: _Camera) -> str:
        suffix = "/compressed" if self.settings.overlay == "compressed" else ""
        return f"{camera.prefix}overlay{suffix}"

    def _declare(self) -> set[str]:
        """Declare every output topic (and, with copy_input, the input's); the copied ones."""
        outputs: list[tuple[str, str, tuple]] = [("/diagnostics", DIAGNOSTICS, OUTPUT_QOS)]
        for camera in self.cameras.values():
            outputs += [(f"{camera.prefix}detections", DETECTIONS, OUTPUT_QOS),
                        (f"{camera.prefix}label_info", LABEL_INFO, LABEL_QOS)]
            if camera.depth is not None:
                outputs += [(f"{camera.prefix}detections_3d", DETECTIONS_3D, OUTPUT_QOS),
                            (f"{camera.prefix}markers", MARKERS, OUTPUT_QOS)]
            if self.settings.overlay != "none":
                overlay_type = COMPRESSED_IMAGE if self.settings.overlay == "compressed" else IMAGE
                outputs.append((self._overlay_topic(camera), overlay_type, OUTPUT_QOS))
        taken = {topic for topic, _, _ in outputs}
        for topic, msgtype, offered in outputs:
            self.writer.add_topic(topic, msgtype, offered)
        return self._declare_copies(taken) if self.settings.copy_input else set()

    def _declare_copies(self, taken: set[str]) -> set[str]:
        """Each input topic under its own name, definition, hash and QoS; a topic without a
        definition (in the bag or installed) is left out and named in the summary."""
        copied = set()
        for connection in self.reader.connections:
            topic = connection.topic
            if topic in taken:
                raise BagError(f"{self.reader.path}: has {topic} already, which this run "
                               "writes: give another --namespace, or leave out --copy-input")
            if topic in copied:
                continue
            definition = copy_definition(connection)
            if definition is None:
                self.summary.not_copied.append(topic)
                continue
            offered = getattr(connection.ext, "offered_qos_profiles", [])
            self.writer.add_topic(topic, connection.msgtype, offered, *definition)
            copied.add(topic)
        return copied

    def run(self, stop: threading.Event | None = None,
            progress: Callable[[], Any] | None = None) -> BagSummary:
        """Every message in bag order until the end or ``stop``; the summary, scored when
        ground truth was asked for."""
        started = time.perf_counter()
        depth = {c.depth_topic: c for c in self.cameras.values() if c.depth is not None}
        infos = {c.camera_info_topic: c for c in self.cameras.values() if c.depth is not None}
        topics = (set(self.settings.image_topics) | set(self.settings.ground_truth)
                  | self._copied | set(depth) | set(infos))
        # colour frames waiting for the depth logged up to the window after them
        wait_ns = round(self.settings.depth_window_ms * 1e6)
        pending: deque[tuple[_Camera, str, int, bytes]] = deque()
        for connection, log_ns, data in self.reader.messages(sorted(topics)):
            while pending and pending[0][2] + wait_ns < log_ns:
                self._image(*pending.popleft(), progress)
            if connection.topic in self._copied:
                self.writer.write_raw(connection.topic, log_ns, data)
                self.summary.copied += 1
            if connection.topic in self.cameras:
                pending.append((self.cameras[connection.topic], connection.msgtype, log_ns,
                                data))
                if not depth:  # nothing to wait for
                    self._image(*pending.popleft(), progress)
            elif connection.topic in self.settings.ground_truth:
                self._ground_truth(connection.topic, log_ns, data)
            self._side_input(connection.topic, connection.msgtype, log_ns, data, depth, infos)
            if stop is not None and stop.is_set():
                self.summary.interrupted = True  # frames still waiting are not done
                break
        while pending and not self.summary.interrupted:
            self._image(*pending.popleft(), progress)
        if self._next_report_ns is not None:  # the frames since the last tick: always some
            self._diagnostics(self._next_report_ns)
        self.summary.wall_s = time.perf_counter() - started
        if self.settings.ground_truth:
            self._score()
        return self.summary

    def _side_input(self, topic: str, msgtype: str, log_ns: int, data: bytes,
                    depth: dict[str, _Camera], infos: dict[str, _Camera]) -> None:
        """A depth image or camera_info into its camera's queues."""
        if topic in depth:
            depth[topic].depth.on_depth(decode(data, msgtype, f"{self.reader.path}: {topic} "
                                               f"at {log_ns} ns"))
        if topic in infos:
            infos[topic].depth.on_info(decode(data, msgtype, f"{self.reader.path}: {topic} "
                                              f"at {log_ns} ns"))

    def _image(self, camera: _Camera, msgtype: str, log_ns: int, data: bytes,
               progress: Callable[[], Any] | None = None) -> None:
        self._one_image(camera, msgtype, log_ns, data)
        if progress:
            progress()

    def _one_image(self, camera: _Camera, msgtype: str, log_ns: int, data: bytes) -> None:
        self._tick(log_ns)
        msg = decode(data, msgtype, f"{self.reader.path}: {camera.topic} at {log_ns} ns")
        camera.statistics.receive(log_ns / 1e9)
        try:
            rgb = image_to_rgb(msg)
        except ImageDecodeError as exc:
            camera.statistics.reject(str(exc))
            self.summary.rejected += 1
            self.summary.last_reject = f"{camera.topic} at {log_ns} ns: {exc}"
            return
        if not camera.labelled:
            self.writer.write(f"{camera.prefix}label_info", log_ns, label_info(
                Header(stamp=msg.header.stamp), self.detector.names,
                self.settings.score_threshold))
            camera.labelled = True
        self._detect(camera, msg.header, log_ns, rgb)

    def _detect(self, camera: _Camera, header: Header, log_ns: int, rgb: np.ndarray) -> None:
        s = self.settings
        result = self.detector.detect(
            [rgb], score_threshold=s.score_threshold, iou_threshold=s.iou_threshold,
            max_detections=s.max_detections, classes=list(s.classes) or None,
            count_spikes=self._statistics.count_spikes(s.energy_every_n))[0]
        track_ids, result.class_ids = track_detections(
            camera.tracker, result.boxes_xyxy, result.scores, result.class_ids)
        ids = [str(t) if t != NO_ID else "" for t in track_ids]
        self.writer.write(f"{camera.prefix}detections", log_ns, detections_to_msg(
            header, result.boxes_xyxy, result.scores, result.class_ids, ids))
        if camera.depth is not None:
            self._write_3d(camera, header, log_ns, rgb.shape, result, (track_ids, ids))
        if s.overlay != "none":
            image = draw_detections(rgb, result.boxes_xyxy, result.scores, result.class_ids,
                                    self.detector.names, track_ids=track_ids)
            overlay = (rgb_to_compressed(image, header) if s.overlay == "compressed"
                       else rgb_to_image(image, header))
            self.writer.write(self._overlay_topic(camera), log_ns, overlay)
        camera.statistics.process(s.overlay != "none")
        self._statistics.add(0, 0, result.inference_s, result.energy)  # no latency offline
        self.summary.frames += 1
        self.summary.inference_s += result.inference_s
        key = (header.frame_id, stamp_ns(header))
        self._detections[key] = ((result.boxes_xyxy, result.scores, result.class_ids),
                                 rgb.shape[1], rgb.shape[0])

    def _write_3d(self, camera: _Camera, header: Header, log_ns: int, shape: tuple[int, ...],
                  result: FrameResult, tracks: tuple[list[int], list[str]]) -> None:
        """detections_3d and markers under the colour image's header (the node's _publish_3d);
        a frame without matching depth or camera_info has none located (counted in the 3D
        diagnostics, whose message says why)."""
        assert camera.depth is not None
        track_ids, ids = tracks
        boxes = camera.depth.locate(header, (shape[1], shape[0]), result.boxes_xyxy)
        if boxes is None:
            boxes = [None] * len(track_ids)
        self.writer.write(f"{camera.prefix}detections_3d", log_ns, detections_3d_to_msg(
            header, boxes, result.scores, result.class_ids, ids))
        self.writer.write(f"{camera.prefix}markers", log_ns, camera.markers.update(
            header, boxes, result.class_ids, track_ids, self.detector.names))

    def _ground_truth(self, topic: str, log_ns: int, data: bytes) -> None:
        msg: Detection2DArray = decode(data, DETECTIONS, f"{self.reader.path}: {topic} at "
                                       f"{log_ns} ns")
        boxes, _scores, class_ids = msg_to_detections(msg)
        key = (msg.header.frame_id, stamp_ns(msg.header))
        self._truth[key] = (boxes, class_ids)

    def _tick(self, log_ns: int) -> None:
        """The node's 1 Hz diagnostics timer in bag time: the first frame starts it; a frame
        at or past a tick reports at the latest tick before it (once, after a gap)."""
        if self._next_report_ns is None:
            self._statistics.report_period(log_ns / 1e9)  # the first period starts here
            self._next_report_ns = log_ns + DIAGNOSTICS_PERIOD_NS
        elif log_ns >= self._next_report_ns:
            self._diagnostics(log_ns - (log_ns - self._next_report_ns) % DIAGNOSTICS_PERIOD_NS)

    def _diagnostics(self, log_ns: int) -> None:
        """The node's statuses for the bag time since the previous report, at ``log_ns``."""
        now = log_ns / 1e9
        period_s = self._statistics.report_period(now)
        statuses = []
        for camera in self.cameras.values():
            report = camera.statistics.report(now, period_s)
            statuses += diagnostics.camera_statuses(self.node, camera.key, camera.topic, report,
                                                    True, True)
            if camera.depth is not None:
                statuses.append(camera.depth.status(
                    diagnostics.status_name(self.node, "3D", camera.key), camera.depth_topic))
        name = partial(diagnostics.status_name, self.node)
        statuses += [
            diagnostics.model_status(name("device and model"), self.detector, self._model_path,
                                     self._errors.report(), ""),
            diagnostics.energy_status(name("energy"), self._statistics, self.detector.engine,
                                      self.settings.energy_every_n)]
        header = Header(stamp=ros_time(log_ns))
        self.writer.write("/diagnostics", log_ns, DiagnosticArray(header=header, status=statuses))
        self._next_report_ns = log_ns + DIAGNOSTICS_PERIOD_NS

    def _score(self) -> None:
        """COCO mAP of the detected frames that have ground truth, in bag order."""
        truth: list[GroundTruth] = []
        found: list[Detections] = []
        for key, (detections, width, height) in self._detections.items():
            if key in self._truth:
                truth.append((*self._truth[key], width, height))
                found.append(detections)
        self.summary.scored_frames = len(truth)
        self.summary.unmatched_frames = len(self._detections) - len(truth)
        if truth:
            names = self.detector.names
            self.summary.score = evaluate_detections(truth, found, len(names), names)

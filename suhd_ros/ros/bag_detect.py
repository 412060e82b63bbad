"""The detector over a recorded bag: what the node would publish, written to a new bag.

Each image on the chosen topics goes through the node's own steps (image_to_rgb, the Detector,
detections_to_msg, draw_detections, the node's diagnostics functions) and the results are
written at the image's bag time with the image's header. Time is the bag's: /diagnostics comes
once per second of recording, figured over bag time, and holds no wall-clock figures (no
latency), so a run is deterministic. Detections on frames whose header matches a ground-truth
message are scored with the project's COCO mAP (suhd_ros/evaluation/coco.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from suhd_ros.detector import Detector
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
from suhd_ros.ros.detector_node import camera_keys
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.ros.overlay import draw_detections

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
DETECTIONS = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
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


def image_topics(reader: BagReader) -> list[str]:
    """The bag's topics of an image type, sorted."""
    return sorted(t for t, msgtype in reader.topic_types().items() if msgtype in IMAGE_TYPES)


def check_topics(reader: BagReader, settings: BagSettings) -> None:
    """BagError unless every topic asked for is in the bag, of a type we read, with messages."""
    types = reader.topic_types()
    wanted = [(t, IMAGE_TYPES) for t in settings.image_topics]
    wanted += [(t, (DETECTIONS,)) for t in settings.ground_truth]
    for topic, allowed in wanted:
        if topic not in types:
            raise BagError(f"{reader.path}: no topic {topic} (image topics there: "
                           f"{', '.join(image_topics(reader)) or 'none'})")
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
    return [_Camera(topic, key, f"{base}/{key}/" if key else f"{base}/")
            for topic, key in zip(topics, keys, strict=True)]


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
        topics = set(self.settings.image_topics) | set(self.settings.ground_truth) | self._copied
        for connection, log_ns, data in self.reader.messages(sorted(topics)):
            if connection.topic in self._copied:
                self.writer.write_raw(connection.topic, log_ns, data)
                self.summary.copied += 1
            if connection.topic in self.cameras:
                self._image(self.cameras[connection.topic], connection.msgtype, log_ns, data)
                if progress:
                    progress()
            elif connection.topic in self.settings.ground_truth:
                self._ground_truth(connection.topic, log_ns, data)
            if stop is not None and stop.is_set():
                self.summary.interrupted = True
                break
        if self._next_report_ns is not None:  # the frames since the last tick: always some
            self._diagnostics(self._next_report_ns)
        self.summary.wall_s = time.perf_counter() - started
        if self.settings.ground_truth:
            self._score()
        return self.summary

    def _image(self, camera: _Camera, msgtype: str, log_ns: int, data: bytes) -> None:
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
        self.writer.write(f"{camera.prefix}detections", log_ns, detections_to_msg(
            header, result.boxes_xyxy, result.scores, result.class_ids))
        if s.overlay != "none":
            image = draw_detections(rgb, result.boxes_xyxy, result.scores, result.class_ids,
                                    self.detector.names)
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

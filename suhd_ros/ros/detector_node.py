"""The lifecycle node `suhd_detector`: images in; detections, overlay and diagnostics out.

One model serves one or several cameras. Subscription callbacks only keep each camera's newest
frame; a worker thread decodes the frames that are waiting, infers them as one batch and
publishes. A frame replaced before the worker took it counts as dropped. A frame that cannot be
decoded counts as rejected. Nothing raised while processing ends the node. The figures live in
suhd_ros/frame_statistics.py and their statuses in suhd_ros/ros/diagnostics.py; this file is
the ROS glue.

Retrying a failed configure: the model parameters are read-only, as parameters that need a
reload should be, so `on_configure` re-reads them every time and a failure returns the node to
"unconfigured" with the reason in the log and in /diagnostics. Fix the file at `model_path`
(or the device) and call configure again; a different `model_path` needs a restart.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_policy_name_from_kind
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from suhd_ros.detector import (
    BACKENDS,
    ENGINES,
    DetectionCancelled,
    Detector,
    DetectorError,
    FrameResult,
    parse_device,
)
from suhd_ros.frame_statistics import (
    CameraStatistics,
    FrameStatistics,
    InferenceErrors,
    overlay_line,
)
from suhd_ros.ros import diagnostics
from suhd_ros.ros.conversions import (
    detections_to_msg,
    image_to_rgb,
    label_info,
    rgb_to_image,
    stamp_ns,
)
from suhd_ros.ros.depth_inputs import DepthInputs, detections_3d_to_msg
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.ros.markers import MarkerSet
from suhd_ros.ros.node_main import run_node
from suhd_ros.ros.overlay import draw_detections
from suhd_ros.ros.parameters import descriptor
from suhd_ros.ros.qos import RELIABILITY_POLICIES, qos_from_parameters
from suhd_ros.tracking import (
    DEFAULT_TRACK_THRESHOLD,
    NO_ID,
    TRACKERS,
    ObjectTracker,
    make_tracker,
    track_detections,
)

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile, keep last 10
# transient local: a subscriber that comes late still gets the labels
LABEL_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRANSPORTS = ("raw", "compressed")
DEPTH_TRANSPORTS = ("raw", "compressedDepth")  # image_transport's names
LOG_THROTTLE_S = 5.0
# at process exit, wait this long for a frame being inferred, then leave the (daemon) worker
SHUTDOWN_JOIN_S = 1.0


RELOAD: dict[str, Any] = {"read_only": True}  # used at configure only: a change needs a reload
# name, default (or type), description, descriptor options
PARAMETERS: tuple[tuple[str, Any, str, dict[str, Any]], ...] = (
    ("model_path", "", "model file: absolute, or relative to the package's models/; empty = "
     "the embedded default model", RELOAD),
    ("device", "auto", "auto, cpu, cuda or cuda:N; CUDA missing -> CPU", RELOAD),
    ("engine", "fused", f"one of {list(ENGINES)}", RELOAD),
    ("backend", "torch", f"one of {list(BACKENDS)}: PyTorch, or the exported graph in ONNX "
     "Runtime / OpenVINO (a missing runtime fails configure)", RELOAD),
    ("threads", 0, "CPU threads of inference; 0 = all cores but one (at least 1), which the "
     "executor, DDS and the camera need", {"ints": (0, 256), **RELOAD}),
    ("timesteps", 0, "T, the SNN's timesteps; 0 = the model file's",
     {"ints": (0, 64), **RELOAD}),
    ("compression", 0, "f_c, the burst cap of one timestep; 0 = the model file's",
     {"ints": (0, 16), **RELOAD}),
    ("score_threshold", 0.25, "least score of a detection (live)", {"floats": (0.0, 1.0)}),
    ("iou_threshold", 0.45, "IoU above which NMS removes a box (live)", {"floats": (0.0, 1.0)}),
    ("max_detections", 100, "most detections per image (live)", {"ints": (1, 1000)}),
    ("classes", Parameter.Type.INTEGER_ARRAY, "class indices to keep; empty = all (live)", {}),
    ("publish_overlay", True, "render the overlay image while someone subscribes to it (live)",
     {}),
    ("energy_every_n", 10, "count spikes and energy on one batch of frames in n (live): 1 = "
     "every frame (slower), 0 = never (fastest)", {"ints": (0, 10000)}),
    ("counting_thread", True, "count spikes on a thread of their own when inference leaves a "
     "core free (PyTorch fused engine on the CPU): a counted frame takes less time, for more "
     "CPU", RELOAD),
    ("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
     "sensor_msgs/CompressedImage on 'image/compressed'", RELOAD),
    ("image_topics", Parameter.Type.STRING_ARRAY, "several cameras, one model: their image "
     "topics; empty = the single topic 'image'", RELOAD),
    ("qos_reliability", "best_effort", "input QoS reliability: best_effort accepts every "
     "publisher; reliable, system_default", RELOAD),
    ("qos_depth", 5, "input QoS history depth", {"ints": (1, 100), **RELOAD}),
    ("tracker", "none", f"one of {list(TRACKERS)}: fills Detection2D.id with a track id, "
     "stable across frames, per camera (the 'trackers' library)", RELOAD),
    ("track_threshold", DEFAULT_TRACK_THRESHOLD, "least score that starts a track",
     {"floats": (0.0, 1.0), **RELOAD}),
    ("track_per_class", True, "each class tracked on its own: a track never jumps to an object of "
     "another class (false: class-agnostic, a class flip keeps the track)", RELOAD),
    ("depth", False, "3D: subscribe to 'depth/image' (aligned, 16UC1 mm or 32FC1 m) and "
     "'camera_info' beside each camera's image and publish 'detections_3d' and 'markers'",
     RELOAD),
    ("depth_transport", "raw", "raw: sensor_msgs/Image on 'depth/image'; compressedDepth: "
     "sensor_msgs/CompressedImage on 'depth/image/compressedDepth' (image_transport's "
     "compressed_depth_image_transport layout)", RELOAD),
    ("depth_window_ms", 20.0, "largest stamp difference between a colour frame and its depth "
     "image", {"floats": (0.0, 1000.0), **RELOAD}),
    ("depth_queue", 10, "depth images kept per camera for stamp matching",
     {"ints": (1, 100), **RELOAD}),
    ("autostart", True, "configure and activate at start", RELOAD),
)


@dataclass(frozen=True)
class LiveSettings:
    """Settings that change at run time; replaced as a whole, so the worker reads one snapshot."""

    score_threshold: float
    iou_threshold: float
    max_detections: int
    classes: tuple[int, ...]
    publish_overlay: bool
    energy_every_n: int


LIVE_PARAMETERS = tuple(f.name for f in fields(LiveSettings))


@dataclass
class Camera:
    """One input stream: its topics, publishers, newest waiting frame and figures."""

    key: str  # "" for the single default camera, else the output namespace
    input_topic: str
    detections_pub: Any
    labels_pub: Any
    overlay_pub: Any
    subscription: Any = None
    pending: Image | CompressedImage | None = None
    statistics: CameraStatistics = field(default_factory=CameraStatistics)
    tracker: ObjectTracker | None = None
    depth: DepthInputs | None = None  # with its publishers and subscriptions, when depth is on
    detections_3d_pub: Any = None
    markers_pub: Any = None
    markers: MarkerSet = field(default_factory=MarkerSet)
    depth_subscriptions: list[Any] = field(default_factory=list)


Batch = list[tuple[Camera, Image | CompressedImage]]  # the frames the worker takes at once


def camera_keys(topics: Sequence[str]) -> list[str]:
    """Output namespace per camera: the topics' distinguishing name, else camera<index>.

    Trailing segments all topics share are dropped ("/left/image_raw", "/right/image_raw" ->
    "left", "right"; one topic "/cam/image_raw" -> "cam"); clashing or empty names fall back
    to indices.
    """
    segments = [[s for s in topic.split("/") if s] for topic in topics]
    while all(len(s) > 1 for s in segments) and len({s[-1] for s in segments}) == 1:
        for s in segments:
            s.pop()
    keys = [s[-1] if s else "" for s in segments]
    if len(set(keys)) < len(keys) or not all(keys):
        return [f"camera{i}" for i in range(len(topics))]
    return keys


def camera_topics(image_topics: Sequence[str], transport: str) -> list[tuple[str, str]]:
    """(output namespace, input topic) per camera: one camera on 'image' when no topics are
    given; the compressed transport subscribes to each topic's '/compressed'."""
    topics = list(image_topics) or ["image"]
    keys = [""] if topics == ["image"] else camera_keys(topics)
    suffix = "/compressed" if transport == "compressed" else ""
    return [(key, topic + suffix) for key, topic in zip(keys, topics, strict=True)]


def _choice(name: str, allowed: Sequence[str]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"{name} must be one of {list(allowed)}, got {value!r}"
    return check


def _check_device(value: Any) -> str | None:
    """The Detector's own device check, before anything is loaded."""
    try:
        parse_device(value)
    except DetectorError as exc:
        return str(exc)
    return None


def _check_classes(value: Any) -> str | None:
    if all(k >= 0 for k in value or []):
        return None
    return f"classes must be class indices >= 0, got {list(value)}"


def _check_topics(value: Any) -> str | None:
    try:
        for topic in value or []:
            validate_topic_name(topic)
    except InvalidTopicNameException as exc:
        return f"image_topics: {exc}"
    return None


VALIDATORS: dict[str, Callable[[Any], str | None]] = {
    "device": _check_device,
    "engine": _choice("engine", ENGINES),
    "backend": _choice("backend", BACKENDS),
    "tracker": _choice("tracker", tuple(TRACKERS)),
    "input_transport": _choice("input_transport", TRANSPORTS),
    "depth_transport": _choice("depth_transport", DEPTH_TRANSPORTS),
    "qos_reliability": _choice("qos_reliability", tuple(RELIABILITY_POLICIES)),
    "classes": _check_classes,
    "image_topics": _check_topics,
}


def inference_threads() -> int:
    """All cores but one: on two cores, with the executor, DDS and a camera beside them, two
    torch threads took 45 ms per frame in the node and one thread 18.5 ms (measured here with
    the 320 px model of the time)."""
    return max(1, (os.cpu_count() or 1) - 1)


def _incompatible_qos_warning(topic: str, policy_kind: Any, publishers: Sequence[Any],
                              requested: str) -> str:
    """Who offers what, and the parameter that fixes it: a QoS mismatch is the commonest reason
    a detector sees no images."""
    offers = "; ".join(
        f"{p.node_namespace.rstrip('/')}/{p.node_name} offers "
        f"{p.qos_profile.reliability.name.lower()}, {p.qos_profile.durability.name.lower()}"
        for p in publishers)
    return (f"a publisher on {topic} has a QoS this subscription cannot accept (policy "
            f"{qos_policy_name_from_kind(policy_kind)}): {offers or 'publisher gone'}; "
            f"this node requests {requested} (parameter qos_reliability; "
            f"best_effort accepts every publisher)")


class SuhdDetectorNode(LifecycleNode):
    """SUHD spiking YOLOv5 detector as a managed node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("suhd_detector", **kwargs)
        self.declare_parameters("", [(name, default, descriptor(description, **options))
                                     for name, default, description, options in PARAMETERS])
        self._live = self._read_live_settings()
        # guards pending frames and figures; notified when a frame waits or the worker must stop
        self._condition = threading.Condition()
        self._cameras: list[Camera] = []
        self._detector: Detector | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()  # set: the worker ends, abandoning its inference
        self._active = False
        self._enabled = True
        self._configure_error = ""
        self._statistics = FrameStatistics(time.monotonic())
        self._errors = InferenceErrors()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        if self._param("autostart"):
            self._autostart()

    def _param(self, name: str) -> Any:
        """A parameter's value; the array parameters declared without a value read as []."""
        value = self.get_parameter_or(name).value
        return [] if value is None else value

    def _read_live_settings(self, changes: dict[str, Any] | None = None) -> LiveSettings:
        values = {name: self._param(name) for name in LIVE_PARAMETERS} | (changes or {})
        return LiveSettings(**values | {"classes": tuple(values["classes"] or ())})

    def _parameter_problem(self, name: str, value: Any) -> str | None:
        check = VALIDATORS.get(name)
        problem = check(value) if check else None
        if problem is None and name == "classes" and self._detector is not None:
            nc = len(self._detector.names)
            if any(k >= nc for k in value or []):
                problem = f"classes must be below {nc} (the model's class count), got {value}"
        return problem

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse invalid values with the reason; apply live ones to the next frame."""
        for p in parameters:
            problem = self._parameter_problem(p.name, p.value)
            if problem is not None:
                return SetParametersResult(successful=False, reason=problem)
        changes = {p.name: p.value for p in parameters if p.name in LIVE_PARAMETERS}
        if changes:
            self._live = self._read_live_settings(changes)
            if "score_threshold" in changes and self._active:
                self._publish_labels(self._live.score_threshold)
        return SetParametersResult(successful=True)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """~/enable: pause (false) or resume (true) detection without a lifecycle transition."""
        with self._condition:
            self._enabled = bool(request.data)
            for camera in self._cameras:
                camera.pending = None
        response.success = True
        response.message = "detection resumed" if self._enabled else "detection paused"
        return response

    def _autostart(self) -> None:
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load the model, create the outputs. SUCCESS -> inactive; FAILURE -> unconfigured."""
        problems = [p for name in VALIDATORS
                    if (p := self._parameter_problem(name, self._param(name)))]
        if not problems:
            try:
                self._detector = self._load_detector()
                self._cameras = self._make_cameras()
            except Exception as exc:  # e.g. a bad model file, CUDA out of memory, a bad topic
                problems.append(str(exc) if isinstance(exc, DetectorError)
                                else f"{type(exc).__name__}: {exc}")
                self._release()
        self._configure_error = "; ".join(problems)
        if problems:
            self.get_logger().error(f"configure failed: {self._configure_error}")
            return TransitionCallbackReturn.FAILURE
        d = self._detector
        self.get_logger().info(f"loaded {d.model_path} on {d.device}: engine {d.engine}, "
                               f"backend {d.backend.name}, "
                               f"T={d.T}, f_c={d.f_c}, {len(d.names)} classes")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Enable outputs, announce labels, subscribe, start the worker. SUCCESS -> active."""
        result = super().on_activate(state)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._publish_labels(self._live.score_threshold)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="suhd_inference", daemon=True)
        self._worker.start()
        qos = qos_from_parameters(self._param("qos_reliability"), "volatile",
                                  self._param("qos_depth"))
        message_type = CompressedImage if self._param("input_transport") == "compressed" else Image
        for camera in self._cameras:
            camera.subscription = self.create_subscription(
                message_type, camera.input_topic, partial(self._on_image, camera), qos,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=partial(self._on_incompatible_qos, camera)))
            if camera.depth is not None:
                prefix = f"{camera.key}/" if camera.key else ""
                depth_type, depth_topic = self._depth_input()
                camera.depth_subscriptions = [
                    self.create_subscription(depth_type, prefix + depth_topic,
                                             camera.depth.on_depth, qos),
                    self.create_subscription(CameraInfo, prefix + "camera_info",
                                             camera.depth.on_info, qos)]
        self._active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker; the model stays loaded. SUCCESS -> inactive."""
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Release the model and the outputs. SUCCESS -> unconfigured."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Stop and release everything, from any state. SUCCESS -> finalized."""
        self.release_all()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """A transition raised: release everything. SUCCESS -> unconfigured."""
        self.release_all()
        return TransitionCallbackReturn.SUCCESS

    def release_all(self, join_timeout_s: float | None = None) -> None:
        """Stop the worker and drop the model and outputs, without a transition.

        At process exit the context may already be shut down, and then no transition can run;
        ``join_timeout_s`` bounds the wait for a frame still being inferred (None: no bound).
        """
        self._stop_processing(join_timeout_s)
        self._release()

    def _load_detector(self) -> Detector:
        with warnings.catch_warnings(record=True) as caught:  # e.g. "cuda missing: using CPU"
            warnings.simplefilter("always")
            detector = Detector(self._param("model_path"), device=self._param("device"),
                                engine=self._param("engine"), timesteps=self._param("timesteps"),
                                compression=self._param("compression"),
                                threads=self._param("threads") or inference_threads(),
                                backend=self._param("backend"),
                                counting_thread=self._param("counting_thread"))
        for warning in caught:
            self.get_logger().warning(str(warning.message))
        return detector

    def _make_cameras(self) -> list[Camera]:
        cameras = camera_topics(self._param("image_topics"), self._param("input_transport"))
        made = [Camera(key, topic, *self._outputs(f"{key}/" if key else ""),
                       tracker=make_tracker(self._param("tracker"),
                                            self._param("track_threshold"),
                                            per_class=self._param("track_per_class")))
                for key, topic in cameras]
        if self._param("depth"):
            for camera in made:
                self._add_depth(camera)
        return made

    def _depth_input(self) -> tuple[type, str]:
        """The depth images' message type and topic (relative to the camera's prefix)."""
        if self._param("depth_transport") == "compressedDepth":
            return CompressedImage, "depth/image/compressedDepth"
        return Image, "depth/image"

    def _add_depth(self, camera: Camera) -> None:
        """The 3D outputs of a camera; its depth subscriptions come at activation."""
        prefix = f"{camera.key}/" if camera.key else ""
        camera.depth = DepthInputs(self._param("depth_queue"),
                                   round(self._param("depth_window_ms") * 1e6))
        camera.detections_3d_pub = self.create_lifecycle_publisher(
            Detection3DArray, prefix + "detections_3d", OUTPUT_QOS)
        camera.markers_pub = self.create_lifecycle_publisher(MarkerArray, prefix + "markers",
                                                             OUTPUT_QOS)

    def _outputs(self, prefix: str) -> tuple[Any, Any, Any]:
        """One camera's publishers: detections, label_info, overlay (Camera's field order)."""
        return (
            self.create_lifecycle_publisher(Detection2DArray, prefix + "detections", OUTPUT_QOS),
            self.create_lifecycle_publisher(LabelInfo, prefix + "label_info", LABEL_QOS),
            self.create_lifecycle_publisher(Image, prefix + "overlay", OUTPUT_QOS))

    def _stop_processing(self, join_timeout_s: float | None = None) -> None:
        self._active = False
        for camera in self._cameras:
            if camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None
            for subscription in camera.depth_subscriptions:
                self.destroy_subscription(subscription)
            camera.depth_subscriptions = []
        with self._condition:
            self._stop.set()  # also abandons a frame being inferred: no wait for a whole one
            for camera in self._cameras:
                camera.pending = None
            self._condition.notify_all()
        if self._worker is not None:
            self._worker.join(join_timeout_s)
            self._worker = None

    def _release(self) -> None:
        for camera in self._cameras:
            for publisher in (camera.detections_pub, camera.labels_pub, camera.overlay_pub,
                              camera.detections_3d_pub, camera.markers_pub):
                if publisher is not None:
                    self.destroy_lifecycle_publisher(publisher)
        self._cameras = []
        self._detector = None

    def _on_image(self, camera: Camera, msg: Image | CompressedImage) -> None:
        """Keep only the newest frame; the worker does everything else."""
        with self._condition:
            camera.statistics.receive(time.monotonic())
            if not self._enabled:
                return
            if camera.pending is not None:
                camera.statistics.counts.dropped += 1
            camera.pending = msg
            self._condition.notify()

    def _on_incompatible_qos(self, camera: Camera, info: Any) -> None:
        with self._condition:
            camera.statistics.counts.incompatible_qos += info.total_count_change
        topic = camera.subscription.topic_name if camera.subscription else camera.input_topic
        self.get_logger().warning(
            _incompatible_qos_warning(topic, info.last_policy_kind,
                                      self.get_publishers_info_by_topic(topic),
                                      self._param("qos_reliability")),
            throttle_duration_sec=LOG_THROTTLE_S)

    def _work(self) -> None:
        """Worker thread: take the waiting frames of all cameras, process them as one batch."""
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stop.is_set() or any(
                    c.pending is not None for c in self._cameras))
                if self._stop.is_set():
                    return
                batch = [(c, c.pending) for c in self._cameras if c.pending is not None]
                for camera, _ in batch:
                    camera.pending = None
            try:
                self._process(batch)
            except DetectionCancelled:
                return  # stopped while inferring: the normal way out
            except Exception as exc:  # nothing may end the worker; count it, log it, go on
                if self._stop.is_set() or not self.context.ok():
                    return  # stopped while publishing: the outputs are gone, nothing went wrong
                with self._condition:
                    error = self._errors.add(exc)
                self.get_logger().error(f"inference failed: {error}",
                                        throttle_duration_sec=LOG_THROTTLE_S)

    def _decode(self, batch: Batch) -> list[tuple[Camera, Header, np.ndarray]]:
        frames = []
        for camera, msg in batch:
            try:
                frames.append((camera, msg.header, image_to_rgb(msg)))
            except ImageDecodeError as exc:
                with self._condition:
                    camera.statistics.reject(str(exc))
                self.get_logger().error(f"rejected a frame on {camera.input_topic}: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
        return frames

    def _process(self, batch: Batch) -> None:
        frames = self._decode(batch)
        detector = self._detector
        if not frames or detector is None:
            return
        live = self._live
        count_spikes = self._statistics.count_spikes(live.energy_every_n)
        results = detector.detect(
            [rgb for _, _, rgb in frames], score_threshold=live.score_threshold,
            iou_threshold=live.iou_threshold, max_detections=live.max_detections,
            classes=list(live.classes) or None, count_spikes=count_spikes, cancel=self._stop)
        for (camera, header, rgb), result in zip(frames, results, strict=True):
            track_ids, result.class_ids = track_detections(
                camera.tracker, result.boxes_xyxy, result.scores, result.class_ids)
            ids = [str(t) if t != NO_ID else "" for t in track_ids]
            camera.detections_pub.publish(detections_to_msg(
                header, result.boxes_xyxy, result.scores, result.class_ids, ids))
            if camera.depth is not None:
                self._publish_3d(camera, header, rgb.shape, result, (track_ids, ids),
                                 detector.names)
            rendered = live.publish_overlay and camera.overlay_pub.get_subscription_count() > 0
            if rendered:
                with self._condition:
                    info = overlay_line(camera.statistics.output_hz, self._statistics)
                overlay = draw_detections(rgb, result.boxes_xyxy, result.scores,
                                          result.class_ids, detector.names, info, track_ids)
                camera.overlay_pub.publish(rgb_to_image(overlay, header))
            self._record(camera, header, result, rendered)

    def _publish_3d(self, camera: Camera, header: Header, shape: tuple[int, ...],
                    result: FrameResult, tracks: tuple[list[int], list[str]],
                    names: Sequence[str]) -> None:
        """detections_3d and markers in the colour image's frame and stamp; a frame without
        usable depth or camera_info publishes none located (markers deleted) and warns."""
        track_ids, ids = tracks
        with self._condition:  # the counters are read by the diagnostics timer
            boxes = camera.depth.locate(header, (shape[1], shape[0]), result.boxes_xyxy)
            problem = camera.depth.last_problem
        if boxes is None:
            self.get_logger().warning(f"no 3D for {camera.input_topic}: {problem}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            boxes = [None] * len(ids)
        camera.detections_3d_pub.publish(detections_3d_to_msg(
            header, boxes, result.scores, result.class_ids, ids))
        if camera.markers_pub.get_subscription_count() > 0:  # for rviz2: built when shown
            camera.markers_pub.publish(camera.markers.update(
                header, boxes, result.class_ids, track_ids, names))

    def _record(self, camera: Camera, header: Header, result: FrameResult, rendered: bool) -> None:
        now_ns = self.get_clock().now().nanoseconds
        with self._condition:
            camera.statistics.process(rendered)
            self._statistics.add(stamp_ns(header), now_ns, result.inference_s, result.energy)

    def _publish_labels(self, threshold: float) -> None:
        if self._detector is None:
            return
        header = Header(stamp=self.get_clock().now().to_msg())
        for camera in self._cameras:
            camera.labels_pub.publish(label_info(header, self._detector.names, threshold))

    def _publish_diagnostics(self) -> None:
        """About 1 Hz: one DiagnosticStatus per concern, rates over the last period."""
        node = self.get_fully_qualified_name()
        name = partial(diagnostics.status_name, node)
        with self._condition:
            now = time.monotonic()
            period_s = self._statistics.report_period(now)
            statuses: list[DiagnosticStatus] = []
            for camera in self._cameras:
                report = camera.statistics.report(now, period_s)
                statuses += diagnostics.camera_statuses(node, camera.key, camera.input_topic,
                                                        report, self._active, self._enabled)
                if camera.depth is not None:
                    prefix = f"{camera.key}/" if camera.key else ""
                    statuses.append(camera.depth.status(
                        diagnostics.status_name(node, "3D", camera.key),
                        self.resolve_topic_name(prefix + self._depth_input()[1])))
            statuses += [
                diagnostics.latency_status(name("latency"), self._statistics),
                diagnostics.model_status(name("device and model"), self._detector,
                                         self._param("model_path"), self._errors.report(),
                                         self._configure_error),
                diagnostics.energy_status(name("energy"), self._statistics, self._param("engine"),
                                          self._live.energy_every_n)]
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=statuses))


def main(args: list[str] | None = None) -> int:
    """`python -m suhd_ros.ros.detector_node`; the console script `suhd_detector` runs it through
    node_main.detector, which also makes a signal during the imports quiet."""
    return run_node(SuhdDetectorNode, "suhd_detector", args, (ParameterException,),
                    on_exit=lambda node: node.release_all(join_timeout_s=SHUTDOWN_JOIN_S))

if __name__ == "__main__":
    sys.exit(main())

"""The lifecycle node `suhd_detector`: images in; detections, overlay and diagnostics out.

One model serves one or several cameras. Subscription callbacks only keep each camera's newest
frame; a worker thread decodes the frames that are waiting, infers them as one batch and
publishes. A frame replaced before the worker took it counts as dropped. A frame that cannot be
decoded counts as rejected. Nothing raised while processing ends the node.

Retrying a failed configure: the model parameters are read-only, as parameters that need a
reload should be, so `on_configure` re-reads them every time and a failure returns the node to
"unconfigured" with the reason in the log and in /diagnostics. Fix the file at `model_path`
(or the device) and call configure again; a different `model_path` needs a restart.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_policy_name_from_kind
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Detection2DArray, LabelInfo

from suhd_ros.detector import ENGINES, Detector, DetectorError, FrameResult
from suhd_ros.ros.conversions import (
    detections_to_msg,
    diagnostic_status,
    image_to_rgb,
    label_info,
    rgb_to_image,
    stamp_ns,
)
from suhd_ros.ros.image_encoding import ImageDecodeError
from suhd_ros.ros.node_main import run_node
from suhd_ros.ros.overlay import draw_detections
from suhd_ros.ros.qos import RELIABILITY_POLICIES, qos_from_parameters

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile, keep last 10
# transient local: a subscriber that comes late still gets the labels
LABEL_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRANSPORTS = ("raw", "compressed")
NO_INPUT_WARN_S = 3.0  # no frame for this long while active -> WARN
STATS_WINDOW = 100  # frames the latency / inference / energy figures are taken over
LOG_THROTTLE_S = 5.0
# at process exit, wait this long for a frame being inferred, then leave the (daemon) worker
SHUTDOWN_JOIN_S = 1.0
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_OK, _WARN, _ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


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
class Counts:
    """Monotonic frame counters of one camera."""

    received: int = 0
    rejected: int = 0
    dropped: int = 0
    processed: int = 0
    overlays: int = 0
    incompatible_qos: int = 0


@dataclass
class Camera:
    """One input stream: its topics, publishers, newest waiting frame and counters."""

    key: str  # "" for the single default camera, else the output namespace
    input_topic: str
    detections_pub: Any
    labels_pub: Any
    overlay_pub: Any
    subscription: Any = None
    pending: Image | CompressedImage | None = None
    counts: Counts = field(default_factory=Counts)
    reported: Counts = field(default_factory=Counts)  # counts at the previous diagnostics
    last_input: float = float("-inf")  # time.monotonic() of the newest frame
    last_reject: str = ""
    output_hz: float = 0.0


class InferenceAborted(Exception):
    """Raised inside the network when the worker must stop; never reported as an error."""


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


def _choice(name: str, allowed: Sequence[str]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"{name} must be one of {list(allowed)}, got {value!r}"
    return check


def _check_device(value: Any) -> str | None:
    if isinstance(value, str) and _DEVICE_PATTERN.fullmatch(value.strip().lower()):
        return None
    return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"


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
    "input_transport": _choice("input_transport", TRANSPORTS),
    "qos_reliability": _choice("qos_reliability", tuple(RELIABILITY_POLICIES)),
    "classes": _check_classes,
    "image_topics": _check_topics,
}


def inference_threads() -> int:
    """All cores but one: on two cores, with the executor, DDS and a camera beside them, two
    torch threads took 45 ms per frame in the node and one thread 18.5 ms (measured here with
    the 320 px model of the time)."""
    return max(1, (os.cpu_count() or 1) - 1)


def _si(value: float, unit: str) -> str:
    """A short engineering-notation figure for the overlay ("4.6 mJ"); ASCII only for OpenCV."""
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


class SuhdDetectorNode(LifecycleNode):
    """SUHD spiking YOLOv5 detector as a managed node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("suhd_detector", **kwargs)
        self._declare_parameters()
        self._live = self._read_live_settings()
        self._frames = threading.Condition()  # guards cameras' pending frames and counters
        self._cameras: list[Camera] = []
        self._detector: Detector | None = None
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._active = False
        self._enabled = True
        self._configure_error = ""
        self._errors = 0
        self._errors_reported = 0
        self._last_error = ""
        self._latency_ms: deque[float] = deque(maxlen=STATS_WINDOW)
        self._inference_ms: deque[float] = deque(maxlen=STATS_WINDOW)
        self._energy: deque[dict[str, float]] = deque(maxlen=STATS_WINDOW)
        self._batches = 0  # batches inferred, to count spikes on one in energy_every_n
        self._energy_frames = 0  # frames whose spikes were counted
        self._last_report = time.monotonic()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        if self._param("autostart"):
            self._autostart()

    # ------------------------------------------------------------------ parameters

    def _declare(self, name: str, default: Any, description: str, *, read_only: bool = False,
                 floats: tuple[float, float] | None = None,
                 ints: tuple[int, int] | None = None) -> None:
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if floats is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=floats[0], to_value=floats[1], step=0.0)]
        if ints is not None:
            descriptor.integer_range = [IntegerRange(from_value=ints[0], to_value=ints[1], step=1)]
        self.declare_parameter(name, default, descriptor)

    def _declare_parameters(self) -> None:
        reload = {"read_only": True}
        self._declare("model_path", "", "model file: absolute, or relative to the package's "
                      "models/; empty = the embedded default model", **reload)
        self._declare("device", "auto", "auto, cpu, cuda or cuda:N; CUDA missing -> CPU",
                      **reload)
        self._declare("engine", "fused", f"one of {list(ENGINES)}", **reload)
        self._declare("threads", 0, "CPU threads of inference; 0 = all cores but one (at "
                      "least 1), which the executor, DDS and the camera need", ints=(0, 256),
                      **reload)
        self._declare("timesteps", 0, "T, the SNN's timesteps; 0 = the model file's",
                      ints=(0, 64), **reload)
        self._declare("compression", 0, "f_c, the burst cap of one timestep; 0 = the model "
                      "file's", ints=(0, 16), **reload)
        self._declare("score_threshold", 0.25, "least score of a detection (live)",
                      floats=(0.0, 1.0))
        self._declare("iou_threshold", 0.45, "IoU above which NMS removes a box (live)",
                      floats=(0.0, 1.0))
        self._declare("max_detections", 100, "most detections per image (live)", ints=(1, 1000))
        self._declare("classes", Parameter.Type.INTEGER_ARRAY,
                      "class indices to keep; empty = all (live)")
        self._declare("publish_overlay", True, "render the overlay image while someone "
                      "subscribes to it (live)")
        self._declare("energy_every_n", 10, "count spikes and energy on one batch of frames "
                      "in n (live): 1 = every frame (slower), 0 = never (fastest)",
                      ints=(0, 10000))
        self._declare("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
                      "sensor_msgs/CompressedImage on 'image/compressed'", **reload)
        self._declare("image_topics", Parameter.Type.STRING_ARRAY, "several cameras, one model: "
                      "their image topics; empty = the single topic 'image'", **reload)
        self._declare("qos_reliability", "best_effort", "input QoS reliability: best_effort "
                      "accepts every publisher; reliable, system_default", **reload)
        self._declare("qos_depth", 5, "input QoS history depth", ints=(1, 100), **reload)
        self._declare("autostart", True, "configure and activate at start", **reload)

    def _param(self, name: str) -> Any:
        """A parameter's value; the array parameters declared without a value read as []."""
        value = self.get_parameter_or(name).value
        return [] if value is None else value

    def _read_live_settings(self, changes: dict[str, Any] | None = None) -> LiveSettings:
        values = {name: self._param(name) for name in LIVE_PARAMETERS}
        values.update(changes or {})
        values["classes"] = tuple(values["classes"] or ())
        return LiveSettings(**values)

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
        with self._frames:
            self._enabled = bool(request.data)
            for camera in self._cameras:
                camera.pending = None
        response.success = True
        response.message = "detection resumed" if self._enabled else "detection paused"
        return response

    # ------------------------------------------------------------------ lifecycle

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
                               f"T={d.T}, f_c={d.f_c}, {len(d.names)} classes")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Enable outputs, announce labels, subscribe, start the worker. SUCCESS -> active."""
        result = super().on_activate(state)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._publish_labels(self._live.score_threshold)
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="suhd_inference", daemon=True)
        self._worker.start()
        input_qos = qos_from_parameters(self._param("qos_reliability"), "volatile",
                                        self._param("qos_depth"))
        for camera in self._cameras:
            camera.subscription = self._subscribe(camera, input_qos)
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
        torch.set_num_threads(self._param("threads") or inference_threads())
        with warnings.catch_warnings(record=True) as caught:  # e.g. "cuda missing: using CPU"
            warnings.simplefilter("always")
            detector = Detector(
                self._param("model_path"),
                device=self._param("device"),
                engine=self._param("engine"),
                timesteps=self._param("timesteps"),
                compression=self._param("compression"),
            )
        for warning in caught:
            self.get_logger().warning(str(warning.message))
        for module in detector.model.modules():
            module.register_forward_pre_hook(self._abort_if_stopping)
        return detector

    def _abort_if_stopping(self, module: Any, inputs: Any) -> None:
        """Before each layer: a stopping node abandons the frame, so deactivate and shutdown
        never wait for a whole inference (seconds with the reference engine)."""
        if self._stopping:
            raise InferenceAborted("the node is stopping")

    def _make_cameras(self) -> list[Camera]:
        topics = list(self._param("image_topics")) or ["image"]
        keys = [""] if topics == ["image"] else camera_keys(topics)
        suffix = "/compressed" if self._param("input_transport") == "compressed" else ""
        return [
            Camera(
                key=key,
                input_topic=topic + suffix,
                detections_pub=self.create_lifecycle_publisher(
                    Detection2DArray, self._output(key, "detections"), OUTPUT_QOS),
                labels_pub=self.create_lifecycle_publisher(
                    LabelInfo, self._output(key, "label_info"), LABEL_QOS),
                overlay_pub=self.create_lifecycle_publisher(
                    Image, self._output(key, "overlay"), OUTPUT_QOS),
            )
            for key, topic in zip(keys, topics, strict=True)
        ]

    @staticmethod
    def _output(key: str, name: str) -> str:
        return f"{key}/{name}" if key else name

    def _subscribe(self, camera: Camera, qos: QoSProfile) -> Any:
        compressed = self._param("input_transport") == "compressed"
        message_type = CompressedImage if compressed else Image
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info: self._on_incompatible_qos(camera, info))
        return self.create_subscription(
            message_type, camera.input_topic, lambda msg: self._on_image(camera, msg), qos,
            event_callbacks=events)

    def _stop_processing(self, join_timeout_s: float | None = None) -> None:
        self._active = False
        for camera in self._cameras:
            if camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None
        with self._frames:
            self._stopping = True
            for camera in self._cameras:
                camera.pending = None
            self._frames.notify_all()
        if self._worker is not None:
            self._worker.join(join_timeout_s)
            self._worker = None

    def _release(self) -> None:
        for camera in self._cameras:
            for publisher in (camera.detections_pub, camera.labels_pub, camera.overlay_pub):
                self.destroy_lifecycle_publisher(publisher)
        self._cameras = []
        self._detector = None

    # ------------------------------------------------------------------ input

    def _on_image(self, camera: Camera, msg: Image | CompressedImage) -> None:
        """Keep only the newest frame; the worker does everything else."""
        with self._frames:
            camera.counts.received += 1
            camera.last_input = time.monotonic()
            if not self._enabled:
                return
            if camera.pending is not None:
                camera.counts.dropped += 1
            camera.pending = msg
            self._frames.notify()

    def _on_incompatible_qos(self, camera: Camera, info: Any) -> None:
        with self._frames:
            camera.counts.incompatible_qos += info.total_count_change
        topic = camera.subscription.topic_name if camera.subscription else camera.input_topic
        offers = "; ".join(
            f"{p.node_namespace.rstrip('/')}/{p.node_name} offers "
            f"{p.qos_profile.reliability.name.lower()}, {p.qos_profile.durability.name.lower()}"
            for p in self.get_publishers_info_by_topic(topic)
        )
        self.get_logger().warning(
            f"a publisher on {topic} has a QoS this subscription cannot accept (policy "
            f"{qos_policy_name_from_kind(info.last_policy_kind)}): {offers or 'publisher gone'}; "
            f"this node requests {self._param('qos_reliability')} (parameter qos_reliability; "
            f"best_effort accepts every publisher)",
            throttle_duration_sec=LOG_THROTTLE_S,
        )

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        """Worker thread: take the waiting frames of all cameras, process them as one batch."""
        while True:
            with self._frames:
                self._frames.wait_for(lambda: self._stopping or any(
                    c.pending is not None for c in self._cameras))
                if self._stopping:
                    return
                batch = [(c, c.pending) for c in self._cameras if c.pending is not None]
                for camera, _ in batch:
                    camera.pending = None
            try:
                self._process(batch)
            except Exception as exc:  # nothing may end the worker; count it, log it, go on
                if self._stopping or not self.context.ok():
                    return  # stopped while inferring: the outputs are gone, nothing went wrong
                with self._frames:
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"inference failed: {self._last_error}",
                                        throttle_duration_sec=LOG_THROTTLE_S)

    def _decode(self, batch: list[tuple[Camera, Image | CompressedImage]]
                ) -> list[tuple[Camera, Header, np.ndarray]]:
        frames = []
        for camera, msg in batch:
            try:
                frames.append((camera, msg.header, image_to_rgb(msg)))
            except ImageDecodeError as exc:
                with self._frames:
                    camera.counts.rejected += 1
                    camera.last_reject = str(exc)
                self.get_logger().error(f"rejected a frame on {camera.input_topic}: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
        return frames

    def _process(self, batch: list[tuple[Camera, Image | CompressedImage]]) -> None:
        frames = self._decode(batch)
        detector = self._detector
        if not frames or detector is None:
            return
        live = self._live
        count_spikes = live.energy_every_n > 0 and self._batches % live.energy_every_n == 0
        self._batches += 1
        results = detector.detect(
            [rgb for _, _, rgb in frames], score_threshold=live.score_threshold,
            iou_threshold=live.iou_threshold, max_detections=live.max_detections,
            classes=list(live.classes) or None, count_spikes=count_spikes)
        for (camera, header, rgb), result in zip(frames, results, strict=True):
            camera.detections_pub.publish(detections_to_msg(
                header, result.boxes_xyxy, result.scores, result.class_ids))
            rendered = live.publish_overlay and camera.overlay_pub.get_subscription_count() > 0
            if rendered:
                overlay = draw_detections(rgb, result.boxes_xyxy, result.scores,
                                          result.class_ids, detector.names,
                                          self._info_line(camera))
                camera.overlay_pub.publish(rgb_to_image(overlay, header))
            self._record(camera, header, result, rendered)

    def _record(self, camera: Camera, header: Header, result: FrameResult, rendered: bool) -> None:
        latency_ms = (self.get_clock().now().nanoseconds - stamp_ns(header)) / 1e6
        with self._frames:
            camera.counts.processed += 1
            camera.counts.overlays += int(rendered)
            if stamp_ns(header):
                self._latency_ms.append(latency_ms)
            self._inference_ms.append(result.inference_s * 1e3)
            if result.energy:
                self._energy.append(result.energy)
                self._energy_frames += 1

    def _info_line(self, camera: Camera) -> str:
        with self._frames:
            latency = float(np.median(self._latency_ms)) if self._latency_ms else 0.0
            energy = self._mean_energy()
        line = f"{camera.output_hz:.1f} fps  latency {latency:.0f} ms"
        if energy:
            line += (f"  E/frame SNN {_si(energy.get('energy_snn_j', np.nan), 'J')}"
                     f" ANN {_si(energy.get('energy_ann_j', np.nan), 'J')}")
        return line

    def _mean_energy(self) -> dict[str, float]:
        """Each energy figure averaged over the window (frames lacking a key do not count)."""
        keys = {key for e in self._energy for key in e}
        return {key: float(np.mean([e[key] for e in self._energy if key in e])) for key in keys}

    def _publish_labels(self, threshold: float) -> None:
        if self._detector is None:
            return
        header = Header(stamp=self.get_clock().now().to_msg())
        for camera in self._cameras:
            camera.labels_pub.publish(label_info(header, self._detector.names, threshold))

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        """About 1 Hz: one DiagnosticStatus per concern, rates over the last period."""
        now = time.monotonic()
        period = max(now - self._last_report, 1e-3)
        self._last_report = now
        statuses: list[DiagnosticStatus] = []
        with self._frames:
            for camera in self._cameras:
                statuses += [self._input_status(camera, period, now),
                             self._output_status(camera, period)]
                camera.reported = replace(camera.counts)
            statuses += [self._latency_status(), self._model_status(), self._energy_status()]
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=statuses))

    def _status_name(self, concern: str, camera: Camera | None = None) -> str:
        suffix = f" ({camera.key})" if camera is not None and camera.key else ""
        return f"{self.get_fully_qualified_name()}: {concern}{suffix}"  # namespaced: unique

    def _input_status(self, camera: Camera, period: float, now: float) -> DiagnosticStatus:
        counts, before = camera.counts, camera.reported
        problems = []
        if counts.rejected > before.rejected:
            problems.append(f"{counts.rejected - before.rejected} frames rejected")
        if counts.incompatible_qos > before.incompatible_qos:
            problems.append("a publisher has an incompatible QoS")
        if self._active and now - camera.last_input > NO_INPUT_WARN_S:
            problems.append(f"no input for more than {NO_INPUT_WARN_S:g} s")
        message = "; ".join(problems) or ("receiving" if self._active else "inactive")
        return diagnostic_status(self._status_name("input", camera), _WARN if problems else _OK,
                                 message, {
            "topic": camera.input_topic,
            "input rate [Hz]": (counts.received - before.received) / period,
            "frames received": counts.received,
            "rejected frames": counts.rejected,
            "last reject reason": camera.last_reject,
            "incompatible QoS events": counts.incompatible_qos,
        })

    def _output_status(self, camera: Camera, period: float) -> DiagnosticStatus:
        counts, before = camera.counts, camera.reported
        camera.output_hz = (counts.processed - before.processed) / period
        dropped = counts.dropped - before.dropped
        message = f"{dropped} frames dropped (detector slower than the camera)" if dropped else (
            "detecting" if self._enabled else "paused through ~/enable")
        return diagnostic_status(self._status_name("output", camera), _WARN if dropped else _OK,
                                 message, {
            "output rate [Hz]": camera.output_hz,
            "frames processed": counts.processed,
            "dropped frames": counts.dropped,
            "overlays rendered": counts.overlays,
            "detection enabled": self._enabled,
        })

    def _latency_status(self) -> DiagnosticStatus:
        if not self._latency_ms:
            return diagnostic_status(self._status_name("latency"), _OK, "no frames yet", {})
        p50, p95 = np.percentile(self._latency_ms, [50, 95])
        return diagnostic_status(self._status_name("latency"), _OK, "now - image stamp", {
            "latency p50 [ms]": float(p50),
            "latency p95 [ms]": float(p95),
            "inference per frame [ms]": float(np.mean(self._inference_ms)),
            "frames in window": len(self._latency_ms),
        })

    def _model_status(self) -> DiagnosticStatus:
        d = self._detector
        errors = self._errors - self._errors_reported
        self._errors_reported = self._errors
        values: dict[str, object] = {"model path": self._param("model_path") or "(default)"}
        if d is not None:
            values = {"device": str(d.device), "model path": str(d.model_path),
                      "engine": d.engine, "T": d.T, "f_c": d.f_c, "classes": len(d.names),
                      "input size [px]": "x".join(map(str, d.input_size)),
                      "CPU threads": torch.get_num_threads()}
        values |= {"inference errors": self._errors, "last error": self._last_error,
                   "configure error": self._configure_error}
        if self._configure_error:
            level, message = _ERROR, f"configure failed: {self._configure_error}"
        elif errors:
            level, message = _WARN, f"{errors} inference errors: {self._last_error}"
        else:
            level, message = _OK, "loaded" if d is not None else "not configured"
        return diagnostic_status(self._status_name("device and model"), level, message, values)

    def _energy_status(self) -> DiagnosticStatus:
        energy = self._mean_energy()
        if not energy:
            why = ("ann engine: no spikes" if self._param("engine") == "ann"
                   else "not counted: energy_every_n is 0" if self._live.energy_every_n == 0
                   else "no frames yet")
            return diagnostic_status(self._status_name("energy"), _OK, why, {})
        snn, ann = energy.get("energy_snn_j", np.nan), energy.get("energy_ann_j", np.nan)
        return diagnostic_status(self._status_name("energy"), _OK, "per frame, 45 nm estimate", {
            "frames counted": self._energy_frames,
            "spikes per frame": energy.get("spikes", np.nan),
            "SOPs per frame": energy.get("sops", np.nan),
            "spikes per neuron and step": energy.get("spikes_per_neuron_step", np.nan),
            "energy per frame SNN [J]": snn,
            "energy per frame ANN [J]": ann,
            "energy ratio ANN/SNN": ann / snn if snn > 0 else float("inf"),
        })


def main(args: list[str] | None = None) -> int:
    """Console script `suhd_detector`."""
    return run_node(SuhdDetectorNode, "suhd_detector", args, (ParameterException,),
                    on_exit=lambda node: node.release_all(join_timeout_s=SHUTDOWN_JOIN_S))

if __name__ == "__main__":
    sys.exit(main())

"""The detector node's DiagnosticStatus messages, one per concern, from its plain figures.

Plain functions of the figures (suhd_ros/frame_statistics.py) and a status name, so what
/diagnostics says (levels, messages, keys with units) has unit tests without a node or DDS.
"""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from suhd_ros.detector import Detector
from suhd_ros.frame_statistics import CameraReport, FrameStatistics, InferenceErrors

NO_INPUT_WARN_S = 3.0  # no frame for this long while active -> WARN
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def diagnostic_status(name: str, level: bytes, message: str,
                      values: Mapping[str, object]) -> DiagnosticStatus:
    """A DiagnosticStatus whose values are KeyValue strings (floats with 4 significant digits)."""
    return DiagnosticStatus(level=level, name=name, message=message, values=[
        KeyValue(key=key, value=_text(value)) for key, value in values.items()])


def _text(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def status_name(node: str, concern: str, camera: str = "") -> str:
    """The status name "<node>: <concern> (<camera>)": the node's fully qualified name makes it
    unique among nodes, and readers pick a status by its ending."""
    return f"{node}: {concern}" + (f" ({camera})" if camera else "")


def camera_statuses(node: str, camera: str, topic: str, report: CameraReport, active: bool,
                    enabled: bool) -> list[DiagnosticStatus]:
    """The input and output statuses of one camera (camera: its key, "" for the only one)."""
    return [input_status(status_name(node, "input", camera), topic, report, active),
            output_status(status_name(node, "output", camera), report, enabled)]


def input_status(name: str, topic: str, camera: CameraReport, active: bool) -> DiagnosticStatus:
    """WARN on new rejections, an incompatible publisher, or silence while active."""
    problems = []
    if camera.new.rejected:
        problems.append(f"{camera.new.rejected} frames rejected")
    if camera.new.incompatible_qos:
        problems.append("a publisher has an incompatible QoS")
    if active and camera.idle_s > NO_INPUT_WARN_S:
        problems.append(f"no input for more than {NO_INPUT_WARN_S:g} s")
    message = "; ".join(problems) or ("receiving" if active else "inactive")
    return diagnostic_status(name, WARN if problems else OK, message, {
        "topic": topic,
        "input rate [Hz]": camera.input_hz,
        "frames received": camera.totals.received,
        "rejected frames": camera.totals.rejected,
        "last reject reason": camera.last_reject,
        "incompatible QoS events": camera.totals.incompatible_qos,
    })


def output_status(name: str, camera: CameraReport, enabled: bool) -> DiagnosticStatus:
    """WARN when frames were dropped since the previous report: the detector lags the camera."""
    dropped = camera.new.dropped
    message = f"{dropped} frames dropped (detector slower than the camera)" if dropped else (
        "detecting" if enabled else "paused through ~/enable")
    return diagnostic_status(name, WARN if dropped else OK, message, {
        "output rate [Hz]": camera.output_hz,
        "frames processed": camera.totals.processed,
        "dropped frames": camera.totals.dropped,
        "overlays rendered": camera.totals.overlays,
        "detection enabled": enabled,
    })


def latency_status(name: str, statistics: FrameStatistics) -> DiagnosticStatus:
    """Latency = now - image stamp, over the window; frames with an unset stamp do not count."""
    if not statistics.latency_ms:
        return diagnostic_status(name, OK, "no frames yet", {})
    p50, p95 = statistics.latency_percentiles_ms(50, 95)
    return diagnostic_status(name, OK, "now - image stamp", {
        "latency p50 [ms]": p50,
        "latency p95 [ms]": p95,
        "inference per frame [ms]": statistics.mean_inference_ms(),
        "frames in window": len(statistics.latency_ms),
    })


def model_status(name: str, detector: Detector | None, model_path: str,
                 errors: InferenceErrors, configure_error: str) -> DiagnosticStatus:
    """ERROR while configure has failed (with the reason), WARN on new inference errors.

    model_path is the parameter: what a failed or pending configure was asked to load.
    """
    values: dict[str, object] = (_detector_values(detector) if detector is not None
                                 else {"model path": model_path or "(default)"})
    values |= {"inference errors": errors.total, "last error": errors.last,
               "configure error": configure_error}
    if configure_error:
        level, message = ERROR, f"configure failed: {configure_error}"
    elif errors.new:
        level, message = WARN, f"{errors.new} inference errors: {errors.last}"
    else:
        level, message = OK, "loaded" if detector is not None else "not configured"
        if detector is not None and detector.approximation:
            message = f"loaded; {detector.approximation}"
    return diagnostic_status(name, level, message, values)


def _detector_values(d: Detector) -> dict[str, object]:
    return {"device": str(d.device), "model path": str(d.model_path), "engine": d.engine,
            "T": d.T, "f_c": d.f_c, "classes": len(d.names),
            "input size [px]": "x".join(map(str, d.input_size)), "CPU threads": d.threads,
            "approximation": d.approximation or "none"}


def energy_status(name: str, statistics: FrameStatistics, engine: str,
                  energy_every_n: int) -> DiagnosticStatus:
    """Per-frame spikes and energy over the window, or why there are none."""
    energy = statistics.mean_energy()
    if energy is None:
        why = ("ann engine: no spikes" if engine == "ann"
               else "not counted: energy_every_n is 0" if energy_every_n == 0
               else "no frames yet")
        return diagnostic_status(name, OK, why, {})
    snn, ann = energy.energy_snn_j, energy.energy_ann_j
    return diagnostic_status(name, OK, "per frame, 45 nm estimate", {
        "frames counted": statistics.energy_frames,
        "spikes per frame": energy.spikes,
        "SOPs per frame": energy.sops,
        "spikes per neuron and step": energy.spikes_per_neuron_step,
        "energy per frame SNN [J]": snn,
        "energy per frame ANN [J]": ann,
        "energy ratio ANN/SNN": ann / snn if snn > 0 else float("inf"),
    })

"""rviz2 markers for the 3D detections: a box and a text label per object.

Markers live until deleted, so each message also deletes the markers of objects that were
there in the previous message and are gone now (MarkerSet keeps which ones those were): rviz2
shows exactly the current objects at any frame rate, with no lifetime to tune. A tracked
object keeps its marker id (its track id) from frame to frame; an untracked one gets an id
above any track id, by its place in the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from suhd_ros.geometry import Box3D
from suhd_ros.ros.overlay import ClassNames, class_colour, class_label

BOX_NS, TEXT_NS = "suhd_boxes", "suhd_labels"
UNTRACKED_BASE = 1 << 30  # marker ids of untracked objects: UNTRACKED_BASE + index
TEXT_HEIGHT_M = 0.12
BOX_ALPHA = 0.4


def _box_marker(header: Header, marker_id: int, box: Box3D,
                colour: tuple[int, int, int]) -> Marker:
    marker = Marker(header=header, ns=BOX_NS, id=marker_id, type=Marker.CUBE,
                    action=Marker.ADD, lifetime=Duration())
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = box.center
    marker.pose.orientation.w = 1.0
    marker.scale.x, marker.scale.y, marker.scale.z = box.size
    marker.color.r, marker.color.g, marker.color.b = (c / 255.0 for c in colour)
    marker.color.a = BOX_ALPHA
    return marker


def _text_marker(header: Header, marker_id: int, box: Box3D, text: str) -> Marker:
    """White text just above the box (y points down in the optical frame)."""
    marker = Marker(header=header, ns=TEXT_NS, id=marker_id, type=Marker.TEXT_VIEW_FACING,
                    action=Marker.ADD, text=text, lifetime=Duration())
    x, y, z = box.center
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (
        x, y - box.size[1] / 2.0 - TEXT_HEIGHT_M, z)
    marker.pose.orientation.w = 1.0
    marker.scale.z = TEXT_HEIGHT_M
    marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
    return marker


def _delete(header: Header, ns: str, marker_id: int) -> Marker:
    return Marker(header=header, ns=ns, id=marker_id, action=Marker.DELETE)


class MarkerSet:
    """One camera's markers: builds each frame's MarkerArray and remembers its marker ids."""

    def __init__(self) -> None:
        self._shown: set[int] = set()

    def update(self, header: Header, boxes: Sequence[Box3D | None], class_ids: np.ndarray,
               track_ids: Sequence[int], names: ClassNames) -> MarkerArray:
        """Markers of the located objects, and deletions of the ones no longer there."""
        markers: list[Marker] = []
        shown: set[int] = set()
        for index, (box, class_id, track_id) in enumerate(
                zip(boxes, np.asarray(class_ids).tolist(), track_ids, strict=True)):
            if box is None:
                continue
            marker_id = int(track_id) if track_id >= 0 else UNTRACKED_BASE + index
            label = class_label(int(class_id), names)
            text = f"{label} #{track_id}" if track_id >= 0 else label
            markers.append(_box_marker(header, marker_id, box, class_colour(int(class_id))))
            markers.append(_text_marker(header, marker_id, box, f"{text} {box.center[2]:.2f} m"))
            shown.add(marker_id)
        for gone in sorted(self._shown - shown):
            markers += [_delete(header, BOX_NS, gone), _delete(header, TEXT_NS, gone)]
        self._shown = shown
        return MarkerArray(markers=markers)

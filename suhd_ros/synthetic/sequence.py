"""Moving synthetic sequences: a static pinhole camera, objects that move, enter, leave and
occlude each other, an aligned depth image, and ground truth in 2D, 3D and identity.

A new code path beside scenes.py: it draws with the same shape templates, textures,
backgrounds and sensor model (scenes.py's helpers), but the benchmark's still scenes and their
seeds are untouched (test_synthetic_pinned.py).

The world, in the camera's optical frame (x right, y down, z forward, metres): the camera
looks level from ``camera_height_m`` above a floor; a wall stands at ``wall_m``. Objects are
flat cards facing the camera, standing on the floor, each with a class shape, a size, a fixed
rotation in its plane and a velocity; their depth is constant over the card, so the truth is
exact: an object's 3D centre is the centre of its axis-aligned 3D box (the card's extent at its
depth). Everything comes from ``numpy.random.default_rng(seed)`` frame after frame, so a
sequence is the same bytes on every run.

Labelling: as in scenes.py, a box is the tight box of the object's drawn mask inside the image
(amodal: occluded parts count); an object is labelled while its visible share (of its whole
mask, parts outside the image counting as hidden) is at least ``min_visible``. Unlike still
scenes, a hidden object is still drawn: it is the same object a moment later.

The depth image (uint16 millimetres, 0 = no value, as a 16UC1 camera publishes): wall, floor
and cards, noise growing with the square of the distance (structured light / stereo), random
dropouts, dropouts along depth edges (flying pixels are removed by such sensors) and nothing
beyond ``max_range_m``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suhd_ros.geometry import Intrinsics
from suhd_ros.synthetic.scenes import (
    CLASS_NAMES,
    SceneStyle,
    _background,
    _distractor,
    _lighting,
    _polygons,
    _rasterise,
    _sensor,
    _texture,
)


@dataclass(frozen=True)
class SequenceStyle:
    """The camera, the world and the sensor of a sequence; the defaults are the benchmark's."""

    fps: float = 10.0
    hfov_deg: float = 60.0
    camera_height_m: float = 0.6
    wall_m: float = 8.0
    max_range_m: float = 10.0
    distance_m: tuple[float, float] = (1.5, 6.0)  # where objects stay along the optical axis
    size_m: tuple[float, float] = (0.3, 0.8)  # longer side of a card
    speed_mps: tuple[float, float] = (0.2, 0.8)  # across the view
    depth_speed_mps: float = 0.3  # largest speed along the optical axis
    start_objects: tuple[int, int] = (2, 4)  # in view at the first frame
    max_objects: int = 6
    spawn_per_s: float = 0.4  # new objects entering from a side
    min_visible: float = 0.5
    depth_noise: float = 0.0015  # sigma [m] = depth_noise * z^2
    dropout: float = 0.02  # share of depth pixels without a value
    edge_dropout: float = 0.5  # chance a pixel on a depth edge has no value
    photometry: SceneStyle = field(default_factory=lambda: SceneStyle(
        blur_probability=0.0, noise_sigma=(2.0, 2.0), lighting=0.2, clutter=(2, 6)))


@dataclass(frozen=True)
class SequenceFrame:
    """One frame and its ground truth (objects labelled in it, nearest last)."""

    index: int
    image: np.ndarray  # [H, W, 3] uint8 RGB
    depth_mm: np.ndarray  # [H, W] uint16, 0 = no value
    boxes_xyxy: np.ndarray  # [K, 4] float32, pixels (scenes.py's convention)
    class_ids: np.ndarray  # [K] int64
    track_ids: np.ndarray  # [K] int64, the same object keeps its id for the whole sequence
    centers_m: np.ndarray  # [K, 3] float32, 3D box centres in the optical frame
    sizes_m: np.ndarray  # [K, 3] float32, 3D box sizes (a card is flat: z = 0)
    visible_fraction: np.ndarray  # [K] float32
    # [M, 4] boxes of objects drawn but mostly hidden (not labelled): evaluations ignore what
    # matches them (as MOT benchmarks do with their "ignore" regions)
    hidden_boxes_xyxy: np.ndarray


@dataclass
class _Object:
    track_id: int
    class_id: int
    scale_m: np.ndarray  # half-sizes of the template, metres
    angle: float
    x: float  # card centre (the template's origin), metres
    y: float
    z: float
    vx: float
    vz: float
    texture: str
    paint_seed: int
    backdrop: np.ndarray  # colour the paint contrasts with
    extent_m: np.ndarray  # the drawn shape's box around (x, y): [x1, y1, x2, y2], metres


_EXTENT_PX = 1000  # resolution at which an object's drawn extent is measured


def _drawn_extent(class_id: int, scale_m: np.ndarray, angle: float) -> np.ndarray:
    """The box of the shape as drawn (holes and all, e.g. a crescent's), around its origin,
    in metres: drawn once at _EXTENT_PX across, where a pixel is a small share of its size."""
    per_m = _EXTENT_PX / (2.0 * float(scale_m.max()))
    polygons, radius = _polygons(class_id, scale_m * per_m, angle)
    side = int(2 * radius) + 6
    origin = np.array([side / 2.0, side / 2.0])
    box = _rasterise(class_id, polygons, radius, origin, side, side).box().astype(np.float64)
    # box edges -> OpenCV pixel coordinates (-0.5 / +0.5 at the two ends), then metres
    return (box - [0.5, 0.5, 0.5, 0.5] - np.tile(origin, 2)) / per_m


def _whole_mask_pixels(class_id: int, polygons: list[tuple[np.ndarray, bool]], radius: float,
                       centre: np.ndarray) -> int:
    """The pixel count of the object's mask with the parts outside the image included: drawn
    on its own canvas, shifted by whole pixels so that it rasterises the same."""
    shift = np.floor(centre) - (int(radius) + 3)
    side = 2 * int(radius) + 8
    mask = _rasterise(class_id, polygons, radius, centre - shift, side, side).mask
    return max(int(np.count_nonzero(mask)), 1)


class SceneSequence:
    """An endless moving sequence of ``width`` x ``height`` frames, drawn by ``seed``."""

    def __init__(self, seed: int, width: int, height: int,
                 style: SequenceStyle | None = None) -> None:
        self.style = style or SequenceStyle()
        self.width, self.height = width, height
        self.k = Intrinsics.from_fov(width, height, self.style.hfov_deg)
        self._rng = np.random.default_rng(seed)
        self._lighting_seed = int(self._rng.integers(2**62))
        self._backdrop = self._draw_backdrop()
        self._background_depth = self._room_depth()
        self._objects: list[_Object] = []
        self._next_id = 0
        self._index = 0
        for _ in range(int(self._rng.integers(self.style.start_objects[0],
                                              self.style.start_objects[1] + 1))):
            self._spawn(entering=False)

    def __iter__(self) -> Iterator[SequenceFrame]:
        while True:
            yield self.next_frame()

    # ------------------------------------------------------------------------- world

    def _draw_backdrop(self) -> np.ndarray:
        photometry = self.style.photometry
        canvas = _background(self._rng, str(self._rng.choice(photometry.backgrounds)),
                             self.height, self.width)
        for _ in range(int(self._rng.integers(photometry.clutter[0], photometry.clutter[1] + 1))):
            _distractor(self._rng, canvas, thin=False)
        return canvas

    def _room_depth(self) -> np.ndarray:
        """Depth [m] of the wall and, below the horizon, the floor."""
        rows = np.arange(self.height, dtype=np.float64) - self.k.cy
        with np.errstate(divide="ignore"):
            floor = np.where(rows > 0, self.style.camera_height_m * self.k.fy / rows, np.inf)
        column = np.minimum(floor, self.style.wall_m).astype(np.float32)
        return np.repeat(column[:, None], self.width, axis=1)

    def _spawn(self, entering: bool) -> None:
        """A new object: in view (the first frame) or just outside a side, moving inwards."""
        style, rng = self.style, self._rng
        class_id = int(rng.integers(len(CLASS_NAMES)))
        size = rng.uniform(*style.size_m)
        aspect = math.exp(rng.uniform(-0.3, 0.3))
        scale = np.array([min(1.0, aspect), min(1.0, 1.0 / aspect)]) * size / 2.0
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        z = float(rng.uniform(*style.distance_m))
        speed = float(rng.uniform(*style.speed_mps))
        half_width = z * self.k.cx / self.k.fx  # half the view's width at depth z
        if entering:
            side = 1.0 if rng.random() < 0.5 else -1.0
            x, vx = side * (half_width + size), -side * speed
        else:
            x = float(rng.uniform(-0.8, 0.8)) * half_width
            vx = speed if rng.random() < 0.5 else -speed
        extent = _drawn_extent(class_id, scale, angle)
        obj = _Object(self._next_id, class_id, scale, angle, x,
                      style.camera_height_m - float(extent[3]), z, vx,
                      float(rng.uniform(-style.depth_speed_mps, style.depth_speed_mps)),
                      str(rng.choice(style.photometry.textures)), int(rng.integers(2**62)),
                      self._backdrop.reshape(-1, 3).mean(axis=0), extent)
        self._next_id += 1
        self._objects.append(obj)

    def _step(self) -> None:
        """Move every object one frame; bounce off the depth range; drop those that left;
        let new ones enter."""
        dt = 1.0 / self.style.fps
        low, high = self.style.distance_m
        kept = []
        for obj in self._objects:
            obj.x += obj.vx * dt
            obj.z += obj.vz * dt
            if not low <= obj.z <= high:
                obj.vz = -obj.vz
                obj.z = min(max(obj.z, low), high)
            reach = obj.z * self.k.cx / self.k.fx + 2.0 * float(obj.scale_m.max())
            if abs(obj.x) <= reach:
                kept.append(obj)
        self._objects = kept
        if (len(self._objects) < self.style.max_objects
                and self._rng.random() < self.style.spawn_per_s * dt):
            self._spawn(entering=True)

    # ------------------------------------------------------------------------- drawing

    def _pixels(self, obj: _Object) -> tuple[list[tuple[np.ndarray, bool]], float, np.ndarray]:
        """The object's polygons in pixels, their radius, and its centre in OpenCV pixels."""
        f = self.k.fx / obj.z
        polygons, radius = _polygons(obj.class_id, obj.scale_m * f, obj.angle)
        centre = np.array([obj.x * f + self.k.cx, obj.y * f + self.k.cy])
        return polygons, radius, centre

    @staticmethod
    def _truth_3d(obj: _Object) -> tuple[np.ndarray, np.ndarray]:
        """Centre and size of the card's axis-aligned 3D box."""
        x1, y1, x2, y2 = obj.extent_m
        centre = np.array([obj.x + (x1 + x2) / 2.0, obj.y + (y1 + y2) / 2.0, obj.z])
        return centre.astype(np.float32), np.array([x2 - x1, y2 - y1, 0.0], np.float32)

    def next_frame(self) -> SequenceFrame:
        """Draw the current frame, then move the world on."""
        canvas = self._backdrop.copy()
        depth = self._background_depth.copy()
        owner = np.full((self.height, self.width), -1, np.int32)
        drawn = []
        for obj in sorted(self._objects, key=lambda o: -o.z):  # far to near: near ones cover
            polygons, radius, centre = self._pixels(obj)
            if not (-radius < centre[0] < self.width + radius
                    and -radius < centre[1] < self.height + radius):
                continue
            placed = _rasterise(obj.class_id, polygons, radius, centre, self.width, self.height)
            if not placed.mask.any():
                continue
            window = canvas[placed.window]
            paint = _texture(np.random.default_rng(obj.paint_seed), obj.texture,
                             *placed.mask.shape, obj.backdrop)
            window[placed.mask] = paint[placed.mask]
            depth[placed.window][placed.mask] = obj.z
            owner[placed.window][placed.mask] = len(drawn)
            drawn.append((obj, placed, _whole_mask_pixels(obj.class_id, polygons, radius, centre)))
        frame = self._frame(canvas, depth, owner, drawn)
        self._index += 1
        self._step()
        return frame

    def _frame(self, canvas: np.ndarray, depth: np.ndarray, owner: np.ndarray,
               drawn: list[tuple[_Object, Any, float]]) -> SequenceFrame:
        labelled, hidden = [], []
        for k, (obj, placed, area) in enumerate(drawn):
            visible = np.count_nonzero(owner[placed.window][placed.mask] == k) / area
            if visible >= self.style.min_visible:
                labelled.append((obj, placed, visible))
            else:
                hidden.append(placed.box())
        photometry = self.style.photometry
        canvas = _lighting(np.random.default_rng(self._lighting_seed), canvas,
                           photometry.lighting)
        truth = [self._truth_3d(obj) for obj, _, _ in labelled]
        return SequenceFrame(
            index=self._index,
            image=_sensor(self._rng, canvas, photometry),
            depth_mm=self._sense_depth(depth),
            boxes_xyxy=np.array([p.box() for _, p, _ in labelled], np.float32).reshape(-1, 4),
            class_ids=np.array([o.class_id for o, _, _ in labelled], np.int64),
            track_ids=np.array([o.track_id for o, _, _ in labelled], np.int64),
            centers_m=np.array([c for c, _ in truth], np.float32).reshape(-1, 3),
            sizes_m=np.array([s for _, s in truth], np.float32).reshape(-1, 3),
            visible_fraction=np.array([v for _, _, v in labelled], np.float32),
            hidden_boxes_xyxy=np.array(hidden, np.float32).reshape(-1, 4))

    def _sense_depth(self, depth: np.ndarray) -> np.ndarray:
        """What a depth camera reports of the true depth: noise, dropouts, range, millimetres."""
        style, rng = self.style, self._rng
        noisy = depth + style.depth_noise * depth**2 * rng.standard_normal(
            depth.shape, dtype=np.float32)
        jump = np.zeros(depth.shape, bool)
        jump[:, 1:] |= np.abs(np.diff(depth, axis=1)) > 0.1
        jump[1:, :] |= np.abs(np.diff(depth, axis=0)) > 0.1
        invalid = (rng.random(depth.shape, dtype=np.float32) < style.dropout) | (
            jump & (rng.random(depth.shape, dtype=np.float32) < style.edge_dropout))
        invalid |= ~(noisy < style.max_range_m) | (noisy <= 0)
        millimetres = np.rint(np.where(invalid, 0.0, noisy) * 1000.0)
        return millimetres.astype(np.uint16)

"""Procedural detection benchmark: shapes on cluttered backgrounds, deterministic by seed.

No public data set can be downloaded where this project is built, so the benchmark is drawn.
Every scene comes from one `numpy.random.Generator(seed)`; the same seed and size give the same
bytes on every machine, and the splits are disjoint seed ranges (`SPLITS`).

Labelling rules (what a box means):
- Boxes are `[x1, y1, x2, y2]` in continuous pixel coordinates: pixel column `c` spans
  `[c, c + 1)`, so a box is tight when `x1` is the first and `x2 - 1` the last column of drawn
  pixels (the COCO convention, `w = x2 - x1`).
- The box is computed from the object's drawn mask (the pixels its shape fills), never from
  its nominal geometry.
- Objects may overlap; later objects are drawn on top. An occluded object keeps the box of its
  whole drawn mask (the amodal extent, as in VOC/COCO), hidden parts included. An object whose
  visible fraction of its mask falls below `SceneStyle.min_visible` is mostly hidden: it is
  neither labelled nor drawn, so no unlabelled object is left in the image (dropping it can
  only uncover the objects beneath, so the rule stays true for those kept).
- Distractors (lines, curves, arcs, letters) are never labelled; a few thin ones may cross
  objects in front. Blur and noise come after labelling, so a blurred edge may bleed one pixel.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "arrow",
    "heart",
    "crescent",
)

SPLITS = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 1_010_000),
    "test": range(2_000_000, 2_010_000),
}

BENCHMARK_SIZE = (320, 320)  # (H, W) of the benchmark's scenes; a model letterboxes them
GENERATOR_VERSION = 1
_SUBPIXEL_SHIFT = 4  # cv2 fixed-point bits: vertices are drawn with 1/16 px precision
_MIN_CONTRAST = 90.0  # least L1 distance (0..255 per channel) between an object and its backdrop
_DISTRACTOR_LETTERS = "ABEFGHKLMNPRSUWYZ2345679"  # no glyph that looks like a class (O, X, +)


@dataclass(frozen=True)
class SceneStyle:
    """What a scene may contain; the defaults are the benchmark, tests narrow them."""

    objects: tuple[int, int] = (1, 12)  # inclusive range of objects attempted per scene
    size_px: tuple[float, float] = (8.0, 200.0)  # nominal longer side, log-uniform
    min_visible: float = 0.5  # below this visible fraction an object counts as mostly hidden
    textures: tuple[str, ...] = ("solid", "stripes", "checker", "noise")
    backgrounds: tuple[str, ...] = ("gradient", "noise", "stripes", "flat")
    clutter: tuple[int, int] = (0, 10)  # inclusive range of distractors per scene
    lighting: float = 0.35  # largest relative brightness change of the lighting gradient
    blur_probability: float = 0.3
    noise_sigma: tuple[float, float] = (0.0, 8.0)  # sensor noise, grey levels


@dataclass(frozen=True)
class Scene:
    """One image with its ground truth (see the module docstring for the box convention)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes_xyxy: np.ndarray  # [K, 4] float32, pixels
    class_ids: np.ndarray  # [K] int64, index into CLASS_NAMES
    visible_fraction: np.ndarray = field(  # [K] float32, share of each mask left uncovered
        default_factory=lambda: np.zeros(0, np.float32)
    )


@dataclass(frozen=True)
class _Placed:
    """An object's drawn mask, cropped to its region of interest."""

    class_id: int
    top_left: tuple[int, int]  # (x0, y0) of the crop in the image
    mask: np.ndarray  # [h, w] bool

    @property
    def window(self) -> tuple[slice, slice]:
        x0, y0 = self.top_left
        return slice(y0, y0 + self.mask.shape[0]), slice(x0, x0 + self.mask.shape[1])

    def box(self) -> np.ndarray:
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        x0, y0 = self.top_left
        return np.array(
            [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], np.float32
        )


# ----------------------------------------------------------------------------- shape templates
# A template is a list of (polygon, fill) in unit coordinates; fill=False erases (holes).


def _regular(n: int, radius: float = 1.0, phase: float = 0.0, centre=(0.0, 0.0)) -> np.ndarray:
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius + np.asarray(centre)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _regular(2 * points, phase=-np.pi / 2) * radii[:, None]


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _cross(half_width: float = 0.33) -> np.ndarray:
    a, w = 1.0, half_width
    return np.array(
        [[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w],
         [w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]]
    )  # fmt: skip


def _arrow() -> np.ndarray:
    return np.array(
        [[-1.0, -0.28], [0.15, -0.28], [0.15, -0.8], [1.0, 0.0],
         [0.15, 0.8], [0.15, 0.28], [-1.0, 0.28]]
    )  # fmt: skip


def _normalised(parts: list[tuple[np.ndarray, bool]]) -> tuple[tuple[np.ndarray, bool], ...]:
    """Centre the filled extent on the origin and scale its longer side to 2 (unit half-size)."""
    filled = np.concatenate([p for p, fill in parts if fill])
    lo, hi = filled.min(axis=0), filled.max(axis=0)
    centre, half = (lo + hi) / 2.0, (hi - lo).max() / 2.0
    return tuple(((p - centre) / half, fill) for p, fill in parts)


def _templates() -> tuple[tuple[tuple[np.ndarray, bool], ...], ...]:
    circle = _regular(48)
    shapes = {
        "circle": [(circle, True)],
        "square": [(np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]), True)],
        "triangle": [(_regular(3, phase=-np.pi / 2), True)],
        "star": [(_star(), True)],
        "cross": [(_cross(), True)],
        "ring": [(circle, True), (_regular(48, 0.55), False)],
        "hexagon": [(_regular(6), True)],
        "arrow": [(_arrow(), True)],
        "heart": [(_heart(), True)],
        "crescent": [(circle, True), (_regular(48, 0.85, centre=(0.45, 0.0)), False)],
    }
    return tuple(_normalised(shapes[name]) for name in CLASS_NAMES)


_TEMPLATES = _templates()  # immutable constant, one entry per CLASS_NAMES


# ----------------------------------------------------------------------------- sampling helpers


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.25, 1.0))
    return np.array(rgb, np.float32) * 255.0


def _contrasting_colour(rng: np.random.Generator, backdrop: np.ndarray) -> np.ndarray:
    """A random colour that stands out from `backdrop`, so every object is visible."""
    for _ in range(8):
        colour = _random_colour(rng)
        if np.abs(colour - backdrop).sum() >= _MIN_CONTRAST:
            return colour
    black, white = np.zeros(3, np.float32), np.full(3, 255.0, np.float32)
    return black if np.abs(backdrop).sum() > np.abs(white - backdrop).sum() else white


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as broadcastable float32 vectors ([H, 1] and [1, W])."""
    return (
        np.arange(height, dtype=np.float32)[:, None],
        np.arange(width, dtype=np.float32)[None, :],
    )


def _unit_ramp(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear ramp in a random direction, from 0 to 1 over the image, [H, W]."""
    phi = rng.uniform(0.0, 2.0 * np.pi)
    y, x = _grid(height, width)
    ramp = x * np.float32(np.cos(phi)) + y * np.float32(np.sin(phi))
    return (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], [H, W]: a coarse random grid interpolated up."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Binary stripes of random period and direction, [H, W] in {0, 1}."""
    phi, period = rng.uniform(0.0, np.pi), rng.uniform(3.0, 16.0)
    y, x = _grid(height, width)
    phase = x * np.float32(np.cos(phi) / period) + y * np.float32(np.sin(phi) / period)
    return (phase % 1.0 < 0.5).astype(np.float32)


def _checker(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cell = int(rng.integers(2, 10))
    y, x = np.ogrid[0:height, 0:width]
    return ((x // cell + y // cell) % 2).astype(np.float32)


def _mix(weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend two colours by a [H, W] weight map into [H, W, 3], `a + weight * (b - a)`.

    One affine colour transform in OpenCV: numpy's broadcast over a last axis of 3 is slow.
    """
    matrix = np.stack([b - a, a], axis=1).astype(np.float32)  # [3, 2]: slope, offset
    return cv2.transform(np.ascontiguousarray(weight, np.float32), matrix)


def _background(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    a, b = _random_colour(rng), _random_colour(rng)
    if kind == "flat":
        return np.broadcast_to(np.round(a), (height, width, 3)).copy()
    if kind == "gradient":
        return _mix(_unit_ramp(rng, height, width), a, b)
    if kind == "noise":
        return _mix(_smooth_noise(rng, height, width, int(rng.integers(2, 9))), a, b)
    if kind == "stripes":
        return _mix(_stripes(rng, height, width), a, a + 0.35 * (b - a))
    raise ValueError(f"unknown background {kind!r}")


def _texture(
    rng: np.random.Generator, kind: str, height: int, width: int, backdrop: np.ndarray
) -> np.ndarray:
    """An object's paint for its crop, [h, w, 3]; both colours contrast with the backdrop."""
    a = _contrasting_colour(rng, backdrop)
    if kind == "solid":
        return np.broadcast_to(np.round(a), (height, width, 3))
    b = _contrasting_colour(rng, backdrop)
    if kind == "stripes":
        return _mix(_stripes(rng, height, width), a, b)
    if kind == "checker":
        return _mix(_checker(rng, height, width), a, b)
    if kind == "noise":
        return _mix(_smooth_noise(rng, height, width, int(rng.integers(2, 6))), a, b)
    raise ValueError(f"unknown texture {kind!r}")


# ----------------------------------------------------------------------------- objects


def _place(rng: np.random.Generator, style: SceneStyle, width: int, height: int) -> _Placed:
    """Sample one object's class, size, aspect, rotation and position, and draw its mask."""
    class_id = int(rng.integers(len(CLASS_NAMES)))
    lo, hi = style.size_px
    hi = min(hi, 0.7 * min(width, height))
    size = math.exp(rng.uniform(math.log(lo), math.log(max(hi, lo))))
    aspect = math.exp(rng.uniform(-0.3, 0.3))
    scale = np.array([min(1.0, aspect), min(1.0, 1.0 / aspect)]) * size / 2.0
    angle = rng.uniform(0.0, 2.0 * np.pi)
    polygons, radius = _polygons(class_id, scale, angle)
    centre = np.array(
        [
            rng.uniform(min(radius, width / 2), max(width - radius, width / 2)),
            rng.uniform(min(radius, height / 2), max(height - radius, height / 2)),
        ]
    )
    return _rasterise(class_id, polygons, radius, centre, width, height)


def _polygons(
    class_id: int, scale: np.ndarray, angle: float
) -> tuple[list[tuple[np.ndarray, bool]], float]:
    """A class template scaled (half-sizes in px) and rotated, and its radius around the centre."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    polygons = [((p * scale) @ rotation.T, fill) for p, fill in _TEMPLATES[class_id]]
    return polygons, max(float(np.linalg.norm(p, axis=1).max()) for p, _ in polygons)


def _rasterise(
    class_id: int,
    polygons: list[tuple[np.ndarray, bool]],
    radius: float,
    centre: np.ndarray,
    width: int,
    height: int,
) -> _Placed:
    """Draw the polygons at `centre` into a mask cropped to the image (it may be empty there)."""
    x0, y0 = (max(int(c - radius) - 1, 0) for c in centre)
    x1, y1 = min(int(centre[0] + radius) + 2, width), min(int(centre[1] + radius) + 2, height)
    mask = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.uint8)
    for polygon, fill in polygons:
        fixed = np.round((polygon + centre - (x0, y0)) * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], int(fill), lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return _Placed(class_id, (x0, y0), mask.astype(bool))


def _visible_fractions(placed: list[_Placed], height: int, width: int) -> np.ndarray:
    """Share of each mask not covered by the objects drawn after it."""
    owner = np.full((height, width), -1, np.int32)
    for k, obj in enumerate(placed):
        owner[obj.window][obj.mask] = k
    return np.array(
        [
            np.count_nonzero(owner[obj.window][obj.mask] == k) / max(np.count_nonzero(obj.mask), 1)
            for k, obj in enumerate(placed)
        ],
        np.float32,
    )


def _paint(rng: np.random.Generator, canvas: np.ndarray, obj: _Placed, kind: str) -> None:
    window = canvas[obj.window]
    backdrop = window[obj.mask].mean(axis=0)
    paint = _texture(rng, kind, *obj.mask.shape, backdrop)
    window[obj.mask] = paint[obj.mask]


# ----------------------------------------------------------------------------- distractors


def _distractor(rng: np.random.Generator, canvas: np.ndarray, thin: bool) -> None:
    """Draw one unlabelled line, curve, arc or letter in one flat colour.

    The stroke is drawn into a uint8 mask first: OpenCV's text drawing only accepts 8-bit
    images, and one mask path keeps the four kinds alike.
    """
    height, width = canvas.shape[:2]
    stroke = np.zeros((height, width), np.uint8)
    thickness = int(rng.integers(1, 3 if thin else 5))
    kind = int(rng.integers(4))
    if kind == 0:
        p, q = (tuple(int(v) for v in rng.integers(0, (width, height))) for _ in range(2))
        cv2.line(stroke, p, q, 1, thickness)
    elif kind == 1:
        steps = rng.normal(0.0, 0.1 * min(width, height), size=(int(rng.integers(3, 8)), 2))
        points = (rng.uniform((0, 0), (width, height)) + np.cumsum(steps, axis=0)).astype(np.int32)
        cv2.polylines(stroke, [points], False, 1, thickness)
    elif kind == 2:
        centre = tuple(int(v) for v in rng.integers(0, (width, height)))
        axes = tuple(int(v) for v in rng.integers(4, max(min(width, height) // 3, 5), size=2))
        start = float(rng.uniform(0.0, 360.0))
        span = float(rng.uniform(30.0, 200.0))
        cv2.ellipse(stroke, centre, axes, 0.0, start, start + span, 1, thickness)
    else:
        text = "".join(rng.choice(list(_DISTRACTOR_LETTERS), size=int(rng.integers(1, 4))))
        origin = tuple(int(v) for v in rng.integers(0, (width, height)))
        font_scale = float(rng.uniform(0.3, 1.5))
        cv2.putText(stroke, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1, thickness)
    canvas[stroke.astype(bool)] = _random_colour(rng)


# ----------------------------------------------------------------------------- photometry


def _lighting(rng: np.random.Generator, canvas: np.ndarray, strength: float) -> np.ndarray:
    """Multiply by a smooth brightness field: a linear ramp plus one soft spot."""
    height, width = canvas.shape[:2]
    gain = 1.0 + strength * (2.0 * _unit_ramp(rng, height, width) - 1.0)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    sigma = rng.uniform(0.2, 0.6) * max(width, height)
    y, x = _grid(height, width)
    spot = np.exp(((x - cx) ** 2 + (y - cy) ** 2) * np.float32(-0.5 / sigma**2))
    gain += np.float32(rng.uniform(-strength, strength)) * spot
    return canvas * gain[..., None]


def _sensor(rng: np.random.Generator, canvas: np.ndarray, style: SceneStyle) -> np.ndarray:
    """Optical blur and luminance noise, then quantisation to uint8."""
    if rng.random() < style.blur_probability:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.5))
    sigma = rng.uniform(*style.noise_sigma)
    if sigma > 0.0:
        noise = rng.standard_normal(canvas.shape[:2], dtype=np.float32)
        canvas = canvas + (sigma * noise)[..., None]
    canvas = np.clip(canvas + 0.5, 0.0, 255.0)  # + 0.5 then truncation: round to nearest
    return canvas.astype(np.uint8)


# ----------------------------------------------------------------------------- public API


def generate_scene(seed: int, width: int, height: int, style: SceneStyle | None = None) -> Scene:
    """Draw the scene of `seed` at `width` x `height`; identical output for identical inputs."""
    style = style or SceneStyle()
    rng = np.random.default_rng(seed)
    canvas = _background(rng, str(rng.choice(style.backgrounds)), height, width)
    clutter = int(rng.integers(style.clutter[0], style.clutter[1] + 1))
    in_front = rng.random(clutter) < 0.25
    for _ in range(int(np.count_nonzero(~in_front))):
        _distractor(rng, canvas, thin=False)

    count = int(rng.integers(style.objects[0], style.objects[1] + 1))
    attempts = [_place(rng, style, width, height) for _ in range(count)]
    visible = _visible_fractions(attempts, height, width)
    placed = [obj for obj, v in zip(attempts, visible, strict=True) if v >= style.min_visible]
    for obj in placed:
        _paint(rng, canvas, obj, str(rng.choice(style.textures)))

    for _ in range(int(np.count_nonzero(in_front))):
        _distractor(rng, canvas, thin=True)
    if style.lighting > 0.0:
        canvas = _lighting(rng, canvas, style.lighting)
    return Scene(
        image=_sensor(rng, canvas, style),
        boxes_xyxy=np.stack([o.box() for o in placed]) if placed else np.zeros((0, 4), np.float32),
        class_ids=np.array([o.class_id for o in placed], np.int64),
        visible_fraction=_visible_fractions(placed, height, width),
    )


def split_seed(split: str, index: int) -> int:
    """The seed of scene `index` of a split (IndexError past the split's end)."""
    return SPLITS[split][index]

"""Depth -> 3D without ROS: invalid depths, the inner-median statistic, back-projection."""

from __future__ import annotations

import numpy as np
import pytest

from suhd_ros.geometry import (
    GeometryError,
    Intrinsics,
    box_iou,
    box_to_3d,
    boxes_to_3d,
    depth_in_metres,
    project,
)

K = Intrinsics(fx=500.0, fy=480.0, cx=319.5, cy=239.5, width=640, height=480)


def _scene(background_m: float = 6.0) -> np.ndarray:
    """A wall at background_m with a 100 x 80 px card at 2 m whose box is (270, 200, 370, 280)."""
    depth = np.full((480, 640), background_m, np.float32)
    depth[200:280, 270:370] = 2.0
    return depth


def test_depth_in_metres_marks_every_invalid_value() -> None:
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    metres = depth_in_metres(mm)
    assert np.isnan(metres[0, 0])
    assert metres[0, 1] == pytest.approx(1.5)
    assert metres[1, 1] == pytest.approx(0.001)
    f = np.array([[0.0, np.nan], [np.inf, -1.0], [2.5, 1e-3]], np.float32)
    metres = depth_in_metres(f)
    assert np.isnan(metres[:2]).all()
    assert metres[2].tolist() == pytest.approx([2.5, 1e-3])
    with pytest.raises(GeometryError, match="uint16 millimetres or float metres"):
        depth_in_metres(np.zeros((2, 2), np.int32))
    with pytest.raises(GeometryError, match="H x W"):
        depth_in_metres(np.zeros((2, 2, 3), np.float32))


def test_centre_is_the_back_projected_box_centre_at_the_object_depth() -> None:
    box = np.array([270.0, 200.0, 370.0, 280.0])
    result = box_to_3d(_scene(), box, K)
    assert result is not None
    x, y, z = result.center
    assert z == pytest.approx(2.0)
    # box centre (320, 240) in pixel edges is pixel (319.5, 239.5): the principal point
    assert (x, y) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert result.size[0] == pytest.approx(100 * 2.0 / 500.0)
    assert result.size[1] == pytest.approx(80 * 2.0 / 480.0)
    assert project(result.center, K) == pytest.approx((320.0, 240.0))


def test_background_inside_a_loose_box_does_not_move_the_depth() -> None:
    """A box 25 % larger per side than the card: the outer ring shows the far wall and pulls the
    mean of the box behind the card; the nearest mode stays on the card."""
    box = np.array([257.5, 190.0, 382.5, 290.0])
    whole = _scene()[190:290, 258:383]
    assert whole.mean() > 2.5
    result = box_to_3d(_scene(), box, K)
    assert result is not None and result.center[2] == pytest.approx(2.0)


def test_a_hollow_object_is_found_through_its_hole() -> None:
    """A square frame at 2 m filling 42 % of its box, the wall seen through its hole: the
    median of the box (or of its inner half) is the wall's 6 m, the nearest mode the frame's."""
    depth = np.full((480, 640), 6.0, np.float32)
    depth[200:300, 270:370] = 2.0
    depth[212:288, 282:358] = 6.0  # 76 x 76 hole: the frame keeps 42 % of the 100 x 100 box
    frame = depth[200:300, 270:370]
    assert np.median(frame) == 6.0 and np.median(frame[25:75, 25:75]) == 6.0
    result = box_to_3d(depth, np.array([270.0, 200.0, 370.0, 300.0]), K)
    assert result is not None and result.center[2] == pytest.approx(2.0)
    assert result.size[2] == pytest.approx(0.01)  # one flat surface: the least extent


def test_an_occluder_with_little_of_the_box_is_passed_over() -> None:
    """A pole at 1 m across 20 % of the card's box: nearer, but too small to be the surface."""
    depth = _scene()
    depth[200:280, 300:320] = 1.0
    result = box_to_3d(depth, np.array([270.0, 200.0, 370.0, 280.0]), K)
    assert result is not None and result.center[2] == pytest.approx(2.0)


def test_holes_and_speckle_are_ignored_but_too_few_valid_depths_give_none() -> None:
    rng = np.random.default_rng(0)
    depth = _scene()
    card = depth[200:280, 270:370]
    card += rng.normal(0.0, 0.01, card.shape).astype(np.float32)
    holes = rng.random(card.shape) < 0.4
    card[holes] = np.nan
    speckle = rng.random(card.shape) < 0.05
    card[speckle] = 0.3  # flying pixels far in front
    box = np.array([270.0, 200.0, 370.0, 280.0])
    result = box_to_3d(depth, box, K)
    assert result is not None and result.center[2] == pytest.approx(2.0, abs=0.01)
    card[rng.random(card.shape) < 0.9] = np.nan
    assert box_to_3d(depth, box, K) is None


def test_boxes_outside_the_image_or_not_finite_give_none() -> None:
    depth = _scene()
    assert box_to_3d(depth, np.array([700.0, 10.0, 800.0, 50.0]), K) is None
    assert box_to_3d(depth, np.array([np.nan, 10.0, 80.0, 50.0]), K) is None
    assert box_to_3d(depth, np.array([10.0, 10.0, 10.0, 50.0]), K) is None


def test_off_centre_object_lands_where_the_pinhole_model_puts_it() -> None:
    point = (0.4, -0.3, 3.0)
    u, v = project(point, K)
    depth = np.full((480, 640), np.nan, np.float32)
    depth[int(v) - 10:int(v) + 10, int(u) - 10:int(u) + 10] = 3.0
    results = boxes_to_3d(depth, np.array([[u - 10, v - 10, u + 10, v + 10]]), K)
    assert results[0] is not None
    assert results[0].center == pytest.approx(point, abs=1e-6)


def test_intrinsics_refuse_an_uncalibrated_camera_and_a_misaligned_depth() -> None:
    with pytest.raises(GeometryError, match="uncalibrated"):
        Intrinsics.from_k([0.0] * 9, 640, 480)
    k = Intrinsics.from_k(K.k(), 640, 480)
    assert k == K
    with pytest.raises(GeometryError, match="not aligned"):
        boxes_to_3d(np.zeros((240, 320), np.float32), np.zeros((1, 4)), k)


def test_box_iou_of_known_pairs() -> None:
    a = np.array([[0.0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 10, 5]])
    overlap = box_iou(a, b)
    assert overlap.shape == (2, 4)
    assert overlap[0].tolist() == pytest.approx([1 / 3, 0.0, 1.0, 0.5])
    assert overlap[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # an empty box overlaps nothing


# a strongly distorting lens (a wide-angle webcam's order of magnitude), plumb_bob and rational
PLUMB_BOB = (-0.28, 0.09, 0.001, -0.0015, -0.012)
RATIONAL = (0.9, -0.3, 0.0008, 0.0012, 0.05, 1.2, -0.25, 0.1)


@pytest.mark.parametrize("distortion", [PLUMB_BOB, RATIONAL])
def test_rays_and_pixels_agree_with_opencv(distortion: tuple[float, ...]) -> None:
    """Our undistortion (fixed point) and distortion against OpenCV's undistortPoints and
    projectPoints, over the whole image."""
    cv2 = pytest.importorskip("cv2")
    k = Intrinsics.from_k(K.k(), 640, 480, distortion)
    camera = np.array(K.k()).reshape(3, 3)
    pixels = np.array([[u, v] for u in np.linspace(0, 639, 9) for v in np.linspace(0, 479, 7)])
    opencv = cv2.undistortPoints(pixels.reshape(-1, 1, 2), camera, np.array(distortion),
                                 criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100,
                                           1e-12)).reshape(-1, 2)
    ours = np.array([k.ray(u, v) for u, v in pixels])
    assert ours == pytest.approx(opencv, abs=1e-6)
    back = np.array([k.pixel(x, y) for x, y in ours])
    assert back == pytest.approx(pixels, abs=1e-3)
    rays = np.concatenate([ours, np.ones((len(ours), 1))], axis=1)
    projected, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), camera, np.array(distortion))
    assert back == pytest.approx(projected.reshape(-1, 2), abs=1e-6)


def test_an_object_seen_through_a_distorting_lens_is_placed_where_it_is() -> None:
    """Near the corner of a plumb_bob image a pinhole back-projection is off by about 3 % of
    the distance; with the distortion undone, the centre is exact."""
    k = Intrinsics.from_k(K.k(), 640, 480, PLUMB_BOB)
    point = (-1.2, -0.9, 3.0)
    u, v = project(point, k)
    assert 5 < u < 630 and 5 < v < 470
    depth = np.full((480, 640), np.nan, np.float32)
    depth[int(v) - 10:int(v) + 10, int(u) - 10:int(u) + 10] = 3.0
    box = np.array([u - 10, v - 10, u + 10, v + 10])
    located = box_to_3d(depth, box, k)
    assert located is not None and located.center == pytest.approx(point, abs=1e-6)
    pinhole = box_to_3d(depth, box, K)
    assert pinhole is not None
    assert np.linalg.norm(np.subtract(pinhole.center, point)) > 0.02 * 3.0


def test_distortion_coefficients_are_checked_and_zeros_are_none() -> None:
    assert Intrinsics.from_k(K.k(), 640, 480, [0.0] * 5) == K
    assert Intrinsics.from_k(K.k(), 640, 480, PLUMB_BOB).distortion == PLUMB_BOB
    with pytest.raises(GeometryError, match="up to 8 finite"):
        Intrinsics.from_k(K.k(), 640, 480, [0.1] * 9)
    with pytest.raises(GeometryError, match="up to 8 finite"):
        Intrinsics.from_k(K.k(), 640, 480, [0.1, float("nan")])


def test_a_lens_model_that_cannot_be_inverted_there_gives_none() -> None:
    """A radial factor that reaches zero inside the image (a bad calibration): no 3D, never a
    NaN centre."""
    k = Intrinsics.from_k(K.k(), 640, 480, (-4.0, 0.0, 0.0, 0.0))
    depth = np.full((480, 640), 2.0, np.float32)
    assert box_to_3d(depth, np.array([0.0, 0.0, 20.0, 20.0]), k) is None
    assert box_to_3d(depth, np.array([310.0, 230.0, 330.0, 250.0]), k) is not None

"""Image / CompressedImage payloads <-> RGB arrays, checked against hand-built bytes."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from suhd_ros.ros.image_encoding import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_image,
)

COLOUR_8BIT = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3")
MONO = ("mono8", "8UC1", "mono16", "16UC1")
YUV = ("yuv422", "yuv422_yuy2")


def random_rgb(height: int = 6, width: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pad_rows(data: bytes, height: int, step: int, pad: int, fill: int = 0xAB) -> bytes:
    """The same rows, each followed by ``pad`` bytes of junk."""
    rows = [data[r * step : (r + 1) * step] + bytes([fill]) * pad for r in range(height)]
    return b"".join(rows)


def round_trip(rgb: np.ndarray, encoding: str) -> np.ndarray:
    height, width, name, step, data = encode_image(rgb, encoding)
    assert (height, width, name, len(data)) == (*rgb.shape[:2], encoding, step * height)
    return decode_image(height, width, name, step, data)


def test_encodings_cover_the_task_list() -> None:
    expected = {*COLOUR_8BIT, *MONO, *YUV}
    assert set(SUPPORTED_ENCODINGS) == expected


@pytest.mark.parametrize("encoding", COLOUR_8BIT)
def test_8bit_colour_round_trip_is_exact(encoding: str) -> None:
    rgb = random_rgb()
    np.testing.assert_array_equal(round_trip(rgb, encoding), rgb)


@pytest.mark.parametrize(
    ("encoding", "order"),
    [
        ("rgb8", (0, 1, 2)),
        ("bgr8", (2, 1, 0)),
        ("8UC3", (2, 1, 0)),
        ("rgba8", (0, 1, 2, None)),
        ("bgra8", (2, 1, 0, None)),
    ],
)
def test_encoded_bytes_follow_the_named_channel_order(encoding: str, order: tuple) -> None:
    rgb = random_rgb(seed=1)
    _, width, _, step, data = encode_image(rgb, encoding)
    assert step == width * len(order)
    pixels = np.frombuffer(data, np.uint8).reshape(6, width, len(order))
    for byte, channel in enumerate(order):
        expected = np.full((6, width), 255) if channel is None else rgb[..., channel]
        np.testing.assert_array_equal(pixels[..., byte], expected)


@pytest.mark.parametrize("encoding", MONO)
def test_mono_round_trip_matches_opencv_grey(encoding: str) -> None:
    rgb = random_rgb(seed=2)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(round_trip(rgb, encoding), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding", ("mono16", "16UC1"))
def test_16bit_encoding_spans_the_full_range_little_endian(encoding: str) -> None:
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[0] = 255
    _, _, _, step, data = encode_image(rgb, encoding)
    assert step == 4 * 2
    samples = np.frombuffer(data, "<u2").reshape(2, 4)
    np.testing.assert_array_equal(samples, [[65535] * 4, [0] * 4])


@pytest.mark.parametrize("encoding", YUV)
def test_yuv_round_trip_is_close_for_pixel_pairs(encoding: str) -> None:
    # 4:2:2 shares chroma between horizontal pairs: pairs of equal pixels survive it.
    rgb = np.repeat(random_rgb(10, 8, seed=3), 2, axis=1)
    decoded = round_trip(rgb, encoding)
    assert np.abs(decoded.astype(int) - rgb.astype(int)).max() <= 3


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("yuv422", [128, 16, 128, 235]),  # UYVY: U Y0 V Y1
        ("yuv422_yuy2", [16, 128, 235, 128]),  # YUYV: Y0 U Y1 V
    ],
)
def test_yuv_byte_order_from_hand_built_buffer(encoding: str, payload: list[int]) -> None:
    # BT.601 studio range with neutral chroma: Y = 16 is black, Y = 235 is white.
    decoded = decode_image(1, 2, encoding, 4, bytes(payload))
    np.testing.assert_array_equal(decoded, [[[0, 0, 0], [255, 255, 255]]])


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_row_padding_is_skipped(encoding: str) -> None:
    rgb = np.repeat(random_rgb(5, 3, seed=4), 2, axis=1)
    height, width, _, step, data = encode_image(rgb, encoding)
    unpadded = decode_image(height, width, encoding, step, data)
    padded = decode_image(height, width, encoding, step + 5, pad_rows(data, height, step, 5))
    np.testing.assert_array_equal(padded, unpadded)


def test_rgb8_padding_hand_built() -> None:
    rgb = random_rgb(3, 2, seed=5)
    data = b"".join(rgb[r].tobytes() + b"\xff\x00\xff\x00" for r in range(3))
    np.testing.assert_array_equal(decode_image(3, 2, "rgb8", 10, data), rgb)


@pytest.mark.parametrize("is_bigendian", [False, True])
def test_16bit_takes_the_high_byte_in_either_byte_order(is_bigendian: bool) -> None:
    values = np.array([[0x0000, 0x00FF, 0x0100, 0x1234], [0x7FFF, 0x8000, 0xABCD, 0xFFFF]])
    dtype = ">u2" if is_bigendian else "<u2"
    pad = b"\x55\x55"
    data = b"".join(values[r].astype(dtype).tobytes() + pad for r in range(2))
    decoded = decode_image(2, 4, "16UC1", 10, data, is_bigendian=is_bigendian)
    expected = (values // 256).astype(np.uint8)
    np.testing.assert_array_equal(decoded, np.repeat(expected[..., None], 3, axis=2))


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: array.array("B", b), lambda b: np.frombuffer(b, "B")],
)
def test_payload_containers_decode_alike_into_an_owned_array(wrap) -> None:
    rgb = random_rgb(seed=6)
    height, width, encoding, step, data = encode_image(rgb, "rgb8")
    payload = wrap(data)
    decoded = decode_image(height, width, encoding, step, payload)
    np.testing.assert_array_equal(decoded, rgb)
    assert decoded.flags.c_contiguous and decoded.flags.writeable
    assert not np.shares_memory(decoded, np.frombuffer(data, np.uint8))


MALFORMED = [
    pytest.param(dict(encoding="rgb8", step=5), "smaller than one row", id="step-too-small"),
    pytest.param(dict(data=bytes(4 * 6 - 1)), "expected step x height", id="short-data"),
    pytest.param(dict(data=bytes(4 * 6 + 1)), "expected step x height", id="long-data"),
    pytest.param(dict(encoding="rgb16"), "supported: rgb8", id="unknown-encoding"),
    pytest.param(dict(height=0, data=b""), "positive", id="zero-height"),
    pytest.param(dict(width=0, step=0, data=b""), "positive", id="zero-width"),
    pytest.param(
        dict(encoding="yuv422", width=3, step=6, data=bytes(24)), "even", id="odd-yuv-width"
    ),
    pytest.param(dict(data=np.zeros(12, np.uint16)), "dtype uint8", id="wide-array"),
    pytest.param(dict(data="x" * 24), "bytes-like", id="text-data"),
]


@pytest.mark.parametrize(("override", "message"), MALFORMED)
def test_malformed_images_raise_with_a_useful_message(override: dict, message: str) -> None:
    fields = dict(height=4, width=2, encoding="rgb8", step=6, data=bytes(24))
    fields.update(override)
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(**fields)


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_image(1, 1, "rgb8", 3, b"")


def encoded(rgb: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("format", ["png", "rgb8; png compressed rgb8", "bgr8; png compressed", ""])
def test_png_decodes_exactly(format: str) -> None:
    rgb = random_rgb(7, 9, seed=7)
    np.testing.assert_array_equal(decode_compressed(format, encoded(rgb, ".png")), rgb)


@pytest.mark.parametrize("format", ["jpeg", "bgr8; jpeg compressed bgr8", "jpg", ""])
def test_jpeg_decodes_close_to_the_original(format: str) -> None:
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 5, y * 7, 128 + 0 * x], axis=2).astype(np.uint8)
    decoded = decode_compressed(format, array.array("B", encoded(rgb, ".jpg")))
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - rgb.astype(int)).mean() < 3


def test_grey_png_comes_back_as_rgb() -> None:
    grey = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    ok, buffer = cv2.imencode(".png", grey)
    assert ok
    decoded = decode_compressed("mono8; png compressed mono8", buffer.tobytes())
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize(
    ("format", "data", "message"),
    [
        pytest.param("jpeg", b"not an image at all", "expected 'ff d8 ff'", id="garbage-jpeg"),
        pytest.param("", b"GIF89a......", "neither JPEG nor PNG", id="garbage-unnamed"),
        pytest.param("png", b"", "says png", id="empty"),
        pytest.param("webp", b"RIFF....WEBP", "unsupported compressed format", id="webp"),
        pytest.param("16UC1; compressedDepth png", b"\x00" * 20, "compressedDepth", id="depth"),
        pytest.param("jpeg", b"\xff\xd8\xff" + b"\x00" * 40, "corrupt jpeg", id="bad-body"),
        pytest.param("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt png", id="bad-png"),
    ],
)
def test_malformed_compressed_raise(format: str, data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_compressed(format, data)


@pytest.mark.parametrize(
    ("rgb", "encoding", "message"),
    [
        (random_rgb(), "rgb16", "unsupported encoding"),
        (random_rgb(2, 3), "yuv422", "even"),
        (random_rgb()[..., :2], "rgb8", "H x W x 3"),
        (random_rgb().astype(np.float32), "rgb8", "uint8"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "non-empty"),
    ],
)
def test_encode_rejects_bad_input(rgb: np.ndarray, encoding: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_image(rgb, encoding)


ENCODING_NAMES = st.sampled_from([*SUPPORTED_ENCODINGS, "", "rgb16", "MONO8", "yuv"])
CONTAINERS = st.sampled_from([bytes, bytearray, lambda b: array.array("B", b)])


@st.composite
def image_fields(draw: st.DrawFn) -> dict:
    """Mostly consistent geometry, with every field sometimes off, and random bytes."""
    height = draw(st.integers(-1, 6))
    width = draw(st.integers(-1, 7))
    row = st.tuples(st.integers(1, 4), st.integers(0, 3)).map(lambda kp: width * kp[0] + kp[1])
    step = draw(st.one_of(st.integers(-2, 40), row, row))
    exact = max(height, 0) * max(step, 0)
    size = draw(st.one_of(st.just(exact), st.just(exact), st.integers(0, 300)))
    payload = draw(st.binary(min_size=size, max_size=size))
    return dict(
        height=height,
        width=width,
        encoding=draw(ENCODING_NAMES),
        step=step,
        data=draw(CONTAINERS)(payload),
        is_bigendian=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_fields())
def test_fuzzed_images_decode_or_raise_decode_error(fields: dict) -> None:
    try:
        decoded = decode_image(**fields)
    except ImageDecodeError:
        event("rejected")
        return
    event("decoded")
    assert decoded.shape == (fields["height"], fields["width"], 3)
    assert decoded.dtype == np.uint8


VALID_COMPRESSED = [encoded(random_rgb(8, 8, seed=9), ext) for ext in (".png", ".jpg")]


@st.composite
def compressed_payloads(draw: st.DrawFn) -> bytes:
    """Random bytes, or a valid PNG / JPEG truncated and with a few bytes overwritten."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(VALID_COMPRESSED)))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["jpeg", "png", "", "bgr8; jpeg compressed bgr8"]), compressed_payloads())
def test_fuzzed_compressed_decode_or_raise_decode_error(format: str, data: bytes) -> None:
    try:
        decoded = decode_compressed(format, data)
    except ImageDecodeError:
        event("rejected")
        return
    event("decoded")
    assert decoded.ndim == 3 and decoded.shape[2] == 3 and decoded.dtype == np.uint8

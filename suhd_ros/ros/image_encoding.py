"""sensor_msgs/Image and CompressedImage payloads <-> RGB numpy images, without cv_bridge.

The functions take the plain message fields, so the nodes pass ``msg.height`` etc. and the
tests need no ROS. Every decoded image is an owned, writable, C-contiguous ``H x W x 3`` uint8
RGB array. The payload is read through a zero-copy view (strides skip row padding and the low
bytes of 16-bit samples), so the only copy is the one conversion that writes the result.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np

ImagePayload = bytes | bytearray | memoryview | array.array | np.ndarray


class ImageDecodeError(ValueError):
    """A payload that does not describe a valid image; the message says expected vs found."""


@dataclass(frozen=True)
class _Layout:
    """How one encoding stores a pixel, and the OpenCV conversions to and from RGB."""

    channels: int
    sample_bytes: int
    to_rgb: int | None
    from_rgb: int | None
    even_width: bool = False

    @property
    def pixel_bytes(self) -> int:
        return self.channels * self.sample_bytes


_MONO8 = _Layout(1, 1, cv2.COLOR_GRAY2RGB, cv2.COLOR_RGB2GRAY)
_MONO16 = _Layout(1, 2, cv2.COLOR_GRAY2RGB, cv2.COLOR_RGB2GRAY)
_BGR8 = _Layout(3, 1, cv2.COLOR_BGR2RGB, cv2.COLOR_RGB2BGR)

# Names as in sensor_msgs/image_encodings.hpp. "yuv422" is UYVY and "yuv422_yuy2" is YUYV there;
# the OpenCV-typed names follow cv_bridge (8UC3 is read as bgr8, 8UC1 as mono8).
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, None, None),
    "bgr8": _BGR8,
    "rgba8": _Layout(4, 1, cv2.COLOR_RGBA2RGB, cv2.COLOR_RGB2RGBA),
    "bgra8": _Layout(4, 1, cv2.COLOR_BGRA2RGB, cv2.COLOR_RGB2BGRA),
    "mono8": _MONO8,
    "mono16": _MONO16,
    "16UC1": _MONO16,
    "8UC3": _BGR8,
    "8UC1": _MONO8,
    "yuv422": _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY, cv2.COLOR_RGB2YUV_UYVY, even_width=True),
    "yuv422_yuy2": _Layout(2, 1, cv2.COLOR_YUV2RGB_YUY2, cv2.COLOR_RGB2YUV_YUY2, even_width=True),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)

_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def _layout(encoding: str, error: type[ValueError]) -> _Layout:
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise error(
            f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    return layout


def _byte_view(data: ImagePayload) -> np.ndarray:
    """The payload as a flat uint8 array, sharing memory with ``data`` whenever it can."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"data array must have dtype uint8, found {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise ImageDecodeError(
            f"data must be a contiguous bytes-like object, found {type(data).__name__}"
        ) from exc


def _check_geometry(height: int, width: int, step: int, n_bytes: int, layout: _Layout) -> None:
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image size must be positive, found {height}x{width} (HxW)")
    if layout.even_width and width % 2:
        raise ImageDecodeError(f"yuv422 packs pixel pairs: width must be even, found {width}")
    row_bytes = width * layout.pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is smaller than one row: width {width} x {layout.pixel_bytes} bytes "
            f"per pixel = {row_bytes}"
        )
    if n_bytes != step * height:
        raise ImageDecodeError(
            f"data has {n_bytes} bytes, expected step x height = {step} x {height} = "
            f"{step * height}"
        )


def _significant_byte(layout: _Layout, is_bigendian: bool) -> int:
    """Which byte of a sample to keep: the only one, or for 16 bits the high one (``>> 8``).

    A fixed shift, rather than stretching each frame's min..max, keeps brightness stable from
    frame to frame and maps the full 16-bit range onto the full 8-bit one. Picking the byte
    is a view, so no 16-bit copy is made.
    """
    return 1 if layout.sample_bytes == 2 and not is_bigendian else 0


def decode_image(
    height: int,
    width: int,
    encoding: str,
    step: int,
    data: ImagePayload,
    is_bigendian: bool = False,
) -> np.ndarray:
    """Decode a sensor_msgs/Image payload to an ``H x W x 3`` uint8 RGB array.

    16-bit encodings are reduced to 8 bits by ``>> 8`` (see ``_significant_byte``);
    ``is_bigendian`` only matters for them. Rows may be padded (``step`` larger than a row).
    """
    layout = _layout(encoding, ImageDecodeError)
    flat = _byte_view(data)
    _check_geometry(height, width, step, flat.size, layout)
    rows = flat.reshape(height, step)[:, : width * layout.pixel_bytes]
    samples = rows.reshape(height, width, layout.channels, layout.sample_bytes)
    pixels = samples[..., _significant_byte(layout, bool(is_bigendian))]
    if layout.channels == 1:
        pixels = pixels[..., 0]
    if layout.to_rgb is None:
        return pixels.copy()
    return cv2.cvtColor(pixels, layout.to_rgb)


def _codec(format: str) -> str | None:
    """The codec a CompressedImage ``format`` names ("jpeg", "png"), None when it names none.

    The field reads like "jpeg", "png", "bgr8; jpeg compressed bgr8" or
    "16UC1; compressedDepth png"; the latter carries a depth header that OpenCV cannot read.
    """
    text = format.lower()
    if "compresseddepth" in text:
        raise ImageDecodeError(f"compressedDepth payloads are not supported (format {format!r})")
    if "jpeg" in text or "jpg" in text:
        return "jpeg"
    if "png" in text:
        return "png"
    if text.strip():
        raise ImageDecodeError(f"unsupported compressed format {format!r}; expected jpeg or png")
    return None


def decode_compressed(format: str, data: ImagePayload) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to an ``H x W x 3`` uint8 RGB array.

    An empty ``format`` lets the magic bytes decide. Grey and alpha images come back as RGB.
    """
    codec = _codec(format)
    buffer = _byte_view(data)
    head = buffer[:8].tobytes()
    if codec is not None and not head.startswith(_MAGIC[codec]):
        raise ImageDecodeError(
            f"format {format!r} says {codec}, but the data starts with {head.hex(' ')!r}, "
            f"expected {_MAGIC[codec].hex(' ')!r}"
        )
    if codec is None and not any(head.startswith(magic) for magic in _MAGIC.values()):
        raise ImageDecodeError(f"data starts with {head.hex(' ')!r}: neither JPEG nor PNG")
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"OpenCV could not decode the {codec or 'image'}: {exc}") from exc
    if bgr is None:
        raise ImageDecodeError(f"corrupt {codec or 'image'} data ({buffer.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_image(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, str, int, bytes]:
    """Encode an ``H x W x 3`` uint8 RGB image as sensor_msgs/Image fields.

    Returns ``(height, width, encoding, step, data)``; rows are unpadded and 16-bit samples are
    little-endian (``is_bigendian = 0``), scaled by 257 so full white is 65535 and ``>> 8``
    gives the 8-bit value back exactly.
    """
    layout = _layout(encoding, ValueError)
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3):
        raise ValueError("rgb must be an H x W x 3 uint8 numpy array")
    height, width, channels = rgb.shape
    if channels != 3 or height == 0 or width == 0:
        raise ValueError(f"rgb must be a non-empty H x W x 3 array, found shape {rgb.shape}")
    if layout.even_width and width % 2:
        raise ValueError(f"{encoding} packs pixel pairs: width must be even, found {width}")
    pixels = rgb if layout.from_rgb is None else cv2.cvtColor(rgb, layout.from_rgb)
    if layout.sample_bytes == 2:
        pixels = (pixels.astype(np.uint16) * 257).astype("<u2")
    data = np.ascontiguousarray(pixels).tobytes()
    return height, width, encoding, width * layout.pixel_bytes, data

"""Image sizes from file headers: indexing a large dataset must not decode every image.

PNG, JPEG (EXIF orientation applied, as the decoder applies it), BMP, GIF and WebP are read
from their first bytes; anything else OpenCV reads is decoded once. A file that is none of these
is reported as unreadable while indexing, not in the middle of an epoch.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
)
_HEADER_BYTES = 64 * 1024  # JPEG metadata before the frame header rarely exceeds this
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as the decoder will return the image, or None when it is unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
    except OSError:
        return None
    try:
        size = _header_size(head)
    except (struct.error, IndexError, ValueError):
        return None
    if size is None and head:
        size = _decoded_size(path)
    return size if size is not None and min(size) > 0 else None


def _header_size(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"BM"):
        if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header
            return struct.unpack("<HH", head[18:22])
        width, height = struct.unpack("<ii", head[18:26])
        return width, abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walks the marker segments to the frame header; EXIF orientation 5..8 swaps the sides."""
    pos, orientation = 2, 1
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            raise ValueError("not a marker")
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        segment = head[pos + 4 : pos + 2 + length]
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", segment[1:5])
            return (height, width) if orientation in _ROTATED else (width, height)
        if marker == 0xE1 and segment.startswith(b"Exif\0\0"):
            orientation = _exif_orientation(segment[6:])
        pos += 2 + length
    raise ValueError("no frame header in the first bytes")


def _exif_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0; 1 (upright) when absent or unparsable."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for k in range(count):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:
            return struct.unpack(order + "H", entry[8:10])[0]
    return 1


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _decoded_size(path: Path) -> tuple[int, int] | None:
    """Other formats: decode once (slow, but only for formats without a parser here)."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else (image.shape[1], image.shape[0])

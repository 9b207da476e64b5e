"""Read an image's pixel size from the first bytes of a PNG, JPEG, GIF or WebP file.

The simulated workflows need the *source* image's size (outpaint adds to it, upscale keeps its
aspect ratio), and a real workflow would fail on something that is not an image. Only headers are
parsed, so a capped prefix of the download is enough (JPEG is the greedy one: its size lives in the
SOF segment, after any EXIF/ICC segments).
"""

from __future__ import annotations

import struct

__all__ = ["image_size"]

# JPEG markers that carry no length field and so must be stepped over by hand.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers (every SOFn except DHT=C4, JPG=C8 and DAC=CC); they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS = 0xDA


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` if ``data`` starts like a PNG, JPEG, GIF or WebP image, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _positive(*struct.unpack_from("<HH", data, 6)) if len(data) >= 10 else None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return _positive(width, height)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    end = len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return None  # lost sync: not a well-formed marker stream
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker in _JPEG_STANDALONE:
            continue
        if marker == _JPEG_SOS or pos + 2 > end:
            return None  # image data started (or the prefix ended) before any frame header
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _JPEG_SOF:
            if pos + 7 > end:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return _positive(width, height)
        pos += length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return _positive(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return (width, height)
    return None

"""An independent PNG checker for the tests: chunk CRCs, IHDR, and the decompressed data length.

Written from the PNG spec rather than reusing the encoder's code, so an encoder bug cannot hide
behind a matching checker bug.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class PngInfo:
    width: int
    height: int
    bit_depth: int
    color_type: int
    chunk_types: list[bytes]
    raw_length: int
    """Length of the decompressed IDAT stream (filter bytes + scanlines)."""


def check_png(data: bytes, *, keep_raw: bool = False) -> tuple[PngInfo, bytes]:
    """Validate ``data`` as a PNG; return its info and (if ``keep_raw``) the decompressed data."""
    assert data[:8] == SIGNATURE, "bad signature"
    pos = 8
    chunk_types: list[bytes] = []
    idat = bytearray()
    header: tuple[int, ...] | None = None
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + payload), f"bad CRC in {kind!r}"
        chunk_types.append(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert pos == len(data), "trailing bytes after the last chunk"
    assert chunk_types[0] == b"IHDR"
    assert chunk_types[-1] == b"IEND"
    assert header is not None
    width, height, bit_depth, color_type, _compression, _filter, interlace = header
    assert interlace == 0

    decompressor = zlib.decompressobj()
    raw = bytearray()
    raw_length = 0
    pending = bytes(idat)
    while pending:
        # Bounded chunks keep a 200 MB image from being held in memory at once.
        out = decompressor.decompress(pending, 1 << 24)
        raw_length += len(out)
        if keep_raw:
            raw += out
        pending = decompressor.unconsumed_tail
    assert decompressor.eof, "deflate stream not terminated (or Adler-32 wrong)"
    info = PngInfo(width, height, bit_depth, color_type, chunk_types, raw_length)
    return info, bytes(raw)


def decode_rgb_rows(raw: bytes, width: int, height: int) -> list[bytes]:
    """Undo PNG filters 0-2 for 8-bit RGB scanlines (the ones the encoder uses)."""
    stride = width * 3
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if filter_type == 1:
            for i in range(3, stride):
                line[i] = (line[i] + line[i - 3]) & 0xFF
        elif filter_type == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        else:
            assert filter_type == 0, f"unexpected filter {filter_type}"
        previous = bytes(line)
        rows.append(previous)
    return rows

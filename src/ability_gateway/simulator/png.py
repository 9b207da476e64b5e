"""A fast, dependency-free PNG encoder for the simulator's generated images.

The simulator must hand out *real* PNG files of exactly the requested size, up to 16384 pixels per
side, quickly and without Pillow. Compressing 8192x8192 RGB pixels row by row would push ~200 MB
through deflate; instead the image is built so that almost all of that work can be done once and
reused:

* The picture is a stack of horizontal bands. The first row of a band uses PNG filter 1 (``Sub``)
  with a constant per-pixel delta, i.e. a wrapping horizontal colour gradient, so the row is just
  ``start colour + delta * (width - 1)`` and costs one ``bytes`` multiplication to build.
* Every other row of the band uses filter 2 (``Up``) with all-zero data: "same as the row above".

Each piece is compressed by a *fresh* raw-deflate compressor ended with ``Z_FULL_FLUSH``, which
byte-aligns the output and leaves no back-references into earlier data. Such pieces can therefore be
concatenated in any order and repeated verbatim, so the compressed run of "N zero rows" is computed
once per (row length, N) and reused for every band. The zlib container's Adler-32 is combined
arithmetically per piece (``adler32_combine``), never recomputed over the ~200 MB of raw data.

The result is a valid PNG (signature, IHDR, one IDAT, IEND, correct CRCs, 8-bit RGB, no interlace)
that decodes with any conforming decoder. Encoding an 8192x8192 image takes tens of milliseconds and
produces ~200 KB; results are cached with an LRU keyed by ``(width, height, seed)``.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

__all__ = ["MAX_SIDE", "PNG_SIGNATURE", "adler32_combine", "render_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 16384
"""Largest width or height the simulator generates (a 16K image still encodes in well under 1 s)."""

_BANDS = 24  # how many colour bands stack up an image; enough to look like a picture, not noise
_ADLER_BASE = 65521
_BYTES_PER_PIXEL = 3  # 8-bit RGB
_FILTER_SUB = 1
_FILTER_UP = 2


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Return the Adler-32 of ``A + B`` from ``adler32(A)``, ``adler32(B)`` and ``len(B)``.

    A port of zlib's ``adler32_combine`` (not exposed by Python's :mod:`zlib`), so the checksum of
    a repeated block is obtained without feeding its bytes through ``zlib.adler32`` again.
    """
    base = _ADLER_BASE
    rem = len2 % base
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 += (adler2 & 0xFFFF) + base - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + base - rem
    if sum1 >= base:
        sum1 -= base
    if sum1 >= base:
        sum1 -= base
    if sum2 >= base << 1:
        sum2 -= base << 1
    if sum2 >= base:
        sum2 -= base
    return sum1 | (sum2 << 16)


class _Piece:
    """One independently compressed run of filtered scanlines: its deflate bytes and checksum."""

    __slots__ = ("adler", "compressed", "raw_len")

    def __init__(self, raw: bytes) -> None:
        # A fresh compressor per piece plus a full flush makes the output self-contained and
        # byte-aligned, which is what lets pieces be concatenated and repeated (see module doc).
        compressor = zlib.compressobj(level=6, wbits=-15)
        self.compressed = compressor.compress(raw) + compressor.flush(zlib.Z_FULL_FLUSH)
        self.adler = zlib.adler32(raw)
        self.raw_len = len(raw)


@lru_cache(maxsize=64)
def _repeat_rows(row_bytes: int, rows: int) -> _Piece:
    """The piece for ``rows`` scanlines that repeat the one above (filter ``Up``, all zeros)."""
    return _Piece((bytes((_FILTER_UP,)) + bytes(row_bytes)) * rows)


def _band_palette(seed: int, bands: int) -> list[tuple[bytes, bytes]]:
    """Per band: the first pixel's colour and the per-pixel colour delta, derived from ``seed``.

    The start colour drifts by a fixed step from band to band (a vertical gradient) and the delta
    is 0 or 1 per channel (a soft horizontal gradient that wraps every 256 pixels). A tiny linear
    congruential generator keeps this deterministic without touching :mod:`random`.
    """
    state = (seed ^ 0x5DEECE66D) & 0xFFFFFFFFFFFF
    values: list[int] = []
    for _ in range(9):
        state = (state * 0x5DEECE66D + 0xB) & 0xFFFFFFFFFFFF
        values.append((state >> 17) & 0xFF)
    base, step = values[0:3], [v % 23 - 11 for v in values[3:6]]
    delta = (
        bytes(v & 1 for v in values[6:9]) if any(v & 1 for v in values[6:9]) else b"\x01\x00\x01"
    )
    return [
        (bytes((b + s * index) & 0xFF for b, s in zip(base, step, strict=True)), delta)
        for index in range(bands)
    ]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@lru_cache(maxsize=128)
def render_png(width: int, height: int, seed: int = 0) -> bytes:
    """Encode a deterministic ``width`` x ``height`` 8-bit RGB PNG, its pattern chosen by ``seed``.

    Raises :class:`ValueError` for sizes outside ``1..MAX_SIDE``. Cached: the same arguments return
    the same ``bytes`` object without re-encoding.
    """
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"PNG size must be within 1..{MAX_SIDE} per side, got {width}x{height}")
    row_bytes = width * _BYTES_PER_PIXEL
    bands = min(_BANDS, height)
    band_height, extra = divmod(height, bands)
    palette = _band_palette(seed, bands)

    parts: list[bytes] = [b"\x78\x9c"]  # zlib header: deflate, 32 KiB window, default level
    adler = 1  # Adler-32 of the empty string
    for index, (start, delta) in enumerate(palette):
        rows = band_height + (1 if index < extra else 0)
        first = _Piece(bytes((_FILTER_SUB,)) + start + delta * (width - 1))
        parts.append(first.compressed)
        adler = adler32_combine(adler, first.adler, first.raw_len)
        if rows > 1:
            rest = _repeat_rows(row_bytes, rows - 1)
            parts.append(rest.compressed)
            adler = adler32_combine(adler, rest.adler, rest.raw_len)
    parts.append(b"\x03\x00")  # an empty final fixed-Huffman block ends the deflate stream
    parts.append(struct.pack(">I", adler))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", ihdr),
            _chunk(b"IDAT", b"".join(parts)),
            _chunk(b"IEND", b""),
        )
    )

from __future__ import annotations

import struct

import pytest

from ability_gateway.simulator.imagesize import image_size
from ability_gateway.simulator.png import render_png


def jpeg(width: int, height: int, *, sof: int = 0xC0, before_sof: bytes = b"") -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    frame = b"\xff" + bytes([sof]) + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + app0 + before_sof + frame + b"\xff\xda\x00\x08" + bytes(200)


def riff(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_png_size_is_read_from_ihdr() -> None:
    assert image_size(render_png(321, 123)) == (321, 123)


def test_baseline_jpeg_size_is_read_from_sof0() -> None:
    assert image_size(jpeg(800, 600)) == (800, 600)


def test_progressive_jpeg_after_other_segments_and_fill_bytes() -> None:
    # A DHT segment (C4 is not a frame header) and fill bytes must be skipped, not mistaken for SOF.
    dht = b"\xff\xc4" + struct.pack(">H", 5) + b"\x00\x01\x02"
    data = jpeg(1920, 1080, sof=0xC2, before_sof=dht + b"\xff\xff")
    assert image_size(data) == (1920, 1080)


def test_jpeg_without_frame_header_before_scan_is_unreadable() -> None:
    data = b"\xff\xd8\xff\xda\x00\x08" + bytes(100)
    assert image_size(data) is None


def test_truncated_jpeg_is_unreadable() -> None:
    assert image_size(jpeg(800, 600)[:25]) is None


@pytest.mark.parametrize("version", [b"GIF87a", b"GIF89a"])
def test_gif_size_is_read_from_screen_descriptor(version: bytes) -> None:
    assert image_size(version + struct.pack("<HH", 640, 480) + bytes(10)) == (640, 480)


def test_lossy_webp_size() -> None:
    payload = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", 1000, 750) + bytes(10)
    assert image_size(riff(b"VP8 ", payload)) == (1000, 750)


def test_lossless_webp_size() -> None:
    bits = (1279 & 0x3FFF) | ((719 & 0x3FFF) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little") + bytes(10)
    assert image_size(riff(b"VP8L", payload)) == (1280, 720)


def test_extended_webp_size() -> None:
    payload = b"\x00" + bytes(3) + (4095).to_bytes(3, "little") + (2047).to_bytes(3, "little")
    assert image_size(riff(b"VP8X", payload)) == (4096, 2048)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html>not an image</html>",
        b'{"status":"ok"}',
        render_png(10, 10)[:20],
        b"GIF89a" + struct.pack("<HH", 0, 10),
    ],
)
def test_non_images_and_truncated_headers_are_unreadable(data: bytes) -> None:
    assert image_size(data) is None

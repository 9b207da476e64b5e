"""An uploaded image is decoded, not only sniffed: junk after the magic bytes, truncated
files and pixel bombs are refused before anything is stored."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import Image

from ability_gateway.server.errors import BadRequest, PayloadTooLarge
from ability_gateway.server.media.images import verify_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_real_image_gives_its_size() -> None:
    assert verify_image(png(64, 48), "image/png", 10_000) == (64, 48)


def test_magic_bytes_then_random_junk_is_not_an_image() -> None:
    with pytest.raises(BadRequest) as caught:
        verify_image(PNG_SIGNATURE + os.urandom(4096), "image/png", 10_000)
    assert caught.value.extra["errors"] == [
        {"field": "imageBase64", "problem": "is not a valid image (it does not decode)"}
    ]


def test_a_truncated_image_is_refused() -> None:
    whole = png(256, 256)
    with pytest.raises(BadRequest):
        verify_image(whole[: len(whole) // 2], "image/png", 1_000_000)


def test_an_image_over_the_pixel_cap_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        verify_image(png(101, 100), "image/png", 10_000)
    assert "101×100" in caught.value.message


def test_a_small_file_claiming_a_huge_canvas_is_refused_before_decoding() -> None:
    # A 40-byte header saying 100000×100000: decoding it would need 30 GB.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(PayloadTooLarge):
        verify_image(bomb, "image/png", 8192 * 8192)


def test_bytes_of_another_format_than_sniffed_are_refused() -> None:
    with pytest.raises(BadRequest):
        verify_image(png(8, 8), "image/jpeg", 10_000)


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()


def image_of(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(out, kind)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_a_valid_image_followed_by_a_hidden_file_is_refused(fmt: str, kind: str) -> None:
    whole = image_of(fmt)
    assert verify_image(whole, kind, 10_000) == (16, 16)
    with pytest.raises(BadRequest) as caught:
        verify_image(whole + bytes(range(256)) * 256, kind, 10_000)
    assert caught.value.extra["errors"] == [
        {"field": "imageBase64", "problem": "has bytes after the end of the image"}
    ]

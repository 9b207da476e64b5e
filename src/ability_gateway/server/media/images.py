"""An uploaded image is decoded, not just sniffed: magic bytes followed by junk are refused.

The size in the header is checked against ``GATEWAY_MAX_IMAGE_PIXELS`` before any pixel is
decoded (a small file can claim a huge canvas: a decompression bomb), then the image is
decoded in full so truncated or forged files never reach storage, and nothing may follow
the format's own end (bytes after PNG's IEND, JPEG's EOI, GIF's trailer or WebP's RIFF
size are a file hidden behind an image). Metadata chunks inside a valid image can still
carry bytes: the per-token link of every stored file is what caps that (quotas).
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from ability_gateway.server.errors import BadRequest, FieldError, PayloadTooLarge

# The formats Pillow names for the media types we accept.
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
_NOT_AN_IMAGE = FieldError("imageBase64", "is not a valid image (it does not decode)")
_TRAILING = FieldError("imageBase64", "has bytes after the end of the image")


def _png_end(data: bytes) -> int | None:
    """Where the PNG's IEND chunk ends (None when the chunks do not parse)."""
    offset = 8
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length
        if kind == b"IEND":
            return offset
    return None


def _image_end(data: bytes, kind: str) -> int | None:
    """Where the image ends by its own format's rules."""
    if kind == "image/png":
        return _png_end(data)
    if kind == "image/jpeg":
        end = data.rfind(b"\xff\xd9")
        return None if end < 0 else end + 2
    if kind == "image/gif":
        return len(data) if data.endswith(b"\x3b") else None
    size = int.from_bytes(data[4:8], "little")  # WebP: the RIFF chunk says how long it is
    return 8 + size + (size & 1)


def verify_image(data: bytes, kind: str, max_pixels: int) -> tuple[int, int]:
    """Width and height of the image in ``data`` (sniffed as ``kind``): 400/413 otherwise.

    CPU-bound (a full decode): call it in a worker thread.
    """
    try:
        with Image.open(io.BytesIO(data), formats=[_FORMATS[kind]]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"The image is {width}×{height} pixels, more than {max_pixels}",
                    extra={"errors": [FieldError("imageBase64", "has too many pixels")]},
                )
            image.load()
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"The image has more than {max_pixels} pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest("imageBase64 is not a valid image", [_NOT_AN_IMAGE]) from exc
    if width < 1 or height < 1:
        raise BadRequest("imageBase64 is not a valid image", [_NOT_AN_IMAGE])
    end = _image_end(data, kind)
    if end is None or len(data) > end:
        raise BadRequest("imageBase64 has bytes after the end of the image", [_TRAILING])
    return width, height

"""An uploaded image is decoded, not just sniffed: magic bytes followed by junk are refused.

The size in the header is checked against ``GATEWAY_MAX_IMAGE_PIXELS`` before any pixel is
decoded (a small file can claim a huge canvas: a decompression bomb), then the image is
decoded in full so truncated or forged files never reach storage.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from ability_gateway.server.errors import BadRequest, FieldError, PayloadTooLarge

# The formats Pillow names for the media types we accept.
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}


def verify_image(data: bytes, kind: str, max_pixels: int) -> tuple[int, int]:
    """Width and height of the image in ``data`` (sniffed as ``kind``): 400/413 otherwise.

    CPU-bound (a full decode): call it in a worker thread.
    """
    problem = FieldError("imageBase64", "is not a valid image (it does not decode)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_FORMATS[kind]]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise PayloadTooLarge(
                        f"The image is {width}×{height} pixels, more than {max_pixels}",
                        extra={"errors": [FieldError("imageBase64", "has too many pixels")]},
                    )
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"The image has more than {max_pixels} pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest("imageBase64 is not a valid image", [problem]) from exc
    if width < 1 or height < 1:
        raise BadRequest("imageBase64 is not a valid image", [problem])
    return width, height

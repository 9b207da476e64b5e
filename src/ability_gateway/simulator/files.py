"""The simulator's file URL scheme: generated images and fixed sample images.

Two kinds of path, both ``image/png`` rendered by :func:`~.png.render_png`::

    /files/{width}x{height}/{name}.png     a generated image: any size 1..16384 per side, any name
                                           matching [A-Za-z0-9_-]{1,128}; the name seeds the pattern
    /files/samples/{sample}.png            a fixed source image for tests and demos (see SAMPLES)

The size is part of a generated file's path, so the simulator never stores files: any such URL is
valid and renders the same bytes every time. It also means a URL the simulator handed out can be
fed back as a workflow input and its size is known without a download.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ability_gateway.simulator.png import MAX_SIDE

__all__ = ["SAMPLES", "FileRef", "generated_path", "parse_file_path", "sample_path"]

SAMPLES: dict[str, tuple[int, int]] = {
    "landscape": (1024, 768),
    "square": (512, 512),
    "portrait": (768, 1024),
    "wide": (1920, 1080),
}
"""Sample source images by name: ``/files/samples/{name}.png`` is ``width x height``."""

_GENERATED = re.compile(
    r"^/files/(?P<w>[0-9]{1,6})x(?P<h>[0-9]{1,6})/(?P<name>[A-Za-z0-9_-]{1,128})\.png$"
)
_SAMPLE = re.compile(r"^/files/samples/(?P<name>[A-Za-z0-9_-]{1,128})\.png$")


@dataclass(frozen=True, slots=True)
class FileRef:
    """A servable image: its size and the seed of its pixel pattern."""

    width: int
    height: int
    seed: int


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def generated_path(width: int, height: int, name: str) -> str:
    """The path of a generated ``width`` x ``height`` image named ``name``."""
    return f"/files/{width}x{height}/{name}.png"


def sample_path(name: str) -> str:
    """The path of the sample image ``name`` (a key of :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    return f"/files/samples/{name}.png"


def parse_file_path(path: str) -> FileRef | None:
    """Map a request path to the image it names, or ``None`` if no such file exists.

    Sizes outside ``1..MAX_SIDE`` and unknown sample names are "no such file", not errors.
    """
    match = _GENERATED.match(path)
    if match is not None:
        width, height = int(match["w"]), int(match["h"])
        if 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE:
            return FileRef(width, height, _seed(match["name"]))
        return None
    match = _SAMPLE.match(path)
    if match is not None and match["name"] in SAMPLES:
        width, height = SAMPLES[match["name"]]
        return FileRef(width, height, _seed("sample:" + match["name"]))
    return None

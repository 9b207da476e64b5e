"""The file route: the generated and sample PNGs whose URLs the workflows return.

This module owns ``GET /files/...``: resolving the path (see files.py for the scheme), the
immutable caching headers and ``ETag`` (a 304 for a matching ``If-None-Match``), and
rendering the PNG, off the event loop when it is large.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ability_gateway.simulator.files import parse_file_path
from ability_gateway.simulator.png import render_png

__all__ = ["get_file"]

_RENDER_IN_THREAD_PIXELS = 1_000_000  # bigger images are encoded off the event loop
_FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"


async def get_file(request: web.Request) -> web.Response:
    """``GET /files/...``: a generated or sample PNG (see files.py for the scheme)."""
    ref = parse_file_path(request.path)
    if ref is None:
        raise web.HTTPNotFound(text="no such file")
    etag = f'"{ref.width}x{ref.height}-{ref.seed:016x}"'
    headers = {"Cache-Control": _FILE_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    if ref.width * ref.height > _RENDER_IN_THREAD_PIXELS:
        body = await asyncio.to_thread(render_png, ref.width, ref.height, ref.seed)
    else:
        body = render_png(ref.width, ref.height, ref.seed)
    return web.Response(body=body, content_type="image/png", headers=headers)

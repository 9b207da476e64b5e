"""``GET /media/{key}``: local media, served by the gateway (content type, caching, ranges).

Keys are random and content never changes under a key, so answers are cacheable forever.
No token: the URL itself is the capability (like an object store's public URL).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import GatewayError, NotFound
from ability_gateway.server.media.storage import MediaNotFound

router = APIRouter(tags=["media"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)
CACHE = "public, max-age=31536000, immutable"


class RangeNotSatisfiable(GatewayError):
    status_code = 416
    default_message = "The requested range is not satisfiable"


@router.get("/media/{key:path}", operation_id="get_media")
async def get_media(key: str, request: Request, gateway: Gateway) -> Response:
    """A stored image or video (local storage); supports `Range: bytes=a-b`."""
    storage = gateway.media.storage
    if not storage.is_local:
        raise NotFound("Media is served by the object store, not by the gateway")
    try:
        meta = await storage.head(key)
    except ValueError:
        meta = None
    if meta is None:
        raise NotFound("No such media")
    headers = {
        "Cache-Control": CACHE,
        "Accept-Ranges": "bytes",
        "ETag": '"' + (meta.etag or meta.key).strip('"') + '"',
    }
    content_type = meta.content_type or "application/octet-stream"
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    start, end, status = 0, meta.size, 200
    wanted = request.headers.get("range")
    match = _RANGE.match(wanted.strip()) if wanted else None
    # A range we do not serve (several ranges, other units) is ignored: the whole file (RFC 9110).
    if match is not None and (match.group(1) or match.group(2)):
        first, last = match.group(1), match.group(2)
        if first:
            start = int(first)
            end = min(int(last) + 1, meta.size) if last else meta.size
        else:  # the last N bytes
            start = max(0, meta.size - int(last))
        if start >= meta.size or end <= start:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{meta.size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{meta.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=content_type)
    try:
        if end - start <= 1024 * 1024:
            body = await storage.get(key, start=start, end=end)
            return Response(body, status_code=status, headers=headers, media_type=content_type)
    except MediaNotFound as exc:
        raise NotFound("No such media") from exc
    return StreamingResponse(
        storage.stream(key, start=start, end=end),
        status_code=status,
        headers=headers,
        media_type=content_type,
    )


# HEAD answers like GET without the body (not a separate operation in the API document).
router.add_api_route("/media/{key:path}", get_media, methods=["HEAD"], include_in_schema=False)

"""``GET /media/{key}``: local media, served by the gateway (content type, caching, ranges).

Keys are random and content never changes under a key, so answers are cacheable forever.
No token: the URL itself is the capability (like an object store's public URL).

The ETag is the content's SHA-256 (media rows are deduplicated by it), so it says nothing
about the file system (no inode, size or mtime) and is the same on every node. Every answer
says ``X-Content-Type-Options: nosniff``: a browser never runs a stored file as another type.
"""

from __future__ import annotations

import hashlib
import re

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from ability_gateway.server.deps import Gateway
from ability_gateway.server.errors import GatewayError, NotFound
from ability_gateway.server.media import repository
from ability_gateway.server.media.sniff import EXTENSIONS
from ability_gateway.server.media.storage import MediaNotFound

router = APIRouter(tags=["media"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)
CACHE = "public, max-age=31536000, immutable"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


class RangeNotSatisfiable(GatewayError):
    status_code = 416
    default_message = "The requested range is not satisfiable"


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_MEDIA_TYPES = dict.fromkeys(EXTENSIONS, _BINARY)
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


@router.get(
    "/media/{key:path}",
    operation_id="get_media",
    response_class=Response,
    responses={
        200: {"description": "The file", "content": _MEDIA_TYPES},
        206: {"description": "The requested byte range", "content": _MEDIA_TYPES},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
        404: {
            "description": "No such media (or it is served by the object store)",
            "content": _ERROR,
        },
        416: {"description": "The requested range is not satisfiable", "content": _ERROR},
    },
)
async def get_media(key: str, request: Request, gateway: Gateway) -> Response:
    """A stored image or video (local storage); supports `Range: bytes=a-b`."""
    storage = gateway.media.storage
    if not storage.is_local:
        raise NotFound("Media is served by the object store, not by the gateway", headers=NOSNIFF)
    try:
        meta = await storage.head(key)
    except ValueError:
        meta = None
    if meta is None:
        raise NotFound("No such media", headers=NOSNIFF)
    async with gateway.db.read() as conn:
        digest = await repository.sha256_of(conn, meta.key)
    if digest is None:
        # An object left without its row (re-stored under a new key): what never changes
        # under it is its key.
        digest = "key-" + hashlib.sha256(meta.key.encode()).hexdigest()
    headers = {
        **NOSNIFF,
        "Cache-Control": CACHE,
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
    }
    content_type = meta.content_type or "application/octet-stream"
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
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
            raise RangeNotSatisfiable(headers={**NOSNIFF, "Content-Range": f"bytes */{meta.size}"})
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
        raise NotFound("No such media", headers=NOSNIFF) from exc
    return StreamingResponse(
        storage.stream(key, start=start, end=end),
        status_code=status,
        headers=headers,
        media_type=content_type,
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` (a list, weak tags or ``*``) names this representation (RFC 9110)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


# HEAD answers like GET without the body (not a separate operation in the API document).
router.add_api_route("/media/{key:path}", get_media, methods=["HEAD"], include_in_schema=False)

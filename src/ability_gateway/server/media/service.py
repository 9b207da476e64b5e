"""Media in and out: images given as data URLs, and workflow outputs mirrored into our storage.

Every stored file is deduplicated by its SHA-256 (one object, one ``media`` row, however
many tasks use it) and named by a random key, so its URL cannot be guessed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy.engine import Connection

from ability_gateway.server.db import Database, storable_text
from ability_gateway.server.egress import EgressRefused, SafeClient, TooLarge, describe
from ability_gateway.server.errors import BadRequest, FieldError, PayloadTooLarge
from ability_gateway.server.media import repository
from ability_gateway.server.media.sniff import EXTENSIONS, IMAGE_TYPES, sniff
from ability_gateway.server.media.storage import Storage
from ability_gateway.server.metrics.registry import Metrics
from ability_gateway.server.usage import repository as usage_repository
from ability_gateway.server.usage.quotas import QuotaExceeded, media_refused

_DATA_URL = re.compile(
    r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[\w.+-]+)*);base64,", re.ASCII | re.IGNORECASE
)
_WHITESPACE = re.compile(r"\s+")
MIRROR_CONCURRENCY = 4
# ``store_keyed(media_quota=LOOKUP)``: the token's media quota is read where it is enforced.
LOOKUP: Any = ...


@dataclass(frozen=True, slots=True)
class Mirrored:
    oss_url: str | None
    warning: str | None


def decode_data_url(text: str, max_bytes: int) -> tuple[bytes, str]:
    """The image in a ``data:image/…;base64,…`` URL, checked: 400/413 otherwise."""
    match = _DATA_URL.match(text)
    if match is None:
        raise BadRequest(
            "imageBase64 must be a data URL",
            [FieldError("imageBase64", "must look like data:image/png;base64,<data>")],
        )
    # Line-wrapped (the `base64` command's default) and unpadded base64 are fine too.
    payload = _WHITESPACE.sub("", text[match.end() :])
    payload += "=" * (-len(payload) % 4)
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLarge(f"The image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            "imageBase64 is not valid base64", [FieldError("imageBase64", "is not valid base64")]
        ) from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The image is larger than {max_bytes} bytes")
    kind = sniff(data)
    if kind not in IMAGE_TYPES:
        raise BadRequest(
            "imageBase64 is not a supported image",
            [FieldError("imageBase64", "is not a PNG, JPEG, WebP or GIF image")],
        )
    declared = (match.group(1) or "").lower()
    if declared == "image/jpg":
        declared = "image/jpeg"
    if declared and declared != kind:
        raise BadRequest(
            "imageBase64's declared type does not match its bytes",
            [FieldError("imageBase64", f"is declared {declared} but its bytes are {kind}")],
        )
    return data, kind


class MediaService:
    def __init__(
        self,
        storage: Storage,
        db: Database,
        client: SafeClient,
        *,
        max_download_bytes: int,
        download_timeout: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.storage = storage
        self.db = db
        self.client = client
        self.max_download_bytes = max_download_bytes
        self.download_timeout = download_timeout
        self.metrics = metrics or Metrics()

    async def store(
        self,
        data: bytes,
        content_type: str,
        token_id: str | None = None,
        *,
        source_url: str | None = None,
        task_id: str | None = None,
    ) -> str:
        """Store ``data`` (once per distinct content) and return its public URL."""
        _, url = await self.store_keyed(
            data, content_type, token_id, source_url=source_url, task_id=task_id
        )
        return url

    async def store_keyed(
        self,
        data: bytes,
        content_type: str,
        token_id: str | None = None,
        *,
        source_url: str | None = None,
        task_id: str | None = None,
        media_quota: int | None = LOOKUP,
    ) -> tuple[str, str]:
        """Store ``data`` (once per distinct content): its storage key and public URL.

        ``token_id`` is the token that gave the bytes (an ``imageBase64``); the link is
        recorded even when the content was already stored by someone else. ``task_id``:
        the task whose output this is (linked as its ``output``).

        The token's media quota (``media_quota``: its value when the caller knows it, None:
        none, ``LOOKUP``: read it) is enforced in the transaction that links the content to
        the token (QuotaExceeded, 429); a known quota is also checked before storing.
        """
        digest = hashlib.sha256(data).hexdigest()
        quota_token = token_id if media_quota is not None else None
        if quota_token is not None and isinstance(media_quota, int):
            async with self.db.read() as conn:
                over = await usage_repository.media_room_now(
                    conn, quota_token, digest, len(data), media_quota
                )
            if over is not None:
                raise media_refused(*over, len(data))

        def check_quota(conn: Connection) -> None:
            if quota_token is not None:
                over = usage_repository.media_room(conn, quota_token, digest, len(data))
                if over is not None:
                    raise media_refused(*over, len(data))

        async with self.db.read() as conn:
            existing = await repository.key_of(conn, digest)
        if existing is not None and await self.storage.exists(existing):

            def touch(conn: Connection) -> None:
                check_quota(conn)
                repository.touch(conn, existing)
                if token_id is not None:
                    repository.link_token(conn, digest, token_id)
                if task_id is not None:
                    repository.link_task(conn, task_id, existing, "output")

            await self.db.run_write(touch)
            return existing, await self.storage.public_url(existing)
        now = datetime.now(UTC)
        key = f"{now:%Y/%m}/{secrets.token_hex(16)}{EXTENSIONS[content_type]}"
        await self.storage.put(key, data, content_type)

        def record(conn: Connection) -> str:
            check_quota(conn)
            if token_id is not None:
                repository.link_token(conn, digest, token_id)
            if task_id is not None:
                repository.link_task(conn, task_id, key, "output")
            repository.record(
                conn,
                key=key,
                sha256=digest,
                content_type=content_type,
                size=len(data),
                source_url=storable_text(source_url),
            )
            return key

        try:
            stored_key = await self.db.run_write(record)
        except QuotaExceeded:
            with contextlib.suppress(Exception):  # stored just now, for nothing
                await self.storage.delete(key)
            raise
        source = "upload" if source_url is None else "output"
        self.metrics.media_stored(content_type, len(data), source=source)
        return stored_key, await self.storage.public_url(stored_key)

    async def mirror(
        self, url: str, token_id: str | None = None, task_id: str | None = None
    ) -> Mirrored:
        """Copy one output URL into our storage; a failure is a warning, not an error."""
        try:
            data = await self.client.get(
                url, timeout=self.download_timeout, max_bytes=self.max_download_bytes
            )
        except (EgressRefused, TooLarge, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Mirrored(None, f"{url[:200]}: {describe(exc)}")
        kind = sniff(data)
        if kind is None:
            return Mirrored(None, f"{url[:200]}: not a PNG, JPEG, WebP, GIF, MP4, WebM or MOV file")
        try:
            stored = await self.store(data, kind, token_id, source_url=url, task_id=task_id)
            return Mirrored(stored, None)
        except QuotaExceeded as exc:  # the task still succeeds: this output stays upstream
            return Mirrored(None, f"{url[:200]}: not stored: {exc.message}")
        except Exception as exc:  # storage down: the task still succeeds, visibly warned
            return Mirrored(None, f"{url[:200]}: could not be stored ({type(exc).__name__})")

    async def mirror_all(
        self, shaped: dict[str, Any], token_id: str | None = None, task_id: str | None = None
    ) -> list[str]:
        """Fill ``ossUrl`` of every image and video in ``shaped``; the warnings."""
        entries = [*shaped.get("images", []), *shaped.get("videos", [])]
        if not entries:
            return []
        limit = asyncio.Semaphore(MIRROR_CONCURRENCY)

        async def one(entry: dict[str, Any]) -> str | None:
            async with limit:
                result = await self.mirror(entry["sourceUrl"], token_id, task_id)
            entry["ossUrl"] = result.oss_url
            return result.warning

        warnings = await asyncio.gather(*(one(e) for e in entries))
        return [w for w in warnings if w]

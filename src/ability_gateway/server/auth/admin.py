"""Managing tokens (admin API and CLI): view, list, change, revoke, rotate the value, rotate
the callback secret. A token's value and callback secret are shown once, at creation and at
each rotation; only the value's hash is kept.

Rotation keeps the old value working for an overlap the caller chooses (0: it stops at
once), so clients can be redeployed without downtime; a secret rotation signs every callback
with both secrets during its overlap. Every change reaches other nodes within
``GATEWAY_AUTH_CACHE_SECONDS`` (their token caches), and this node at once.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.auth import repository
from ability_gateway.server.auth.service import (
    SCOPE_ADMIN,
    TOKEN_PREFIX,
    TokenCache,
    hash_token,
)
from ability_gateway.server.db import Database
from ability_gateway.server.errors import Conflict, NotFound, shorten

MAX_OVERLAP_SECONDS = 30 * 86_400


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_callback_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def state_of(row: RowMapping) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= row["now"]:
        return "expired"
    return "active"


def _live(value: int | None, now: int) -> int | None:
    return value if value is not None and value > now else None


def view(row: RowMapping) -> dict[str, Any]:
    """A token as the admin sees it: never its value, hash or callback secret."""
    now = row["now"]
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["token_prefix"],
        "scopes": list(row["scopes"]),
        "admin": SCOPE_ADMIN in row["scopes"],
        "state": state_of(row),
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "expiresAt": row["expires_at"],
        "revokedAt": row["revoked_at"],
        "lastUsedAt": row["last_used_at"],
        "previousValueValidUntil": _live(row["previous_token_expires_at"], now),
        "previousSecretValidUntil": _live(row["previous_secret_expires_at"], now),
        "limits": {
            "rateLimitPerMinute": row["rate_limit_per_minute"],
            "maxConcurrentTasks": row["max_concurrent_tasks"],
        },
        "quotas": {
            "dailyInvocations": row["quota_daily_invocations"],
            "dailyInvocationsByAbility": row["quota_daily_by_ability"],
            "mediaBytes": row["quota_media_bytes"],
        },
    }


async def get(db: Database, token_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await repository.get_view(conn, token_id)
    if row is None:
        raise NotFound(f"Token {shorten(token_id)!r} does not exist")
    return view(row)


async def list_all(
    db: Database, *, include_revoked: bool, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of tokens and the cursor of the next one (None: this was the last)."""
    async with db.read() as conn:
        rows = await repository.list_views(
            conn, include_revoked=include_revoked, after=after, limit=limit + 1
        )
    page = [view(row) for row in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


async def change(
    db: Database,
    cache: TokenCache,
    token_id: str,
    values: dict[str, Any],
    expires_in_ms: Any = ...,
) -> dict[str, Any]:
    """Change a live token's name or limits (``values``: column → value, None removes a
    limit) and its expiry (``...``: unchanged; None: never)."""
    changed = await db.run_write(
        partial(repository.change, token_id=token_id, values=values, expires_in_ms=expires_in_ms)
    )
    await _must_have_changed(db, token_id, changed)
    cache.clear()
    return await get(db, token_id)


async def revoke(db: Database, cache: TokenCache, token_id: str) -> dict[str, Any]:
    """Revoke a token (again: nothing changes, its first revocation time stays)."""
    await db.run_write(partial(repository.revoke, token_id=token_id))
    cache.clear()
    return await get(db, token_id)


@dataclass(frozen=True, slots=True)
class Rotated:
    view: dict[str, Any]
    token: str | None = None
    callback_secret: str | None = None


async def rotate_value(
    db: Database, cache: TokenCache, token_id: str, overlap_seconds: int
) -> Rotated:
    token = new_token_value()
    changed = await db.run_write(
        partial(
            repository.rotate_value,
            token_id=token_id,
            new_hash=hash_token(token),
            new_prefix=token[:10],
            overlap_ms=overlap_seconds * 1000,
        )
    )
    await _must_have_changed(db, token_id, changed)
    cache.clear()
    return Rotated(await get(db, token_id), token=token)


async def rotate_secret(db: Database, token_id: str, overlap_seconds: int) -> Rotated:
    secret = new_callback_secret()
    changed = await db.run_write(
        partial(
            repository.rotate_secret,
            token_id=token_id,
            new_secret=secret,
            overlap_ms=overlap_seconds * 1000,
        )
    )
    await _must_have_changed(db, token_id, changed)
    return Rotated(await get(db, token_id), callback_secret=secret)


async def _must_have_changed(db: Database, token_id: str, changed: bool) -> None:
    if changed:
        return
    current = await get(db, token_id)  # 404 when there is no such token
    raise Conflict(f"Token {shorten(token_id)!r} is {current['state']}: it cannot be changed")

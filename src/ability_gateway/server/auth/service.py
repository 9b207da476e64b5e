"""Tokens: creation (shown once), hashing, authentication, revocation.

A token is ``agw_`` + 43 URL-safe characters (256 random bits). Only its
SHA-256 is stored: with that much entropy a slow hash adds nothing. Each token
also gets a ``whsec_`` secret that signs its callbacks (Standard Webhooks).

A valid token is remembered in-process for ``GATEWAY_AUTH_CACHE_SECONDS`` (a
database read per request would be the hot path's biggest cost), so a
revocation or expiry made elsewhere takes effect within that time.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.auth import repository
from ability_gateway.server.db import Database
from ability_gateway.server.errors import Forbidden, Unauthorized
from ability_gateway.server.ids import new_id

TOKEN_PREFIX = "agw_"
TOKEN_RE = re.compile(r"^agw_[A-Za-z0-9_-]{43}$")
SCOPE_ABILITIES = "abilities"
SCOPE_ADMIN = "admin"
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid token."""

    token_id: str
    name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int | None = None
    max_concurrent_tasks: int | None = None
    # Quotas (usage/quotas.py), None: none. Per ability: {ability id: invocations a day}.
    quota_daily_invocations: int | None = None
    quota_daily_by_ability: Mapping[str, int] | None = None
    quota_media_bytes: int | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"This operation needs the {scope!r} scope")


@dataclass(frozen=True, slots=True)
class CreatedToken:
    id: str
    name: str
    token: str
    callback_secret: str
    scopes: list[str]
    expires_at: int | None


class TokenCache:
    """Valid tokens seen recently: hash -> (principal, valid until, expires at)."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[Principal, float, float | None]] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        principal, valid_until, expires_at = entry
        now = time.monotonic()
        if now >= valid_until or (expires_at is not None and time.time() * 1000 >= expires_at):
            del self._entries[token_hash]
            return None
        return principal

    def put(self, token_hash: str, principal: Principal, expires_at: int | None) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= MAX_CACHED_TOKENS:
            self._entries.clear()
        self._entries[token_hash] = (principal, time.monotonic() + self.ttl, expires_at)

    def clear(self) -> None:
        self._entries.clear()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    db: Database,
    name: str,
    *,
    admin: bool = False,
    expires_in_days: float | None = None,
    rate_limit_per_minute: int | None = None,
    max_concurrent_tasks: int | None = None,
) -> CreatedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    scopes = [SCOPE_ABILITIES, SCOPE_ADMIN] if admin else [SCOPE_ABILITIES]
    token_id = new_id("tok")
    values = {
        "id": token_id,
        "name": name,
        "token_hash": hash_token(token),
        "token_prefix": token[:10],
        "scopes": scopes,
        "callback_secret": secret,
        "rate_limit_per_minute": rate_limit_per_minute,
        "max_concurrent_tasks": max_concurrent_tasks,
    }
    expires_in_ms = None if expires_in_days is None else int(expires_in_days * 86_400_000)
    expires_at = await db.run_write(
        partial(repository.insert_token, values=values, expires_in_ms=expires_in_ms)
    )
    return CreatedToken(token_id, name, token, secret, scopes, expires_at)


async def list_tokens(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await repository.list_tokens(conn)
    return [dict(row) for row in rows]


async def set_token_limits(db: Database, token_id: str, values: dict[str, int | None]) -> bool:
    """Change a token's limits (``None`` removes one); nodes see it within the auth cache time."""
    return await db.run_write(partial(repository.set_limits, token_id=token_id, values=values))


async def revoke_token(db: Database, token_id: str) -> bool:
    return await db.run_write(partial(repository.revoke, token_id=token_id))


def parse_bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("Missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Malformed Authorization header (expected 'Bearer <token>')")
    token = token.strip()
    if not TOKEN_RE.match(token):
        raise Unauthorized("Malformed bearer token")
    return token


def principal_of(row: RowMapping) -> Principal:
    """The principal of a token row (its id, name, scopes, limits and quotas)."""
    return Principal(
        token_id=row["id"],
        name=row["name"],
        scopes=frozenset(row["scopes"]),
        rate_limit_per_minute=row["rate_limit_per_minute"],
        max_concurrent_tasks=row["max_concurrent_tasks"],
        quota_daily_invocations=row["quota_daily_invocations"],
        quota_daily_by_ability=row["quota_daily_by_ability"] or None,
        quota_media_bytes=row["quota_media_bytes"],
    )


async def authenticate(db: Database, cache: TokenCache, authorization: str | None) -> Principal:
    token_hash = hash_token(parse_bearer(authorization))
    principal = cache.get(token_hash)
    if principal is not None:
        return principal
    async with db.read() as conn:
        row = await repository.find_active_by_hash(conn, token_hash)
    if row is None:
        # One message for unknown, revoked and expired: don't help a guesser.
        raise Unauthorized("Invalid, revoked or expired token")
    principal = principal_of(row)
    expires_at = row["expires_at"]
    if row["by_previous"]:  # a rotated-away value: it ends with its overlap
        overlap_end = row["previous_token_expires_at"]
        expires_at = overlap_end if expires_at is None else min(expires_at, overlap_end)
    cache.put(token_hash, principal, expires_at)
    return principal

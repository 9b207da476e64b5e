"""Tokens: creation (shown once), hashing, authentication, revocation.

A token is ``agw_`` + 43 URL-safe characters (256 random bits). Only its
SHA-256 is stored: with that much entropy a slow hash adds nothing. Each token
also gets a ``whsec_`` secret that signs its callbacks (Standard Webhooks).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ability_gateway.server.auth import repository
from ability_gateway.server.db import Database
from ability_gateway.server.errors import Forbidden, Unauthorized
from ability_gateway.server.ids import new_id

TOKEN_PREFIX = "agw_"
TOKEN_RE = re.compile(r"^agw_[A-Za-z0-9_-]{43}$")
SCOPE_ABILITIES = "abilities"
SCOPE_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid token."""

    token_id: str
    name: str
    scopes: frozenset[str]

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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    db: Database, name: str, *, admin: bool = False, expires_in_days: float | None = None
) -> CreatedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    scopes = [SCOPE_ABILITIES, SCOPE_ADMIN] if admin else [SCOPE_ABILITIES]
    token_id = new_id("tok")
    async with db.write() as conn:
        expires_at = None
        if expires_in_days is not None:
            expires_at = await repository.db_now(conn) + int(expires_in_days * 86_400_000)
        await repository.insert_token(
            conn,
            {
                "id": token_id,
                "name": name,
                "token_hash": hash_token(token),
                "token_prefix": token[:10],
                "scopes": scopes,
                "callback_secret": secret,
                "expires_at": expires_at,
            },
        )
    return CreatedToken(token_id, name, token, secret, scopes, expires_at)


async def list_tokens(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await repository.list_tokens(conn)
    return [dict(row) for row in rows]


async def revoke_token(db: Database, token_id: str) -> bool:
    async with db.write() as conn:
        return await repository.revoke(conn, token_id)


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


async def authenticate(db: Database, authorization: str | None) -> Principal:
    token = parse_bearer(authorization)
    async with db.read() as conn:
        row = await repository.find_active_by_hash(conn, hash_token(token))
    if row is None:
        # One message for unknown, revoked and expired: don't help a guesser.
        raise Unauthorized("Invalid, revoked or expired token")
    return Principal(token_id=row["id"], name=row["name"], scopes=frozenset(row["scopes"]))

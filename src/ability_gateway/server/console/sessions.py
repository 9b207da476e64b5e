"""Console sign-in: a gateway token in, a server-side session out.

    POST /console/login (token) ─ authenticate like the API ─ new random session id
        cookie agw_console=<id>   HttpOnly, SameSite=Strict, Path=/console (Secure on https)
        row console_sessions      HMAC(secret, id): the database never holds a usable id

Every later page resolves the cookie to its session and token in one query that also
checks the token (revoked or expired: no session). What it finds is kept for
``GATEWAY_AUTH_CACHE_SECONDS`` on this node, like a bearer token, so a revocation ends a
token's sessions on every node within that time. The token value itself is never kept:
not in the cookie, the row, a page or a URL.

The CSRF token of a session is HMAC(secret, "csrf" + id): the same for the session's
life, unknown without the cookie's value and the secret, checked with
``hmac.compare_digest`` on every state-changing form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from functools import partial

from ability_gateway.server.auth.service import Principal, TokenCache, authenticate, principal_of
from ability_gateway.server.console import repository
from ability_gateway.server.db import Database

COOKIE = "agw_console"
MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    principal: Principal
    csrf: str
    expires_at: int  # ms

    @property
    def is_admin(self) -> bool:
        return "admin" in self.principal.scopes


class Sessions:
    """Sign in, find and end console sessions, with a short cache per node."""

    def __init__(self, db: Database, secret: str, lifetime_s: float, cache_s: float) -> None:
        self._db = db
        self._key = secret.encode()
        self.lifetime_s = lifetime_s
        self._cache_s = cache_s
        self._cache: dict[str, tuple[ConsoleSession, float]] = {}

    def _mac(self, purpose: str, session_id: str) -> str:
        message = f"{purpose}:{session_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def sign_in(self, token_cache: TokenCache, token: str) -> str:
        """A new session for a valid token; ``Unauthorized`` otherwise (as the API says)."""
        principal = await authenticate(self._db, token_cache, f"Bearer {token.strip()}")
        session_id = secrets.token_urlsafe(32)
        await self._db.run_write(
            partial(
                repository.insert_session,
                id_hash=self._mac("session", session_id),
                token_id=principal.token_id,
                lifetime_ms=int(self.lifetime_s * 1000),
            )
        )
        return session_id

    async def find(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id or len(session_id) > 100:
            return None
        id_hash = self._mac("session", session_id)
        cached = self._cache.get(id_hash)
        now = time.monotonic()
        if cached is not None:
            session, valid_until = cached
            if now < valid_until and time.time() * 1000 < session.expires_at:
                return session
            del self._cache[id_hash]
        async with self._db.read() as conn:
            row = await repository.find_session(conn, id_hash)
        if row is None:
            return None
        expires_at = int(row["session_expires_at"])
        if row["expires_at"] is not None:  # the token's own end comes first
            expires_at = min(expires_at, int(row["expires_at"]))
        session = ConsoleSession(principal_of(row), self._mac("csrf", session_id), expires_at)
        if self._cache_s > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[id_hash] = (session, now + self._cache_s)
        return session

    async def sign_out(self, session_id: str) -> None:
        id_hash = self._mac("session", session_id)
        self._cache.pop(id_hash, None)
        await self._db.run_write(partial(repository.delete_session, id_hash=id_hash))

    @staticmethod
    def csrf_ok(session: ConsoleSession, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(session.csrf, sent)

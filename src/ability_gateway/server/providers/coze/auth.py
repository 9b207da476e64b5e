"""How an executor authenticates to Coze: a PAT/SAT, or an OAuth JWT service application.

The JWT flow (reference §7): sign an RS256 JWT (``iss`` = app id, ``aud`` = the API host,
``kid`` = the public key's id, single-use ``jti``), exchange it at
``/api/permission/oauth2/token`` for an access token, and reuse that token until a minute
before it expires (``expires_in`` is an absolute unix time). One exchange at a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

REFRESH_MARGIN_SECONDS = 60


class CozeAuthError(Exception):
    """The access token could not be obtained (bad key, app or answer)."""


class CozeAuth(Protocol):
    kind: str

    async def header(self, session: aiohttp.ClientSession) -> str: ...


class TokenAuth:
    kind = "token"

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def header(self, session: aiohttp.ClientSession) -> str:  # noqa: ARG002 - protocol
        return self._header


class JwtAuth:
    kind = "jwt"

    def __init__(
        self,
        base_url: str,
        app_id: str,
        key_id: str,
        private_key_pem: str,
        *,
        duration_seconds: int = 900,
    ) -> None:
        self._url = base_url.rstrip("/") + "/api/permission/oauth2/token"
        self._audience = urlsplit(base_url).netloc
        self._app_id = app_id
        self._key_id = key_id
        self._private_key = private_key_pem
        self._duration = duration_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def header(self, session: aiohttp.ClientSession) -> str:
        if self._token is None or time.time() >= self._expires_at - REFRESH_MARGIN_SECONDS:
            async with self._lock:  # one exchange, whoever else is waiting reuses it
                if self._token is None or time.time() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                    await self._exchange(session)
        return f"Bearer {self._token}"

    def _jwt(self) -> str:
        import jwt  # the server extra's PyJWT

        now = int(time.time())
        claims = {
            "iss": self._app_id,
            "aud": self._audience,
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        return str(
            jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self._key_id})
        )

    async def _exchange(self, session: aiohttp.ClientSession) -> None:
        body = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "duration_seconds": self._duration,
        }
        try:
            async with session.post(
                self._url,
                json=body,
                headers={"Authorization": f"Bearer {self._jwt()}"},
                timeout=aiohttp.ClientTimeout(total=15),
                allow_redirects=False,
            ) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CozeAuthError(f"token exchange failed: {type(exc).__name__}") from exc
        if not isinstance(answer, dict) or "access_token" not in answer:
            error = answer.get("error_code") if isinstance(answer, dict) else None
            raise CozeAuthError(f"token exchange refused: {error or resp.status}")
        self._token = str(answer["access_token"])
        expires_in = answer.get("expires_in")
        self._expires_at = (
            float(expires_in) if isinstance(expires_in, int | float) else time.time() + 300
        )

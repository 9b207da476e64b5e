"""OAuth JWT for a service application: ``POST /api/permission/oauth2/token`` (reference §7).

A registered app is ``(app_id, kid, public key)``: the app id is the JWT's ``iss``, the key id
its header ``kid``, and the RSA public key checks its RS256 signature. The exchange:

* **Request:** header ``Authorization: Bearer <JWT>``; JSON body
  ``{"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "duration_seconds": 900}``.
  ``duration_seconds`` is optional (absent or ``null`` = 900) and must be an integer in
  1..86399. Other body fields (cozepy sends ``"scope": null``) are ignored.
* **JWT:** header ``alg`` RS256 and a registered ``kid``; claims ``iss`` = that key's app id,
  ``aud`` = ``api.coze.cn``, ``api.coze.com`` or the simulator's own ``host:port`` (the request's
  ``Host``, which is what cozepy signs: ``urlparse(base_url).netloc``, or ``public_url``'s),
  ``iat`` (not in the future), ``exp`` (in the future) and ``jti``, typed as the doc says
  (``aud``, ``iss``, ``jti`` strings; ``iat``, ``exp`` integers). No clock leeway. Optional
  ``session_name`` / ``session_context`` are accepted and ignored.
* **Single use:** a JWT's ``jti`` is spent by a successful exchange; presenting the same ``jti``
  again for the same app is ``invalid_client``. A request refused for any other reason spends
  nothing. Spent ``jti`` values are forgotten once their JWT's ``exp`` has passed (the JWT is
  refused as expired from then on anyway).
* **Reply:** HTTP 200 ``{"access_token": "czs_<64 letters and digits>", "expires_in": <unix
  seconds>}``; ``expires_in`` is the absolute expiry, ``ceil(now) + duration_seconds``, so a
  token lives at least ``duration_seconds``. The token is then accepted as a Bearer token on the
  other routes while ``time() < expires_in``; afterwards it gets ``4100`` like any unknown token.
* **Errors:** ``{"error_code": ..., "error_message": ...}``. The body is checked first
  (``grant_type``, then ``duration_seconds``), then the JWT, then whether its ``jti`` is spent:

  ============================ ====== ========================================================
  ``error_code``               HTTP   when
  ============================ ====== ========================================================
  ``invalid_request``          400    body not a JSON object, ``grant_type`` missing or not a
                                      string, bad ``duration_seconds``
                                      (``"invalid request: {parameter}"``)
  ``unsupported_grant_type``   400    any other ``grant_type``
                                      (``"not supported grant type: {grant_type}"``)
  ``invalid_client``           401    no Bearer JWT, malformed JWT, wrong ``alg``, unknown
                                      ``kid`` (``"invalid jwt: kid not been registred"``, the
                                      cloud's own wording), bad signature, wrong ``iss`` or
                                      ``aud``, missing claim, expired, spent ``jti``
  ============================ ====== ========================================================

  The codes and message patterns are the cloud doc's (oauth_jwt page). The doc gives no HTTP
  statuses; 400 for ``invalid_request`` has been seen from the cloud on this endpoint (a PKCE
  exchange, coze-js#212), and the rest follow RFC 6749 §5.2 (401 when client authentication via
  the ``Authorization`` header fails). cozepy ignores the status and raises ``CozeAPIError``
  with ``error_message`` as ``msg``.
"""

from __future__ import annotations

import heapq
import math
import secrets
import string
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ability_gateway.simulator.protocol import connector_uid

__all__ = [
    "COZE_AUDIENCES",
    "DEFAULT_DURATION_SECONDS",
    "ERROR_INVALID_CLIENT",
    "ERROR_INVALID_REQUEST",
    "ERROR_UNSUPPORTED_GRANT_TYPE",
    "GRANT_TYPE_JWT_BEARER",
    "MAX_DURATION_SECONDS",
    "OAuthError",
    "OAuthServer",
    "load_rsa_public_key",
    "read_oauth_app_option",
]

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 86399
COZE_AUDIENCES = ("api.coze.cn", "api.coze.com")
"""The cloud endpoints a JWT's ``aud`` may name (besides the simulator's own host:port)."""

ERROR_INVALID_REQUEST = "invalid_request"
ERROR_INVALID_CLIENT = "invalid_client"
ERROR_UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"

MSG_KID_NOT_REGISTERED = "invalid jwt: kid not been registred"
"""The cloud's wording (sic), seen with a JWT signed for the other region (coze-py#148)."""

ACCESS_TOKEN_PREFIX = "czs_"
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_TOKEN_LENGTH = 64  # as in the doc's example czs_ token
_REQUIRED_CLAIMS = ["iss", "aud", "iat", "exp", "jti"]
_ALGORITHM = "RS256"


class OAuthError(Exception):
    """A refused exchange: the ``error_code``, ``error_message`` and HTTP status to answer."""

    def __init__(self, error_code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "error_message": self.message}


def _invalid_request(parameter: str) -> OAuthError:
    return OAuthError(ERROR_INVALID_REQUEST, f"invalid request: {parameter}", 400)


def _invalid_client(reason: str) -> OAuthError:
    return OAuthError(ERROR_INVALID_CLIENT, reason, 401)


def load_rsa_public_key(pem: str) -> RSAPublicKey:
    """Parse a PEM ``PUBLIC KEY`` or ``RSA PUBLIC KEY`` holding an RSA key; ValueError if not."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key (RS256 needs one)")
    return key


def read_oauth_app_option(value: str) -> tuple[str, str, str]:
    """Parse ``APP_ID:KID:PATH_TO_PUBLIC_KEY_PEM`` into ``(app_id, kid, pem_text)``.

    The path is everything after the second colon, so it may itself contain colons. Raises
    ValueError with a message fit for the command line.
    """
    app_id, sep1, rest = value.partition(":")
    kid, sep2, path = rest.partition(":")
    if not (sep1 and sep2 and app_id and kid and path):
        raise ValueError(f"expected APP_ID:KID:PATH_TO_PUBLIC_KEY_PEM, got {value!r}")
    try:
        pem = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read public key file {path!r}: {exc}") from exc
    try:
        load_rsa_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return app_id, kid, pem


@dataclass(frozen=True, slots=True)
class _App:
    app_id: str
    kid: str
    key: RSAPublicKey
    uid: str
    """The connector uid runs made with this app's tokens report."""


def _parse_body(raw: bytes) -> int:
    """Check the request body; return ``duration_seconds``."""
    body: Any = {}
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _invalid_request("body") from exc
    if not isinstance(body, dict):
        raise _invalid_request("body")
    grant_type = body.get("grant_type")
    if not isinstance(grant_type, str) or not grant_type:
        raise _invalid_request("grant_type")
    if grant_type != GRANT_TYPE_JWT_BEARER:
        raise OAuthError(
            ERROR_UNSUPPORTED_GRANT_TYPE, f"not supported grant type: {grant_type}", 400
        )
    duration = body.get("duration_seconds")
    if duration is None:
        return DEFAULT_DURATION_SECONDS
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not 1 <= duration <= MAX_DURATION_SECONDS
    ):
        raise _invalid_request("duration_seconds")
    return duration


def _bearer(authorization: str | None) -> str:
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise _invalid_client("invalid jwt: missing Authorization: Bearer <JWT> header")
    return credentials


class OAuthServer:
    """Registered apps, spent ``jti`` values and the access tokens issued (all in memory)."""

    def __init__(
        self, apps: Iterable[tuple[str, str, str]], clock: Callable[[], float] = time.time
    ) -> None:
        self._apps: dict[str, _App] = {}
        for app_id, kid, pem in apps:
            if not app_id or not kid:
                raise ValueError("an OAuth app needs a non-empty app id and key id")
            if kid in self._apps:
                raise ValueError(f"OAuth key id {kid!r} is registered twice")
            key = load_rsa_public_key(pem)
            self._apps[kid] = _App(app_id, kid, key, connector_uid(f"oauth-app:{app_id}"))
        self._clock = clock
        self._tokens: dict[str, tuple[str, int]] = {}  # token -> (uid, expires_in)
        self._token_expiry: list[tuple[int, str]] = []  # heap of (expires_in, token)
        self._spent: set[tuple[str, str]] = set()  # (app_id, jti)
        self._spent_expiry: list[tuple[int, str, str]] = []  # heap of (JWT exp, app_id, jti)

    def exchange(
        self, authorization: str | None, body: bytes, audiences: Collection[str]
    ) -> tuple[str, int]:
        """Check a token request; return ``(access_token, expires_in)`` or raise OAuthError."""
        duration = _parse_body(body)
        app, claims = self._verify(_bearer(authorization), audiences)
        now = self._clock()
        self._forget_expired(now)
        spent_key = (app.app_id, claims["jti"])
        if spent_key in self._spent:
            raise _invalid_client("invalid jwt: jti has already been used")
        self._spent.add(spent_key)
        heapq.heappush(self._spent_expiry, (claims["exp"], *spent_key))

        token = ACCESS_TOKEN_PREFIX + "".join(
            secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH)
        )
        expires_in = math.ceil(now) + duration
        self._tokens[token] = (app.uid, expires_in)
        heapq.heappush(self._token_expiry, (expires_in, token))
        return token, expires_in

    def owner_of(self, token: str) -> str | None:
        """The connector uid of an issued, unexpired access token; ``None`` otherwise."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        uid, expires_in = entry
        return uid if self._clock() < expires_in else None

    def _verify(self, token: str, audiences: Collection[str]) -> tuple[_App, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _invalid_client(f"invalid jwt: {exc}") from exc
        if header.get("alg") != _ALGORITHM:
            raise _invalid_client(f"invalid jwt: alg must be {_ALGORITHM}")
        kid = header.get("kid")
        app = self._apps.get(kid) if isinstance(kid, str) else None
        if app is None:
            raise _invalid_client(MSG_KID_NOT_REGISTERED)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                app.key,
                algorithms=[_ALGORITHM],
                audience=list(audiences),
                issuer=app.app_id,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            raise _invalid_client(f"invalid jwt: {exc}") from exc
        # The doc types these claims: aud and jti strings, iat and exp integers (PyJWT is laxer).
        if not isinstance(claims["aud"], str):
            raise _invalid_client("invalid jwt: aud must be a string")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise _invalid_client("invalid jwt: jti must be a non-empty string")
        # With no leeway, iat <= now < exp already holds, so exp is later than iat.
        if not all(
            isinstance(claims[name], int) and not isinstance(claims[name], bool)
            for name in ("iat", "exp")
        ):
            raise _invalid_client("invalid jwt: iat and exp must be integers")
        return app, claims

    def _forget_expired(self, now: float) -> None:
        while self._token_expiry and self._token_expiry[0][0] <= now:
            _, token = heapq.heappop(self._token_expiry)
            del self._tokens[token]
        # PyJWT judges exp on the real clock (exp <= time() is expired), so the same clock decides
        # when a spent jti's JWT can no longer be replayed, whatever clock the tokens use.
        real_now = time.time()
        while self._spent_expiry and self._spent_expiry[0][0] <= real_now:
            _, app_id, jti = heapq.heappop(self._spent_expiry)
            self._spent.discard((app_id, jti))

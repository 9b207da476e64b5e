"""Receiving callbacks: check their Standard Webhooks signature, drop duplicates.

The gateway signs every callback attempt (https://www.standardwebhooks.com/)::

    webhook-id: dlv_…                  the same on every attempt of one delivery
    webhook-timestamp: 1767225600      seconds since the epoch, when this attempt was signed
    webhook-signature: v1,<base64>     HMAC-SHA256(key, f"{id}.{timestamp}.{body}")

where ``key`` is the base64 decoding of the token's callback secret after ``whsec_``.
Only :mod:`hmac`, :mod:`hashlib` and :mod:`base64` are used: no server dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from pydantic import ValidationError

from ability_gateway._errors import CallbackVerificationError
from ability_gateway._models import CallbackPayload

__all__ = ["CallbackDeduplicator", "verify_callback"]

_SECRET_PREFIX = "whsec_"


def _key(secret: str) -> bytes:
    encoded = secret[len(_SECRET_PREFIX) :] if secret.startswith(_SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            "The callback secret is not a whsec_… secret (base64 after the prefix)"
        ) from exc
    if not key:
        raise ValueError("The callback secret is empty")
    return key


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(name).lower(): value for name, value in headers.items()}


def _required(headers: dict[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not str(value).strip():
        raise CallbackVerificationError(f"The callback has no {name} header")
    return str(value).strip()


def verify_callback(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> CallbackPayload:
    """Check a callback's signature and timestamp, then read its body.

    ``body`` is the request body exactly as received (bytes, or the text it decodes to);
    ``headers`` its headers (any mapping; names are matched case-insensitively); ``secret``
    the ``whsec_…`` callback secret of the token that invoked. A timestamp more than
    ``tolerance`` seconds from ``now`` (default: the current time) is refused, so a captured
    callback cannot be replayed later. Returns the payload, whose ``webhook_id`` is the
    delivery's id (see :class:`CallbackDeduplicator`).

    Raises :class:`CallbackVerificationError` (answer it with a 4xx) for a missing header, a
    stale timestamp, a signature that does not match or a body that is not a callback, and
    :class:`ValueError` if ``secret`` is not a ``whsec_`` secret at all.
    """
    key = _key(secret)
    lowered = _lowered(headers)
    msg_id = _required(lowered, "webhook-id")
    stamp = _required(lowered, "webhook-timestamp")
    signatures = _required(lowered, "webhook-signature")

    try:
        timestamp = int(stamp)
    except ValueError:
        raise CallbackVerificationError(
            f"The callback's webhook-timestamp {stamp[:40]!r} is not a number of seconds"
        ) from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise CallbackVerificationError(
            f"The callback's timestamp is {current - timestamp:.0f} s old "
            f"(more than {tolerance:g} s): a replay, or a wrong clock"
        )
    if timestamp > current + tolerance:
        raise CallbackVerificationError(
            f"The callback's timestamp is {timestamp - current:.0f} s in the future "
            f"(more than {tolerance:g} s): check the clocks"
        )

    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    matched = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        # compare_digest on every candidate: no early exit that times the match.
        if version == "v1" and hmac.compare_digest(expected, value.encode("ascii", "replace")):
            matched = True
    if not matched:
        raise CallbackVerificationError(
            "The callback's signature does not match: a wrong secret, or a body changed "
            "after signing (verify the raw body, before any JSON parsing)"
        )

    try:
        payload = CallbackPayload.model_validate_json(raw)
    except ValidationError as exc:
        raise CallbackVerificationError(
            f"The callback is signed but its body is not a callback payload: {exc}"
        ) from exc
    payload._webhook_id = msg_id
    return payload


class CallbackDeduplicator:
    """Remembers ``webhook-id`` values in memory to drop repeated deliveries.

    The gateway delivers at least once: a retry or a manual redelivery carries the same
    ``webhook-id``. ``seen(id)`` is ``True`` for an id met within ``ttl`` seconds, else it
    records the id and answers ``False``. At most ``max_size`` ids are kept (the oldest go
    first). Thread-safe. One process only: with several receivers, keep ids in a shared store.

    If handling a callback fails after ``seen`` recorded it, call ``forget(id)`` so that the
    gateway's retry is handled rather than dropped.
    """

    def __init__(
        self,
        ttl: float = 3600.0,
        max_size: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, webhook_id: str) -> bool:
        """``True`` if ``webhook_id`` was seen within ``ttl``; otherwise record it, ``False``."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            if webhook_id in self._expiry:
                return True
            self._expiry[webhook_id] = now + self.ttl
            while len(self._expiry) > self.max_size:
                self._expiry.popitem(last=False)
            return False

    def forget(self, webhook_id: str) -> None:
        """Drop a recorded id (e.g. its handling failed and the retry should be handled)."""
        with self._lock:
            self._expiry.pop(webhook_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        # Ids are recorded in time order with one ttl, so the expired ones are at the front.
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[oldest]

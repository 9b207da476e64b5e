"""Standard Webhooks signatures of completion notices, checked over the raw body bytes.

    webhook-id: msg_…                  the same on every attempt of one notice
    webhook-timestamp: 1767225600      seconds since the epoch, when this attempt was signed
    webhook-signature: v1,<base64>     HMAC-SHA256(key, f"{id}.{timestamp}.{body}"), several
                                       space-separated during a key rotation

``key`` is the base64 decoding of ``GATEWAY_PROVIDER_CALLBACK_SECRET`` after ``whsec_``. The
body is not decoded or parsed here: parsing comes after the signature holds, and its errors
are the sender's (400), not a forgery (401). A refusal says which check failed in our own
words, never a library's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ability_gateway.server.errors import Unauthorized

TOLERANCE_SECONDS = 300
"""How far a notice's timestamp may be from our clock (Standard Webhooks' five minutes)."""
_SECRET_PREFIX = "whsec_"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True, slots=True)
class Signed:
    """The verified ``webhook-id`` and ``webhook-timestamp`` of one notice."""

    webhook_id: str
    timestamp: int


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (read leniently, as the standardwebhooks library)."""
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        key = b""
    return key


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now: float) -> Signed:
    """Check ``body``'s signature and timestamp; :class:`Unauthorized` if either fails."""
    msg_id = headers.get("webhook-id", "").strip()
    stamp = headers.get("webhook-timestamp", "").strip()
    signatures = headers.get("webhook-signature", "").strip()
    if not (msg_id and stamp and signatures):
        raise Unauthorized(
            "The notice is not signed: webhook-id, webhook-timestamp and webhook-signature "
            "are required"
        )
    if not _TIMESTAMP.match(stamp):
        raise Unauthorized("The notice's webhook-timestamp is not a number of seconds")
    timestamp = int(stamp)
    if abs(timestamp - now) > TOLERANCE_SECONDS:
        raise Unauthorized(
            f"The notice's timestamp is more than {TOLERANCE_SECONDS} s from the gateway's clock"
        )
    # Header values arrive as latin-1 text: encoding back gives the bytes the sender signed.
    signed = msg_id.encode("latin-1", "replace") + b"." + stamp.encode() + b"." + body
    expected = b"v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    matched = False
    for candidate in signatures.split():
        # compare_digest on every candidate: no early exit that times the match.
        if hmac.compare_digest(expected, candidate.encode("latin-1", "replace")):
            matched = True
    if not matched:
        raise Unauthorized("The notice's signature does not verify")
    return Signed(msg_id, timestamp)

"""Identifiers: a prefix and 26 characters of Crockford base32, sortable by creation time.

48 bits of milliseconds then 80 random bits (the ULID layout), so ids sort by
creation and work as pagination cursors.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"

"""The checks of an invocation's request before anything is written or stored: callback
URL and headers, metadata, the image (an ``imageBase64`` is decoded and kept pending until
the task is sure to run), and the request's hash for ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.abilities.validation import (
    build_parameters,
    is_http_url,
)
from ability_gateway.server.egress import NON_PUBLIC_PROBLEM, Network, url_problem
from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
)
from ability_gateway.server.media.images import verify_image
from ability_gateway.server.media.service import decode_data_url
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks.schemas import InvokeRequest

MAX_METADATA_BYTES = 16 * 1024
MAX_CALLBACK_HEADERS = 20
# Headers a caller may not set on its callbacks: they belong to HTTP or to our signature.
RESERVED_CALLBACK_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    }
)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Visible ASCII and spaces: what every HTTP stack sends unchanged.
_HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e]{0,4096}$")


def check_callback(
    body: InvokeRequest, errors: list[FieldError], allow: tuple[Network, ...]
) -> None:
    if body.callbackUrl is not None:
        if not is_http_url(body.callbackUrl):
            errors.append(FieldError("callbackUrl", "must be an http(s) URL"))
        elif (problem := url_problem(body.callbackUrl, allow)) is not None:
            if problem == NON_PUBLIC_PROBLEM:  # say how an operator allows an internal one
                problem += " (an operator may allow internal networks: GATEWAY_EGRESS_ALLOW)"
            errors.append(FieldError("callbackUrl", problem))
    headers = body.callbackHeaders or {}
    if headers and body.callbackUrl is None:
        errors.append(FieldError("callbackHeaders", "needs a callbackUrl"))
    if len(headers) > MAX_CALLBACK_HEADERS:
        errors.append(FieldError("callbackHeaders", f"at most {MAX_CALLBACK_HEADERS} headers"))
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME_RE.match(name):
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header name"))
        elif lowered in RESERVED_CALLBACK_HEADERS or lowered.startswith(("webhook-", "proxy-")):
            errors.append(FieldError(f"callbackHeaders.{name}", "is reserved by the gateway"))
        elif not _HEADER_VALUE_RE.match(value):
            errors.append(FieldError(f"callbackHeaders.{name}", "is not a valid header value"))


MAX_METADATA_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def check_metadata(body: InvokeRequest, errors: list[FieldError]) -> None:
    if body.metadata is None:
        return
    if _depth(body.metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        errors.append(FieldError("metadata", f"must nest at most {MAX_METADATA_DEPTH} levels"))
    elif len(orjson.dumps(body.metadata)) > MAX_METADATA_BYTES:
        errors.append(FieldError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON"))


@dataclass(frozen=True, slots=True)
class PendingImage:
    """An ``imageBase64`` input, checked but not stored yet: it is stored only once every
    check has passed and the task is sure to run (not a replay, not a cache hit)."""

    field: str
    data: bytes
    kind: str

    @property
    def placeholder(self) -> str:
        # Stands in for the stored URL in the parameters until then; the same bytes give
        # the same placeholder, so the result cache keys on the content.
        return f"https://pending.invalid/sha256/{hashlib.sha256(self.data).hexdigest()}"


async def parameters_of(
    gateway: GatewayState, ability: AbilityDefinition, body: InvokeRequest
) -> tuple[dict[str, Any], PendingImage | None]:
    """The workflow's parameters, checked; an ``imageBase64`` comes back to be stored later."""
    if body.imageBase64 is None:
        return build_parameters(ability, body.inputs, body.imageUrl), None
    field = ability.image_field
    if body.imageUrl is not None:
        raise BadRequest(
            "Give the image once",
            [FieldError("imageBase64", "give either imageUrl or imageBase64, not both")],
        )
    if field is None:
        raise BadRequest(
            "This ability takes no image",
            [FieldError("imageBase64", "this ability takes no image")],
        )
    if body.inputs.get(field) not in (None, ""):
        raise BadRequest(
            "Give the image once",
            [
                FieldError(
                    "imageBase64", f"give the image either as imageBase64 or as inputs.{field}"
                )
            ],
        )
    settings = gateway.settings
    data, kind = decode_data_url(body.imageBase64, settings.max_image_bytes)
    image = PendingImage(field, data, kind)
    parameters = build_parameters(ability, body.inputs, image.placeholder)
    # Decoded, not only sniffed (magic bytes then junk is not an image); off the event loop.
    await asyncio.to_thread(verify_image, data, kind, settings.max_image_pixels)
    return parameters, image


def request_hash(ability_id: str, body: InvokeRequest) -> str:
    canonical = orjson.dumps(
        {"abilityId": ability_id, **body.model_dump(exclude_none=True)},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()

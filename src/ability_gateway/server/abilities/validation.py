"""Validation of an invocation's inputs against its ability's schema.

Every problem is reported at once, one entry per field, so a caller fixes a
request in one round trip.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ability_gateway.server.abilities.catalog import AbilityDefinition, InputSpec
from ability_gateway.server.addresses import (
    Network,
    is_allowed,
    is_local_network_name,
    is_loopback_name,
)
from ability_gateway.server.egress import url_host, url_problem
from ability_gateway.server.errors import BadRequest, FieldError
from ability_gateway.server.input_guard import has_control

MAX_STRING_LENGTH = 65_536
MAX_URL_LENGTH = 4_096


def is_http_url(value: str) -> bool:
    # Control characters (input_guard): a URL never holds one, and PostgreSQL refuses NUL.
    if len(value) > MAX_URL_LENGTH or has_control(value) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _coerce(spec: InputSpec, value: Any) -> Any:
    """A string input with an enum takes the integer naming a value too (``moxing: 2``)."""
    if (
        spec.type == "string"
        and spec.enum is not None
        and isinstance(value, int)
        and not isinstance(value, bool)
        and str(value) in spec.enum
    ):
        return str(value)
    return value


def _check(spec: InputSpec, value: Any) -> str | None:
    """The problem with one value, or None."""
    if value is None:
        return "must not be null" if spec.required else None
    if spec.type == "string":
        if not isinstance(value, str):
            return "must be a string"
        if spec.required and not value.strip():
            return "must not be empty"
        if len(value) > MAX_STRING_LENGTH:
            return f"must be at most {MAX_STRING_LENGTH} characters"
        if spec.format == "url" and value and not is_http_url(value):
            return "must be an http(s) URL"
    elif spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if spec.integer and not float(value).is_integer():
            return "must be an integer"
        if spec.exclusive_minimum is not None and value <= spec.exclusive_minimum:
            return f"must be greater than {_num(spec.exclusive_minimum)}"
        if spec.minimum is not None and value < spec.minimum:
            return f"must be at least {_num(spec.minimum)}"
        if spec.maximum is not None and value > spec.maximum:
            return f"must be at most {_num(spec.maximum)}"
    elif spec.type == "boolean" and not isinstance(value, bool):
        return "must be a boolean"
    elif spec.type == "object" and not isinstance(value, dict):
        return "must be an object"
    elif spec.type == "array" and not isinstance(value, list):
        return "must be an array"
    if spec.enum is not None and value not in spec.enum:
        return "must be one of " + ", ".join(repr(v) for v in spec.enum)
    return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def build_parameters(
    ability: AbilityDefinition, inputs: dict[str, Any], image_url: str | None
) -> dict[str, Any]:
    """Workflow parameters from ``inputs`` and ``imageUrl``; a 400 lists every problem."""
    errors: list[FieldError] = []
    params = dict(inputs)
    reported: set[str] = set()  # inputs whose problem is already told through imageUrl
    if image_url is not None:
        field = ability.image_field
        if field is None:
            errors.append(FieldError("imageUrl", "this ability takes no image"))
        elif not is_http_url(image_url):
            errors.append(FieldError("imageUrl", "must be an http(s) URL"))
            reported.add(field)
        elif params.get(field) not in (None, ""):
            errors.append(
                FieldError("imageUrl", f"give the image either as imageUrl or as inputs.{field}")
            )
        else:
            params[field] = image_url
    known = {spec.name for spec in ability.inputs}
    for name in params:
        if name not in known:
            errors.append(FieldError(f"inputs.{name}", "is not an input of this ability"))
    for spec in ability.inputs:
        if spec.name in reported:
            continue
        if spec.name not in params or (params[spec.name] is None and spec.required):
            if spec.required:
                errors.append(FieldError(f"inputs.{spec.name}", "is required"))
            continue
        params[spec.name] = _coerce(spec, params[spec.name])
        problem = _check(spec, params[spec.name])
        if problem:
            errors.append(FieldError(f"inputs.{spec.name}", problem))
    if errors:
        raise BadRequest("The inputs do not match the ability's inputSchema", errors)
    # Integral floats (512.0) go upstream as integers; nulls for optional inputs are dropped.
    for spec in ability.inputs:
        value = params.get(spec.name)
        if value is None:
            params.pop(spec.name, None)
        elif spec.integer and isinstance(value, float):
            params[spec.name] = int(value)
    return params


_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def image_url_problem(url: str, allow: Iterable[Network] = ()) -> str | None:
    """Why Coze may not be given ``url`` to download, or None: the callbacks' address policy.

    Only what is knowable without DNS (Coze resolves the name, not us): a literal
    non-public address, a name that is loopback by definition (judged as 127.0.0.1, so
    ``GATEWAY_EGRESS_ALLOW=127.0.0.0/8`` opens it), or one that only names local hosts.
    """
    # The structural rules of callback URLs first: scheme, no credentials, a valid port, a
    # host every parser reads alike, no literal non-public address.
    if (problem := url_problem(url, allow)) is not None:
        return problem
    host = url_host(url)
    if host is None:
        return "must be an http(s) URL"
    if is_loopback_name(host) and not is_allowed(_LOOPBACK, allow):
        return "names a loopback host"
    if is_local_network_name(host):
        return "names a host of a local network"
    return None


def check_image_urls(
    ability: AbilityDefinition,
    inputs: dict[str, Any],
    image_url: str | None,
    allow: Iterable[Network],
    *,
    internal_allowed: bool = False,
) -> None:
    """The caller's image URLs (``imageUrl``, or a URL input such as ``inputs.url``) under
    the egress policy; a 400 names each field. ``internal_allowed``: the executor is a
    self-hosted Coze meant to read internal URLs. The gateway's own media URLs (a stored
    ``imageBase64``) are not the caller's and are not passed here."""
    if internal_allowed:
        return
    allow = tuple(allow)
    given: list[tuple[str, Any]] = [("imageUrl", image_url)] if image_url is not None else []
    given += [
        (f"inputs.{spec.name}", inputs.get(spec.name))
        for spec in ability.inputs
        if spec.format == "url"
    ]
    errors = [
        FieldError(field, problem)
        for field, url in given
        if isinstance(url, str) and url and (problem := image_url_problem(url, allow)) is not None
    ]
    if errors:
        raise BadRequest("The image URL is not allowed", errors)

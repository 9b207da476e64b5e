"""Every HTTP answer a test sees is checked against the published OpenAPI document.

``check_response`` finds the route (method + path template) of a request; if the document
has it, the answer's status must be one the route lists, and a JSON answer must validate
against that status's schema. Test clients install it as an httpx response hook
(``contract_hooks()``), so every black-box test also tests the contract; there is no cost
in production. Requests to routes the document leaves out (``/openapi.json``, ``/docs``,
``HEAD /media``, unknown paths) are not judged.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator


class ContractViolation(AssertionError):
    pass


@functools.cache
def document() -> dict[str, Any]:
    from ability_gateway.server.app import create_app
    from ability_gateway.server.config import Settings

    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


@functools.cache
def _routes() -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    routes = []
    for template, item in document()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if template.startswith("/media/"):
            pattern = re.sub(r"\[\^/\]\+$", ".+", pattern)  # {key:path}
        routes.append((re.compile(f"^{pattern}$"), template, item))
    # The most specific template first (fewest parameters, longest literal part).
    routes.sort(key=lambda r: (r[1].count("{"), -len(r[1])))
    return routes


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {**schema, "components": document().get("components", {})}
    return Draft202012Validator(root)


def validate_against(schema_name: str, body: Any) -> None:
    """``body`` against ``#/components/schemas/<schema_name>`` (e.g. a callback body)."""
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    errors = sorted(_validator(ref).iter_errors(body), key=str)
    if errors:
        raise ContractViolation(f"{schema_name}: {errors[0].message} at {list(errors[0].path)}")


def check_response(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    method = method.lower()
    found = next(
        (
            (template, item[method])
            for pattern, template, item in _routes()
            if pattern.match(path) and method in item
        ),
        None,
    )
    if found is None:
        return
    template, operation = found
    responses = operation.get("responses", {})
    documented = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if documented is None and "default" not in responses:
        raise ContractViolation(
            f"{method.upper()} {template} answered {status}, which its OpenAPI does not list "
            f"({', '.join(sorted(responses))}): {body[:300]!r}"
        )
    if documented is None or not content_type.startswith("application/json") or not body:
        return
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return
    import orjson

    errors = sorted(_validator(schema).iter_errors(orjson.loads(body)), key=str)
    if errors:
        raise ContractViolation(
            f"{method.upper()} {template} {status}: {errors[0].message} at "
            f"{list(errors[0].absolute_path)}"
        )


async def _on_response(response: httpx.Response) -> None:
    await response.aread()
    request = response.request
    check_response(
        request.method,
        request.url.path,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
    )


def contract_hooks() -> dict[str, list[Any]]:
    """``event_hooks`` for an ``httpx.AsyncClient`` that checks every answer."""
    return {"response": [_on_response]}

"""The OpenAPI document: shared error responses, and a finishing pass over every route.

What every route can answer is stated once, by route class, so the document cannot drift
from the middleware and dependencies that produce those answers:

    every route          400 (bad characters in path/query/headers), 413 (body cap),
                         503 (database unreachable)
    /api/… (bearer)      + 401, 429 (per-token rate limit), and the ``bearerAuth`` scheme;
                         except /api/provider_callbacks/…, which are signed, not tokened
    /api/admin/…         + 403 (the token lacks the admin scope)

(tests/server/test_openapi_routes.py checks the token rule against the running routes.)

FastAPI's 422 is never sent (bad input is a 400 with per-field errors) and is removed.
"""

from __future__ import annotations

from typing import Any

from ability_gateway.server.errors import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input, with per-field `errors`"},
    401: {
        "model": ErrorBody,
        "description": "Missing, malformed, unknown, revoked or expired token",
    },
    404: {"model": ErrorBody, "description": "No such resource (or not the token's own)"},
}

SECURITY_SCHEME = "bearerAuth"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

_EVERY_ROUTE = {
    "400": "Bad input: a field named in `errors`, or a control character in the path, "
    "query or headers",
    "413": "The request body (or its headers) is larger than this route accepts",
    "503": "The database (or a service this route needs) cannot be reached or is not "
    "configured; retry after `Retry-After`",
}
_TOKEN_ROUTE = {
    "401": "Missing, malformed, unknown, revoked or expired token",
    "429": "The token's rate limit or quota is used up; retry after `Retry-After`",
}
_ADMIN_ROUTE = {"403": "The token lacks the admin scope"}


def needs_token(path: str) -> bool:
    """Which routes take a bearer token: the API, except Coze's signed notices."""
    return path.startswith("/api/") and not path.startswith("/api/provider_callbacks/")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Add the route-class answers and the security scheme; drop the 422s."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A gateway token: `Authorization: Bearer agw_…`",
    }
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            extra = dict(_EVERY_ROUTE)
            if needs_token(path):
                extra.update(_TOKEN_ROUTE)
                operation["security"] = [{SECURITY_SCHEME: []}]
            if path.startswith("/api/admin/"):
                extra.update(_ADMIN_ROUTE)
            for status, description in extra.items():
                responses.setdefault(status, _error(description))
    for item in document.get("webhooks", {}).values():  # what we send: no 422 there either
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document

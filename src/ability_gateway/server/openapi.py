"""Shared OpenAPI descriptions of the error responses."""

from typing import Any

from ability_gateway.server.tasks.schemas import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input, with per-field `errors`"},
    401: {
        "model": ErrorBody,
        "description": "Missing, malformed, unknown, revoked or expired token",
    },
    404: {"model": ErrorBody, "description": "No such resource (or not the token's own)"},
}

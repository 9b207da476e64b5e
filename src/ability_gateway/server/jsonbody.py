"""Reading a JSON request body into a pydantic model, with the uniform 400 on bad input.

Any Content-Type is read as JSON (``curl -d`` sends a form type); an empty body reads as
``{}`` where the caller allows it (every field has a default); control characters and
oversized nesting are refused by ``input_guard`` first. Its size is capped before (``bodylimit``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ability_gateway.server.errors import BadRequest, FieldError, validation_field_errors
from ability_gateway.server.input_guard import check_json_body

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_model(
    request: Request, model: type[ModelT], *, empty_ok: bool = False, ids: Collection[str] = ()
) -> ModelT:
    raw = await request.body()
    if not raw.strip() and empty_ok:
        data: object = {}
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problem = "is empty" if not raw.strip() else f"is not valid JSON ({exc.msg})"
            raise BadRequest(
                "The request body is not valid JSON", [FieldError("body", problem)]
            ) from exc
    if not isinstance(data, dict):
        raise BadRequest("The request is invalid", [FieldError("body", "must be a JSON object")])
    check_json_body(data, ids=ids)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("The request is invalid", validation_field_errors(exc.errors())) from exc

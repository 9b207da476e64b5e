"""What a ``POST /v1/workflow/run`` body may be: :func:`parse_run_request`.

This module owns reading a run request the way Coze's backend does: the JSON object, the
``workflow_id`` (an int64 > 0, as a number or a string), ``bot_id``/``app_id`` (not both),
``is_async``, ``ext.user_id``, and ``parameters`` (an object or a JSON string of one), bound
to the workflow's inputs. A malformed body raises :class:`BadParameter` (code 4000); a
well-formed id of no published workflow raises :class:`WorkflowNotFound` (4200).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ability_gateway.simulator.definition import BadParameter, Inputs, Workflow
from ability_gateway.simulator.protocol import MSG_WORKFLOW_ID_NOT_POSITIVE
from ability_gateway.simulator.workflows import WORKFLOWS

__all__ = ["RunRequest", "WorkflowNotFound", "parse_run_request"]


@dataclass(frozen=True, slots=True)
class RunRequest:
    workflow: Workflow
    inputs: Inputs
    is_async: bool
    bot_id: str
    user_id: str | None


class WorkflowNotFound(Exception):
    """The workflow id is well-formed but no such workflow is published (4200)."""


def _parse_workflow_id(value: Any) -> str:
    # Coze's backend reads the id as an int64: absent or 0 trips the "> 0" check, junk is invalid.
    if value is None or value == "":
        raise BadParameter(MSG_WORKFLOW_ID_NOT_POSITIVE)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text.removeprefix("-").isdigit():
            number = int(text)
    if number is None:
        raise BadParameter("The parameter workflow_id is invalid. Please check your input.")
    if number <= 0:
        raise BadParameter(MSG_WORKFLOW_ID_NOT_POSITIVE)
    return str(number)


def _parse_parameters(value: Any) -> dict[str, Any]:
    """``parameters`` may be an object or a JSON string of one (reference §2: accept both)."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise BadParameter(
                "The parameter parameters is not a valid JSON string. Please check your input."
            ) from exc
    if not isinstance(value, dict):
        raise BadParameter(
            "The parameter parameters must be a JSON object. Please check your input."
        )
    return value


def _optional_id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadParameter(f"The parameter {name} is invalid. Please check your input.")
    return str(value)


def parse_run_request(raw: bytes) -> RunRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadParameter("The request body is not valid JSON. Please check your input.") from exc
    if not isinstance(body, dict):
        raise BadParameter("The request body must be a JSON object. Please check your input.")
    workflow_id = _parse_workflow_id(body.get("workflow_id"))
    bot_id = _optional_id(body, "bot_id")
    app_id = _optional_id(body, "app_id")
    if bot_id and app_id:
        raise BadParameter(
            "bot_id and app_id cannot be specified at the same time. Please check your input."
        )
    is_async = body.get("is_async", False)
    if is_async is None:
        is_async = False
    if not isinstance(is_async, bool):
        raise BadParameter("The parameter is_async must be a boolean. Please check your input.")
    ext = body.get("ext")
    if ext is not None and not isinstance(ext, dict):
        raise BadParameter("The parameter ext must be a map of strings. Please check your input.")
    user_id = ext.get("user_id") if ext else None
    parameters = _parse_parameters(body.get("parameters"))
    workflow = WORKFLOWS.get(workflow_id)
    if workflow is None:
        raise WorkflowNotFound(workflow_id)
    return RunRequest(
        workflow=workflow,
        inputs=workflow.bind(parameters),
        is_async=is_async,
        bot_id=bot_id or "0",
        user_id=str(user_id) if user_id not in (None, "") else None,
    )

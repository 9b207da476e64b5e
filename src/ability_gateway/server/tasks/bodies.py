"""The wire bodies of a task, from one set of field builders: the invoke answer (spec
§3.2.3), the task view (§3.3) and the callback body (§3.4.3).

The schemas in ``tasks/schemas.py`` (``InvokeResult``, ``Task``, ``CallbackBody``) are the
contract these dicts are checked against in tests (every HTTP answer is validated against
the published OpenAPI document).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.abilities.catalog import DEFAULT_PROVIDER

Row = dict[str, Any] | RowMapping

# The spec's ``metadata.state`` of each task status: the one map.
STATE_BY_STATUS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "canceled",
    "timeout": "timeout",
}


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata_of(row: Row, provider: str) -> dict[str, Any]:
    """The result's ``metadata``; before a result exists: model, state, taskId, client."""
    payload = row["result_payload"] or {}
    metadata = payload.get("metadata")
    if metadata is not None:
        return dict(metadata)
    status = row["status"]
    made = {"model": provider, "state": STATE_BY_STATUS.get(status, status), "taskId": row["id"]}
    if row.get("client_metadata") is not None:
        made["client"] = row["client_metadata"]
    return made


def outputs_of(row: Row) -> dict[str, Any]:
    """texts, images, videos, assets: the same four lists in every body."""
    payload = row["result_payload"] or {}
    return {name: payload.get(name, []) for name in ("texts", "images", "videos", "assets")}


def invoke_body(row: Row, ability_id: str, provider: str) -> dict[str, Any]:
    """Spec §3.2.3: a task's result, finished or not."""
    payload = row["result_payload"] or {}
    return {
        "abilityId": ability_id,
        "provider": provider,
        "status": row["status"],
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "durationMs": row["duration_ms"],
        **outputs_of(row),
        "metadata": metadata_of(row, provider),
        "raw": payload.get("raw", {}),
    }


def callback_body(row: Row, provider: str = DEFAULT_PROVIDER) -> dict[str, Any]:
    """Spec §3.4.3, plus ``errorCode``: what a task's callback delivers."""
    error = row["error_payload"] or {}
    status = row["status"]
    return {
        "requestId": row["request_id"],
        "taskId": row["id"],
        "abilityId": row["ability_id"],
        "status": status,
        "durationMs": row["duration_ms"],
        **outputs_of(row),
        "metadata": metadata_of(row, provider),
        "errorMessage": None if status == "succeeded" else error.get("message"),
        "errorCode": None if status == "succeeded" else error.get("code"),
    }


def task_view(row: Row) -> dict[str, Any]:
    """Spec §3.3."""
    return {
        "id": row["id"],
        "abilityId": row["ability_id"],
        "status": row["status"],
        "requestId": row["request_id"],
        "logId": row["log_id"],
        "createTime": iso_time(row["created_at"]),
        "updateTime": iso_time(row["updated_at"]),
        "resultPayload": row["result_payload"],
        "errorPayload": row["error_payload"],
        # Beyond spec §3.3: the state of the task's callback, when it has one.
        "callback": None
        if row.get("delivery_id") is None
        else {
            "id": row["delivery_id"],
            "state": row["delivery_state"],
            "attempts": row["delivery_attempts"],
        },
    }

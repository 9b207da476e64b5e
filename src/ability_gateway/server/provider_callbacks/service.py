"""Completion notices of generation jobs: verified, read, matched to their job, applied once.

    raw body ──► signature and timestamp ─────────────────────── 401 (signature.py)
             ──► a JSON object ───────────────────────────────── 400 "not valid JSON"
             ──► externalId = the job id in the path, status, lists  400, the field named
             ──► this webhook-id received before (within the window)? 200 "already received"
             ──► complete the task waiting on the job ─────────── 404 when none waits
             ──► remember the webhook-id until its signature expires

The body names its job because the signature covers the body, not the path: a notice
captured for job E1 and posted to ``…/coze/E2`` is refused instead of ending E2's task. A
replay within the tolerance window is answered without touching the task or its media (a
finished task would stay as it is anyway, but its outputs would be downloaded again).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from ability_gateway.server.errors import (
    BadRequest,
    FieldError,
    NotFound,
    ServiceUnavailable,
    shorten,
)
from ability_gateway.server.provider_callbacks import repository, signature
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import service as tasks_service

APPLIED = "ok"
ALREADY_RECEIVED = "already received"

_EXTERNAL_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_WEBHOOK_ID = re.compile(r"^[\x21-\x7e]{1,255}$")


def read_notice(body: bytes) -> dict[str, Any]:
    """The notice's JSON object; 400 for anything else.

    orjson, not :mod:`json`: nesting deeper than 1024 is a parse error (not a RecursionError),
    and integers beyond 64 bits are read as floats, which the JSON columns can store. The
    columns are written by orjson, which nests at most 254 deep: a notice that could not be
    stored is refused here rather than failing its task.
    """
    try:
        notice = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = "is empty" if not body.strip() else f"is not valid JSON ({exc.msg})"
        raise BadRequest("The notice is not valid JSON", [FieldError("body", problem)]) from exc
    if not isinstance(notice, dict):
        raise BadRequest(
            "The notice must be a JSON object", [FieldError("body", "must be a JSON object")]
        )
    try:
        orjson.dumps(notice)
    except orjson.JSONEncodeError as exc:
        raise BadRequest(
            "The notice is nested too deeply to be stored",
            [FieldError("body", "nests deeper than 254 levels")],
        ) from exc
    return notice


def check_notice(notice: dict[str, Any], external_id: str) -> None:
    """The fields the gateway acts on; 400 naming each one that is wrong."""
    errors = []
    named = notice.get("externalId")
    if named is None:
        errors.append(FieldError("externalId", "is required"))
    elif not isinstance(named, str):
        errors.append(FieldError("externalId", "must be a string"))
    elif named != external_id:
        errors.append(FieldError("externalId", "must be the job id in the path"))
    if str(notice.get("status", "")).lower() not in ("succeeded", "failed"):
        errors.append(FieldError("status", "must be succeeded or failed"))
    for name in ("images", "texts"):
        if name in notice and not isinstance(notice[name], list):
            errors.append(FieldError(name, "must be a list"))
    if errors:
        raise BadRequest("The notice is invalid", errors)


async def receive_notice(
    gateway: GatewayState,
    external_id: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> str:
    """Apply one notice (see the module docstring): :data:`APPLIED` or :data:`ALREADY_RECEIVED`."""
    secret = gateway.settings.provider_callback_secret
    key = signature.secret_key(secret.get_secret_value()) if secret is not None else b""
    if not key:
        raise ServiceUnavailable("Completion notices are not configured on this gateway")
    current = time.time() if now is None else now
    signed = signature.verify(key, headers, body, current)
    if not _WEBHOOK_ID.match(signed.webhook_id):
        raise BadRequest(
            "The notice's webhook-id is invalid",
            [FieldError("webhook-id", "must be 1-255 visible ASCII characters")],
        )
    notice = read_notice(body)
    check_notice(notice, external_id)
    if not _EXTERNAL_ID.match(external_id):
        raise NotFound(f"No task waits on job {shorten(external_id)!r}")
    # Kept until this attempt's timestamp leaves the tolerance window: a replay fails to
    # verify then. Claimed before it is applied, so two copies at once apply once.
    keep_ms = int((max(0.0, signed.timestamp - current) + signature.TOLERANCE_SECONDS) * 1000)
    webhook_id = signed.webhook_id
    claimed = await gateway.db.run_write(
        lambda conn: repository.claim(conn, webhook_id, external_id, keep_ms)
    )
    if not claimed:
        return ALREADY_RECEIVED
    try:
        applied = await tasks_service.complete_external_job(gateway, external_id, notice)
    except BaseException:
        await gateway.db.run_write(lambda conn: repository.forget(conn, webhook_id, external_id))
        raise
    if not applied:
        await gateway.db.run_write(lambda conn: repository.forget(conn, webhook_id, external_id))
        raise NotFound(f"No task waits on job {shorten(external_id)!r}")
    return APPLIED

"""Wire-level details of the Coze Open API that every simulator response shares.

Shapes follow the cloud API (``reference/coze-workflow-api.md`` §1, §2, §5): business errors are
HTTP 200 with a non-zero ``code``; every response carries an ``X-Tt-Logid`` header whose value is
repeated as ``detail.logid``; ids are 19-digit decimal strings.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = [
    "CODE_AUTH_INVALID",
    "CODE_BAD_PARAMETER",
    "CODE_EXECUTE_FAILED",
    "CODE_RATE_LIMITED",
    "CODE_RECORD_NOT_FOUND",
    "CODE_WORKFLOW_NOT_FOUND",
    "MSG_AUTH_INVALID",
    "MSG_JOB_NOT_FOUND",
    "MSG_RATE_LIMITED",
    "MSG_RECORD_NOT_FOUND",
    "MSG_SERVER_ISSUES",
    "MSG_WORKFLOW_ID_NOT_POSITIVE",
    "MSG_WORKFLOW_NOT_FOUND",
    "SPACE_ID",
    "ExecuteIdFactory",
    "connector_uid",
    "debug_url",
    "dumps",
    "new_logid",
]

CODE_BAD_PARAMETER = 4000
CODE_AUTH_INVALID = 4100
CODE_RATE_LIMITED = 4009
CODE_WORKFLOW_NOT_FOUND = 4200
CODE_RECORD_NOT_FOUND = 4314
CODE_EXECUTE_FAILED = 720701013

MSG_AUTH_INVALID = "authentication is invalid"
MSG_WORKFLOW_ID_NOT_POSITIVE = (
    "The parameter workflow_id must be greater than 0. Please check your input."
)
MSG_WORKFLOW_NOT_FOUND = (
    "The workflow does not exist or has not been published. "
    "Please check the workflow_id and publish the workflow."
)
MSG_RECORD_NOT_FOUND = "execution record not found"
MSG_RATE_LIMITED = "Request rate exceeded. Please retry later."
MSG_JOB_NOT_FOUND = "job not found"
"""The simulator-only job introspection endpoint's miss (with ``CODE_RECORD_NOT_FOUND``)."""
MSG_SERVER_ISSUES = (
    "We're currently experiencing server issues. Please try your request again after a short "
    "delay. If the problem persists, contact our support team."
)

SPACE_ID = "7597510943186190336"
"""The (fictional) Coze space every simulated workflow lives in; it only shows in ``debug_url``."""

_BEIJING = timezone(timedelta(hours=8))


def dumps(value: Any) -> str:
    """Compact JSON without ASCII escaping, as Coze's Go backend writes ``data`` and ``output``."""
    return orjson.dumps(value).decode()


def connector_uid(seed: str) -> str:
    """A stable 16-digit "user id" for a credential (Coze reports the token owner's id as
    ``connector_uid`` when a run has no ``ext.user_id``)."""
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 10**16).zfill(16)


def new_logid() -> str:
    """A Coze-style log id: ``YYYYMMDDhhmmss`` in Beijing time plus 20 upper-case hex digits."""
    return datetime.now(_BEIJING).strftime("%Y%m%d%H%M%S") + os.urandom(10).hex().upper()


class ExecuteIdFactory:
    """Makes unique 19-digit execute ids whose top bits are the creation time.

    Real ids satisfy ``id >> 32 ≈ unix seconds`` (reference §1); the low 32 bits here are a counter
    from a random start, so ids are unique within a process and unlikely to repeat across restarts.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counter = itertools.count(secrets.randbits(32))

    def __call__(self) -> str:
        return str((int(self._clock()) << 32) | (next(self._counter) & 0xFFFFFFFF))


def debug_url(execute_id: str, workflow_id: str) -> str:
    """The trace page link Coze returns with every run (reference §1)."""
    return (
        f"https://www.coze.cn/work_flow?execute_id={execute_id}&space_id={SPACE_ID}"
        f"&workflow_id={workflow_id}&execute_mode=2"
    )

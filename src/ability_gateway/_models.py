"""Typed views of the gateway's answers.

Attributes are snake_case; the wire's camelCase names are their aliases, so
``Task.model_validate(response.json())`` reads an answer and both ``ability_id=`` and
``abilityId=`` construct a model. Unknown fields are kept (``extra="allow"``): a newer
gateway that adds a field does not break an older SDK. Statuses are plain strings for the
same reason; the values today are in :data:`TASK_STATUSES`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

__all__ = [
    "TASK_STATUSES",
    "TERMINAL_STATUSES",
    "Ability",
    "CallbackPayload",
    "CallbackSummary",
    "Deliveries",
    "Delivery",
    "DeliveryAttempt",
    "InputField",
    "InputSchema",
    "InvokeResult",
    "Media",
    "Task",
    "TaskPage",
]

TASK_STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "timeout")
"""Every status a task can have, in lifecycle order."""

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "timeout"})
"""The statuses a task ends in; it never changes after reaching one."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )


class InputField(_Model):
    """One input of an ability (spec §3.1)."""

    name: str
    type: str
    required: bool = False
    description: str = ""


class InputSchema(_Model):
    fields: list[InputField] = Field(default_factory=list)


class Ability(_Model):
    """An ability of the catalog (spec §3.1)."""

    id: str
    display_name: str
    description: str = ""
    provider: str
    capability_key: str
    status: str
    input_schema: InputSchema = Field(default_factory=InputSchema)
    mode: str = "sync"  # sync | async (a generation job: the invoke answers 202)
    timeout_seconds: float | None = None  # the task's deadline


class Media(_Model):
    """An output image or video.

    ``oss_url`` is the gateway's copy (stays valid; ``None`` if copying failed),
    ``source_url`` is Coze's (it expires).
    """

    oss_url: str | None = None
    source_url: str | None = None
    type: str = "image"

    @property
    def url(self) -> str | None:
        """The URL to use: the gateway's copy, else Coze's."""
        return self.oss_url or self.source_url


class InvokeResult(_Model):
    """The answer of an invocation (spec §3.2.3): finished (200) or going on (202)."""

    ability_id: str
    provider: str
    status: str
    request_id: str
    log_id: int | None = None
    duration_ms: int | None = None
    texts: list[str] = Field(default_factory=list)
    images: list[Media] = Field(default_factory=list)
    videos: list[Media] = Field(default_factory=list)
    assets: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def task_id(self) -> str:
        """The invocation's task (``metadata.taskId``): every invocation has one."""
        return str(self.metadata["taskId"])

    @property
    def is_terminal(self) -> bool:
        """Whether the task had ended when the gateway answered (200), not a 202."""
        return self.status in TERMINAL_STATUSES


class CallbackSummary(_Model):
    """A task's callback delivery in the task view: its ``id`` is the ``webhook-id``."""

    id: str
    state: str
    attempts: int = 0


class Task(_Model):
    """A task (spec §3.3): one invocation of an ability."""

    id: str
    ability_id: str
    status: str
    request_id: str
    log_id: int | None = None
    create_time: datetime
    update_time: datetime
    result_payload: dict[str, Any] | None = None
    error_payload: dict[str, Any] | None = None
    callback: CallbackSummary | None = None

    @property
    def is_terminal(self) -> bool:
        """``succeeded``, ``failed``, ``canceled`` or ``timeout``: the task will not change."""
        return self.status in TERMINAL_STATUSES

    @property
    def texts(self) -> list[str]:
        """The result's texts (empty until the task succeeds)."""
        return [str(t) for t in (self.result_payload or {}).get("texts") or []]

    @property
    def images(self) -> list[Media]:
        """The result's images (empty until the task succeeds)."""
        return [Media.model_validate(m) for m in (self.result_payload or {}).get("images") or []]

    @property
    def videos(self) -> list[Media]:
        """The result's videos (empty until the task succeeds)."""
        return [Media.model_validate(m) for m in (self.result_payload or {}).get("videos") or []]

    @property
    def error_message(self) -> str | None:
        """Why the task failed, timed out or was canceled."""
        message = (self.error_payload or {}).get("message")
        return None if message is None else str(message)


class TaskPage(_Model):
    """One page of ``GET /api/ability_tasks``: pass ``next_cursor`` back for the next one."""

    items: list[Task] = Field(default_factory=list)
    next_cursor: str | None = None


class DeliveryAttempt(_Model):
    """One HTTP try of a callback delivery."""

    number: int
    manual: bool = False
    time: datetime
    duration_ms: int | None = None
    http_status: int | None = None
    error: str | None = None
    response: str | None = None


class Delivery(_Model):
    """A task's callback (its ``id`` is the ``webhook-id`` of every attempt)."""

    id: str
    url: str
    state: str
    attempt_count: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_time: datetime | None = None
    delivered_time: datetime | None = None
    create_time: datetime


class Deliveries(_Model):
    """``GET /api/ability_tasks/{id}/callbacks``: the delivery (if any) and every attempt."""

    delivery: Delivery | None = None
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


class CallbackPayload(_Model):
    """The body of a callback (spec §3.4.3, plus ``errorCode``)."""

    request_id: str
    task_id: str
    ability_id: str
    status: str
    duration_ms: int | None = None
    texts: list[str] = Field(default_factory=list)
    images: list[Media] = Field(default_factory=list)
    videos: list[Media] = Field(default_factory=list)
    assets: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    error_message: str | None = None
    error_code: int | None = None

    _webhook_id: str | None = PrivateAttr(default=None)

    @property
    def webhook_id(self) -> str | None:
        """The ``webhook-id`` it came with (set by :func:`verify_callback`): the same on every
        attempt of one delivery, so duplicates can be dropped by it."""
        return self._webhook_id

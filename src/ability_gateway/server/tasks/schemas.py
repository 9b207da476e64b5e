"""Wire models of invocations and tasks (spec §3.2, §3.3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ability_gateway.server.errors import ErrorBody, FieldProblem

TaskStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "timeout"]
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "timeout"})


class InvokeRequest(BaseModel):
    """The body of ``POST /api/abilities/{id}/invoke`` (spec §3.2.2)."""

    model_config = ConfigDict(extra="forbid")

    executorId: str | None = Field(None, max_length=100)
    inputs: dict[str, Any] = Field(description="The ability's inputs, per its inputSchema.")
    imageUrl: str | None = Field(None, description="Fills the ability's image input.")
    imageBase64: str | None = Field(None, description="A data: URL of the image.")
    callbackUrl: str | None = Field(None, max_length=2048)
    callbackHeaders: dict[str, str] | None = None
    metadata: dict[str, Any] | None = Field(
        None, description="Echoed back under metadata.client in results and callbacks."
    )


class Media(BaseModel):
    ossUrl: str | None
    sourceUrl: str
    type: Literal["image", "video"]


class InvokeResult(BaseModel):
    """The result of an invocation (spec §3.2.3)."""

    abilityId: str
    provider: str
    status: TaskStatus
    requestId: str
    logId: int | None
    durationMs: int | None
    texts: list[str] = Field(description="Text outputs: a prompt, or tags as JSON text.")
    images: list[Media]
    videos: list[Media]
    assets: list[dict[str, Any]]
    metadata: dict[str, Any]
    raw: dict[str, Any]


class CallbackSummary(BaseModel):
    id: str
    state: Literal["pending", "delivered", "exhausted", "gone"]
    attempts: int


class Task(BaseModel):
    """A task as ``GET /api/ability_tasks/{id}`` shows it (spec §3.3)."""

    id: str
    abilityId: str
    status: TaskStatus
    requestId: str
    logId: int | None
    createTime: str
    updateTime: str
    resultPayload: dict[str, Any] | None
    errorPayload: dict[str, Any] | None
    callback: CallbackSummary | None = Field(
        None, description="The task's callback delivery (`webhook-id`, state, attempts)."
    )


class TaskList(BaseModel):
    items: list[Task]
    nextCursor: str | None


class CallbackBody(BaseModel):
    """What a task's callback POSTs (spec §3.4.3, plus ``errorCode``), signed per Standard
    Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

    requestId: str
    taskId: str
    abilityId: str
    status: TaskStatus
    durationMs: int | None
    texts: list[str]
    images: list[Media]
    videos: list[Media]
    assets: list[dict[str, Any]]
    metadata: dict[str, Any]
    errorMessage: str | None = Field(description="Why the task did not succeed (else null).")
    errorCode: int | None = Field(description="The error's code (Coze's, or the HTTP status).")


__all__ = ["CallbackBody", "ErrorBody", "FieldProblem", "InvokeResult", "Task", "TaskList"]

"""Wire models of invocations and tasks (spec §3.2, §3.3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class FieldProblem(BaseModel):
    field: str = Field(description="Where: `inputs.url`, `callbackUrl`, `body`, …")
    problem: str


class ErrorBody(BaseModel):
    """The one error body of every failure."""

    model_config = ConfigDict(extra="allow")

    code: int = Field(
        description="The HTTP status for the gateway's own errors; Coze's code (e.g. "
        "720701013) when a workflow failed."
    )
    message: str
    requestId: str = Field(description="This request's X-Request-ID: quote it to the admins.")
    errors: list[FieldProblem] | None = Field(
        None, description="Bad input (400): one entry per field, all at once."
    )
    taskId: str | None = Field(None, description="The task the error is about, when there is one.")
    status: TaskStatus | None = Field(None, description="That task's status.")
    logId: int | None = Field(
        None, description="The call log row of the upstream call (admins look it up)."
    )
    debugUrl: str | None = Field(None, description="Coze's debug URL of the failed run.")

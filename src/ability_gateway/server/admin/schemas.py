"""The admin API's answers for tasks, call logs, callbacks and executors' recent outcomes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ability_gateway.server.callbacks.schemas import Deliveries

TaskStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "timeout"]
DeliveryState = Literal["pending", "delivered", "exhausted", "gone"]


class AdminTaskSummary(BaseModel):
    id: str
    tokenId: str
    abilityId: str
    executorId: str | None
    status: TaskStatus
    requestId: str
    logId: int | None
    executeId: str | None
    externalJobId: str | None
    durationMs: int | None
    errorCode: int | None
    errorMessage: str | None
    callbackState: DeliveryState | None
    createTime: str
    updateTime: str
    finishTime: str | None


class AdminTaskPage(BaseModel):
    items: list[AdminTaskSummary]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class CallLog(BaseModel):
    """One HTTP call to Coze (or a cache hit's record): its `logId` is what errors carry."""

    logId: int
    taskId: str | None
    executorId: str
    node: str | None = Field(description="The gateway node (runner id) that made the call.")
    workflowId: str
    operation: str = Field(description="`workflow.run`, `workflow.submit`, `workflow.history`…")
    httpStatus: int | None
    cozeCode: int | None
    cozeMessage: str | None
    cozeLogId: str | None = Field(description="Coze's `logid`: quote it to Coze's support.")
    executeId: str | None
    debugUrl: str | None
    error: str | None
    durationMs: int
    attempt: int | None = Field(description="1: the first try; 2: its first retry; …")
    time: str


class CallLogDetail(CallLog):
    tokenId: str | None
    abilityId: str | None
    requestId: str | None
    requestBody: Any = Field(description="What was sent to Coze.")
    responseBody: str | None = Field(description="What Coze answered (capped).")


class CallLogPage(BaseModel):
    items: list[CallLog]
    nextCursor: str | None


class TaskMedia(BaseModel):
    role: Literal["input", "output"]
    key: str
    url: str
    contentType: str
    size: int
    sourceUrl: str | None
    time: str


class AdminTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    tokenId: str
    abilityId: str
    executorId: str | None
    status: TaskStatus
    requestId: str
    logId: int | None
    executeId: str | None
    externalJobId: str | None
    inputs: dict[str, Any]
    metadata: dict[str, Any] | None
    callbackUrl: str | None
    callbackHeaderNames: list[str] = Field(description="Names only: values are never shown.")
    resultPayload: dict[str, Any] | None
    errorPayload: dict[str, Any] | None
    errorCode: int | None
    durationMs: int | None
    createTime: str
    updateTime: str
    finishTime: str | None
    deadlineTime: str | None


class TaskStory(BaseModel):
    """A task and everything that happened to it."""

    task: AdminTask
    callLogs: list[CallLog]
    media: list[TaskMedia]
    callback: Deliveries


class DeliverySummary(BaseModel):
    id: str
    taskId: str
    tokenId: str
    url: str
    state: DeliveryState
    attemptCount: int
    lastStatus: int | None
    lastError: str | None
    nextAttemptTime: str | None
    deliveredTime: str | None
    createTime: str
    updateTime: str


class DeliveryPage(BaseModel):
    items: list[DeliverySummary]
    nextCursor: str | None


class Redeliver(BaseModel):
    """Which deliveries to send once more: by task, or every one matching a filter."""

    model_config = ConfigDict(extra="forbid", strict=True)

    taskIds: list[str] | None = Field(None, min_length=1, max_length=100)
    state: Literal["exhausted", "gone"] | None = Field(
        None, description="Instead of taskIds: the dead-letter deliveries in this state."
    )
    tokenId: str | None = Field(None, max_length=64, description="With `state`: only these.")
    limit: int = Field(20, ge=1, le=100, description="With `state`: at most this many.")


class RedeliveryOutcome(BaseModel):
    taskId: str
    outcome: Literal["delivered", "failed", "refused"]
    state: DeliveryState | None = None
    httpStatus: int | None = None
    error: str | None = None


class RedeliveryReport(BaseModel):
    items: list[RedeliveryOutcome]

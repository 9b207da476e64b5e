"""Wire models of callback deliveries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Attempt(BaseModel):
    number: int
    manual: bool
    time: str
    durationMs: int
    httpStatus: int | None
    error: str | None
    response: str | None


class Delivery(BaseModel):
    id: str
    url: str
    state: Literal["pending", "delivered", "exhausted", "gone"]
    attemptCount: int
    lastStatus: int | None
    lastError: str | None
    nextAttemptTime: str | None
    deliveredTime: str | None
    createTime: str


class Deliveries(BaseModel):
    """A task's callback delivery (its ``id`` is the ``webhook-id``) and every attempt."""

    delivery: Delivery | None
    attempts: list[Attempt]

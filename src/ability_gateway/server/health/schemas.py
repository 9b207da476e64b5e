"""The readiness answer: ready (the database and the media storage answer) and each
executor's circuit state, reported without deciding readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ExecutorHealth(BaseModel):
    id: str = Field(description="The executor (a Coze account) as configured.")
    state: Literal["closed", "open", "half_open"] = Field(
        description="Its circuit breaker on this node: `open` takes no new tasks for now."
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    executors: list[ExecutorHealth] = Field(
        description="Each executor's breaker. An open one does not make the node unready: an "
        "upstream outage would take every node out of the load balancer at once."
    )

"""The phases of a task's job, typed: what its payload holds between two steps.

    Start ──async submit──▶ CozePoll ──run ended──▶ (output)
      └──sync run──────────────────────────────────▶ (output) ──external job──▶ External

A payload is stored as JSON on the job row (``{"phase": "coze_poll", "executeId": …}``,
camelCase as it always was, so jobs written by an earlier version read the same); a payload
without a ``phase`` is a job that has not started. ``read`` checks a payload against the
union (discriminated by ``phase``); a payload it refuses is a bug, and the runner counts it
as the step crashing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Phase(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    def payload(self) -> dict[str, Any]:
        """The job payload that stores this phase."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Start(_Phase):
    """Nothing has been asked of Coze yet."""

    phase: Literal["start"] = "start"


class CozePoll(_Phase):
    """An asynchronous Coze run was submitted: its run history is polled, ``delay`` apart."""

    phase: Literal["coze_poll"] = "coze_poll"
    execute_id: str = Field(alias="executeId")
    debug_url: str | None = Field(None, alias="debugUrl")
    delay: float


class External(_Phase):
    """The workflow started a generation job elsewhere: a notice or its query ends it."""

    phase: Literal["external"] = "external"
    external_id: str = Field(alias="externalId")
    execute_id: str | None = Field(None, alias="executeId")
    debug_url: str | None = Field(None, alias="debugUrl")
    delay: float = 0.0


Phase = Annotated[Start | CozePoll | External, Field(discriminator="phase")]
_PHASE: TypeAdapter[Start | CozePoll | External] = TypeAdapter(Phase)
START = Start()


def read(payload: dict[str, Any]) -> Start | CozePoll | External:
    """The phase a job payload holds (raises ``pydantic.ValidationError`` on a bad one)."""
    if payload.get("phase", "start") == "start":
        return START
    return _PHASE.validate_python(payload)

"""Wire models of the catalog (spec §3.1)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class InputField(BaseModel):
    name: str
    type: str
    required: bool
    description: str


class InputSchema(BaseModel):
    fields: list[InputField]


class Ability(BaseModel):
    id: str
    displayName: str
    description: str
    provider: str
    capabilityKey: str
    status: str
    inputSchema: InputSchema
    # Beyond spec §3.1: what a caller needs to pick how to call and wait.
    mode: Literal["sync", "async"] = Field(
        description="`sync`: an invoke answers with the result (200) within its wait; "
        "`async`: a generation job, the invoke answers 202 and the task ends later."
    )
    timeoutSeconds: float = Field(description="The task's deadline: past it, it ends `timeout`.")


class AbilityList(BaseModel):
    items: list[Ability]

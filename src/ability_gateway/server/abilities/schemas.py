"""Wire models of the catalog (spec §3.1)."""

from __future__ import annotations

from pydantic import BaseModel


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


class AbilityList(BaseModel):
    items: list[Ability]

"""The catalog of abilities, loaded from YAML (the shipped file or ``GATEWAY_CATALOG_FILE``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ability_gateway.server.abilities.schemas import Ability, InputField, InputSchema

# Every ability runs on Coze today (the catalog admits no other provider).
DEFAULT_PROVIDER: Literal["coze"] = "coze"


class InputSpec(BaseModel):
    """One input of an ability: its public shape plus the gateway's extra checks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    type: Literal["string", "number", "boolean", "object", "array"]
    required: bool = False
    description: str = ""
    format: Literal["url"] | None = None
    enum: list[Any] | None = None
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = Field(None, alias="exclusiveMinimum")


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["text", "json", "media", "external_job"]
    name: str | None = None


class ExternalJobSpec(BaseModel):
    """How the gateway learns that an external generation job finished.

    ``notify``: the job's service posts a signed notice to
    ``/api/provider_callbacks/coze/{externalId}``. ``queryWorkflowId``: a workflow that,
    given ``{"id": externalId}``, answers the job's status; polled with backoff from
    ``pollSeconds`` up to ``maxPollSeconds``. Either or both.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    notify: bool = True
    query_workflow_id: str | None = Field(None, alias="queryWorkflowId", pattern=r"^[0-9]{1,20}$")
    query_input: str = Field("id", alias="queryInput")
    poll_seconds: float = Field(3.0, alias="pollSeconds", gt=0)
    max_poll_seconds: float = Field(15.0, alias="maxPollSeconds", gt=0)

    @model_validator(mode="after")
    def _some_way_to_finish(self) -> ExternalJobSpec:
        if not self.notify and self.query_workflow_id is None:
            raise ValueError("externalJob needs notify or a queryWorkflowId")
        return self


class CacheSpec(BaseModel):
    """Reuse a succeeded result for the same inputs (deterministic workflows only)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ttl_seconds: float = Field(alias="ttlSeconds", gt=0)


class AbilityDefinition(BaseModel):
    """A catalog entry: what the public sees and what the gateway needs to run it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    display_name: str = Field(alias="displayName")
    description: str = ""
    provider: Literal["coze"] = DEFAULT_PROVIDER
    capability_key: str = Field(alias="capabilityKey")
    status: Literal["active", "disabled", "deprecated"] = "active"
    workflow_id: str = Field(alias="workflowId", pattern=r"^[0-9]{1,20}$")
    mode: Literal["sync", "external_job"] = "sync"
    image_field: str | None = Field(None, alias="imageField")
    output: OutputSpec
    timeout_seconds: float = Field(95.0, alias="timeoutSeconds", gt=0)
    # Run with Coze's is_async + run-history polling when the executor's plan allows it.
    coze_async: bool = Field(False, alias="cozeAsync")
    external_job: ExternalJobSpec | None = Field(None, alias="externalJob")
    retry_after_seconds: int = Field(2, alias="retryAfterSeconds", ge=1)
    cache: CacheSpec | None = None
    inputs: list[InputSpec]

    @model_validator(mode="after")
    def _image_field_is_an_input(self) -> AbilityDefinition:
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"ability {self.id}: duplicate input names")
        if self.image_field is not None and self.image_field not in names:
            raise ValueError(f"ability {self.id}: imageField {self.image_field!r} is not an input")
        if self.mode == "external_job" and self.external_job is None:
            raise ValueError(f"ability {self.id}: mode external_job needs an externalJob section")
        return self

    def input(self, name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def public(self) -> Ability:
        return Ability(
            id=self.id,
            displayName=self.display_name,
            description=self.description,
            provider=self.provider,
            capabilityKey=self.capability_key,
            status=self.status,
            mode="sync" if self.mode == "sync" else "async",
            timeoutSeconds=self.timeout_seconds,
            inputSchema=InputSchema(
                fields=[
                    InputField(
                        name=s.name, type=s.type, required=s.required, description=s.description
                    )
                    for s in self.inputs
                ]
            ),
        )


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    abilities: list[AbilityDefinition]


class Catalog:
    """The loaded abilities, by id, in file order."""

    def __init__(self, abilities: list[AbilityDefinition]) -> None:
        self._by_id: dict[str, AbilityDefinition] = {}
        for ability in abilities:
            if ability.id in self._by_id:
                raise ValueError(f"duplicate ability id {ability.id!r}")
            self._by_id[ability.id] = ability
        self._public = {a.id: a.public().model_dump() for a in abilities}

    def get(self, ability_id: str) -> AbilityDefinition | None:
        return self._by_id.get(ability_id)

    def all(self) -> list[AbilityDefinition]:
        return list(self._by_id.values())

    def public_view(self, ability_id: str) -> dict[str, Any]:
        """The spec §3.1 rendering, computed once at load."""
        return self._public[ability_id]

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        if path is None:
            text = (resources.files("ability_gateway.server") / "catalog.yaml").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        data = yaml.safe_load(text)
        return cls(CatalogFile.model_validate(data).abilities)

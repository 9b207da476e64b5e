"""What a simulated workflow is: its start-node parameters, how a run's ``parameters`` bind to them.

This module owns the model every workflow shares: :class:`Param` (one start-node input; names are
case-sensitive), :class:`Workflow` (id, key, title, parameters and behaviour) and its
:meth:`~Workflow.bind`, which validates and coerces a run's ``parameters`` the way Coze does (a
missing required one is 4000 "Missing required parameters: 'x'", a scalar is converted to the
declared type, an object or array is refused) and derives the :class:`Inputs` digest: SHA-256 of
the workflow id and the canonical (coerced, key-sorted) parameters, from which every output is
derived. It also owns what a behaviour gets and gives: the :class:`RunContext` it may use, the
:class:`Outcome` it returns, and the two ways a run goes wrong, :class:`BadParameter` (Coze code
4000, before the workflow starts) and :class:`WorkflowFailure` (720701013, a node failed).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ability_gateway.simulator.jobs import JobRegistry
from ability_gateway.simulator.protocol import dumps
from ability_gateway.simulator.runs import Usage

__all__ = [
    "BadParameter",
    "Behaviour",
    "Inputs",
    "Outcome",
    "Param",
    "RunContext",
    "Workflow",
    "WorkflowFailure",
]


class BadParameter(Exception):
    """The run's parameters are unusable before the workflow starts: Coze code 4000."""


class WorkflowFailure(Exception):
    """The workflow started and a node failed: Coze code 720701013 with this message."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"Workflow execution failure: {cause}")
        self.message = f"Workflow execution failure: {cause}"


class RunContext(Protocol):
    """What a running workflow may use from the simulator around it."""

    @property
    def jobs(self) -> JobRegistry: ...

    @property
    def base_url(self) -> str:
        """The simulator's base URL for this run: ``public_url`` or the request's origin."""
        ...

    async def image_size(self, url: str) -> tuple[int, int]:
        """The source image's size; raises :class:`WorkflowFailure` when it cannot be read."""
        ...

    def file_url(self, width: int, height: int, name: str) -> str:
        """The absolute URL of a generated image served by the simulator."""
        ...


@dataclass(frozen=True, slots=True)
class Param:
    """One start-node input."""

    name: str
    kind: Literal["string", "number"]
    required: bool = True


@dataclass(frozen=True, slots=True)
class Inputs:
    """A run's validated parameters plus the digest every output is derived from."""

    workflow_id: str
    values: Mapping[str, str | float]
    digest: str

    def text(self, name: str) -> str:
        value = self.values.get(name, "")
        return value if isinstance(value, str) else str(value)

    def integer(self, name: str) -> int:
        """A number parameter as whole pixels (Coze numbers may arrive as 512.0)."""
        value = self.values[name]
        return round(value) if isinstance(value, float) else int(value)

    def rng(self) -> random.Random:
        """A generator seeded by the digest: the same inputs draw the same choices."""
        return random.Random(int(self.digest[:16], 16))


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful run: the End node's variables and the token usage to report."""

    end_vars: dict[str, Any]
    usage: Usage


Behaviour = Callable[[Inputs, RunContext], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Workflow:
    """A published workflow: id, start-node parameters and behaviour."""

    workflow_id: str
    key: str
    title: str
    params: tuple[Param, ...]
    behaviour: Behaviour

    def bind(self, raw: Mapping[str, Any]) -> Inputs:
        """Validate and coerce ``raw`` (the run's ``parameters``); unknown keys are ignored.

        Raises :class:`BadParameter` with Coze's wording for the first missing required parameter
        or the first value of the wrong type.
        """
        values: dict[str, str | float] = {}
        for param in self.params:
            value = raw.get(param.name)
            if value is None:
                if param.required:
                    raise BadParameter(f"Missing required parameters: '{param.name}'")
                continue
            values[param.name] = _coerce(param, value)
        canonical = dumps(
            {"workflow_id": self.workflow_id, "parameters": dict(sorted(values.items()))}
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return Inputs(workflow_id=self.workflow_id, values=values, digest=digest)

    async def run(self, inputs: Inputs, context: RunContext) -> Outcome:
        return await self.behaviour(inputs, context)


def _coerce(param: Param, value: Any) -> str | float:
    """Coze converts scalars to the declared type; objects and arrays are rejected."""
    if param.kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
    else:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is not None and math.isfinite(number):
            return number
    raise BadParameter(
        f"Invalid parameter '{param.name}': expected a {param.kind}, got {dumps(value)[:100]}"
    )

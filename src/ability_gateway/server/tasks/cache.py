"""The result cache: a succeeded result reused for the same ability, workflow and inputs.

A hit is still a task of its own (its own id, call log row and callback), answered with
``X-Cache: HIT``. Identical requests arriving while the first is still running wait for it
and reuse its result (in-process: one upstream call per node).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from ability_gateway.server.abilities.catalog import AbilityDefinition
from ability_gateway.server.db import Database
from ability_gateway.server.tasks import repository


def cache_key(ability: AbilityDefinition, parameters: dict[str, Any]) -> str:
    canonical = orjson.dumps(
        {"ability": ability.id, "workflow": ability.workflow_id, "parameters": parameters},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached result and who it was made for."""

    payload: dict[str, Any]
    token_id: str | None  # the token of the task that produced it (None once it is gone)

    @property
    def executor_id(self) -> str | None:
        value = (self.payload.get("metadata") or {}).get("executorId")
        return str(value) if value else None


async def lookup(db: Database, key: str) -> Hit | None:
    async with db.read() as conn:
        found = await repository.find_cached(conn, key)
    return None if found is None else Hit(*found)


# What identifies the upstream run that made a result: another token's hit gets none of it.
UPSTREAM_METADATA = ("executeId", "debugUrl", "usage", "executorId", "warnings")


def reuse(hit: Hit, task_id: str, client: dict[str, Any] | None, token_id: str) -> dict[str, Any]:
    """A cached result as the result of a new task: its own id and the caller's metadata.

    Served to the token whose task made it, it keeps that run's identifiers (the
    ``executeId``, ``debugUrl``, ``usage`` and raw answer are its own); served to another
    token, only the result itself.
    """
    own = hit.token_id == token_id
    metadata = {
        k: v
        for k, v in (hit.payload.get("metadata") or {}).items()
        if k != "client" and (own or k not in UPSTREAM_METADATA)
    }
    metadata.update(taskId=task_id, cached=True)
    if client is not None:
        metadata["client"] = client
    return {**hit.payload, "metadata": metadata, "raw": hit.payload.get("raw", {}) if own else {}}


class Flights:
    """Identical requests in flight on this node: the first runs, the others wait for it."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[None]] = {}

    def leader(self, key: str) -> asyncio.Future[None] | None:
        """None when this request is the one to run (then ``land`` must follow), else the
        flight to wait for."""
        running = self._running.get(key)
        if running is not None and not running.done():
            return running
        self._running[key] = asyncio.get_running_loop().create_future()
        return None

    def land(self, key: str) -> None:
        flight = self._running.pop(key, None)
        if flight is not None and not flight.done():
            flight.set_result(None)


__all__ = ["Flights", "Hit", "cache_key", "lookup", "reuse"]

"""What the task page shows, built from the admin API's task story (``admin/service.py``):
its outputs as the invoke answer has them, and one timeline in time order."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ability_gateway.server.abilities.catalog import Catalog


def result_of(catalog: Catalog, story: dict[str, Any]) -> dict[str, Any]:
    task = story["task"]
    ability = catalog.get(task["abilityId"])
    payload = task["resultPayload"] or {}
    return {
        "status": task["status"],
        "texts": payload.get("texts", []),
        "images": payload.get("images", []),
        "videos": payload.get("videos", []),
        "provider": ability.provider if ability else "coze",
    }


def timeline(story: dict[str, Any]) -> list[dict[str, Any]]:
    """Accepted, each Coze call, each stored medium, the end and each callback attempt, by
    time (events of one second keep that order)."""
    task = story["task"]
    events: list[tuple[str, int, dict[str, Any]]] = [(task["createTime"], 0, {"kind": "accepted"})]
    for log in story["callLogs"]:
        events.append((log["time"], 1, {"kind": "call", **log}))
    for medium in story["media"]:
        order = 0 if medium["role"] == "input" else 2  # an upload comes before the call
        events.append((medium["time"], order, {"kind": "media", **medium}))
    if task["finishTime"]:
        events.append((task["finishTime"], 3, {"kind": "ended", "status": task["status"]}))
    for attempt in story["callback"]["attempts"]:
        events.append((attempt["time"], 4, {"kind": "callback", **attempt}))
    events.sort(key=lambda e: (e[0], e[1]))
    return [{"time": when, **event} for when, _, event in events]


def local_ms(value: str, timezone: str) -> int | None:
    """A ``datetime-local`` form value (``2026-12-03T09:30``) in ``timezone``, as epoch ms;
    None when empty or not such a value (the filter is then not applied)."""
    try:
        moment = datetime.fromisoformat(value.strip()[:19])
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return int(moment.timestamp() * 1000)

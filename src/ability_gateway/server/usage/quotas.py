"""Per-token quotas: invocations a day (in all, and per ability) and stored media bytes.

A day is a calendar day in ``GATEWAY_QUOTA_TIMEZONE`` (UTC by default): the window starts at
local midnight, and a refusal's ``Retry-After`` is the time to the next one. The window is
taken from this process's clock (nodes are expected to keep NTP time; a skew of a few
seconds moves the reset by as much).

What counts, and where (``tasks/invoke.py``)::

    invoke ─ checks (4xx: not counted) ─ idempotent replay? (not counted, answered as before)
           ├ cache hit ─ write():  task + its end        + charge() ─┐ one transaction:
           └ new task ─ accept(): task + job [+ key]     + charge() ─┘ refused → rolled back

:func:`charge` takes one unit of the day's ``*`` counter and, when the ability has a cap of
its own, one of its counter, with a conditional upsert each (``usage/repository.py``); a
refusal raises :class:`QuotaExceeded` (429), which rolls the whole accept back, its other
unit included. A token without quotas costs nothing: its quotas come with its
:class:`~ability_gateway.server.auth.service.Principal` and no statement runs.

The media quota caps the bytes of the distinct contents linked to the token
(``media_tokens``); an upload over it is refused (429), an output that would pass it is not
mirrored (the task still succeeds, with a warning and a null ``ossUrl``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ability_gateway.server.auth.limits import RateLimited
from ability_gateway.server.auth.service import Principal
from ability_gateway.server.db import Database
from ability_gateway.server.usage import repository

ALL_ABILITIES = "*"


class QuotaExceeded(RateLimited):
    """A quota of the token is used up (429): ``quota`` says which one."""

    default_message = "A quota of this token is used up"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Window:
    """One quota day: [start_ms, end_ms) and its start as a local time."""

    start_ms: int
    end_ms: int
    resets_at: str  # the end, ISO 8601 with the zone's offset


def day_window(now_ms: int, timezone: str) -> Window:
    tz = zone(timezone)
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    start = datetime(local.year, local.month, local.day, tzinfo=tz)
    end = datetime.combine(start.date() + timedelta(days=1), start.timetz())
    return Window(
        int(start.timestamp() * 1000),
        int(end.timestamp() * 1000),
        end.isoformat(timespec="seconds"),
    )


def retry_after(window: Window, now_ms: int) -> str:
    return str(max(1, math.ceil((window.end_ms - now_ms) / 1000)))


def now_ms() -> int:
    return int(time.time() * 1000)


def daily_cap(principal: Principal, ability_id: str) -> int | None:
    by_ability = principal.quota_daily_by_ability
    return None if not by_ability else by_ability.get(ability_id)


def _caps(principal: Principal, ability_id: str) -> list[tuple[str, int, str | None]]:
    """The daily caps an invocation of ``ability_id`` counts against: (counter scope, cap,
    the ability when the cap is its own)."""
    caps: list[tuple[str, int, str | None]] = []
    if principal.quota_daily_invocations is not None:
        caps.append((ALL_ABILITIES, principal.quota_daily_invocations, None))
    own = daily_cap(principal, ability_id)
    if own is not None:
        caps.append((ability_id, own, ability_id))
    return caps


def charge(
    conn: Connection,
    principal: Principal,
    ability_id: str,
    timezone: str,
    at_ms: int | None = None,
) -> None:
    """Count one invocation against the token's daily quotas, in the accept transaction;
    :class:`QuotaExceeded` when one is used up (the caller's transaction then rolls back)."""
    caps = _caps(principal, ability_id)
    if not caps:
        return
    moment = now_ms() if at_ms is None else at_ms
    window = day_window(moment, timezone)
    for scope, cap, own in caps:
        if not repository.take_quota(conn, principal.token_id, scope, window.start_ms, cap):
            raise _refused(window, moment, cap, own)


async def refuse_if_used_up(
    db: Database, principal: Principal, ability_id: str, timezone: str
) -> None:
    """Before work an invocation would waste if :func:`charge` then refused it (storing an
    upload): :class:`QuotaExceeded` at once when a daily quota is already used up. Only a
    read; the charge in the accept transaction still decides."""
    caps = _caps(principal, ability_id)
    if not caps:
        return
    moment = now_ms()
    window = day_window(moment, timezone)
    async with db.read() as conn:
        used = await repository.used_in_window(conn, [principal.token_id], window.start_ms)
    for scope, cap, own in caps:
        if used.get((principal.token_id, scope), 0) >= cap:
            raise _refused(window, moment, cap, own)


def _refused(window: Window, moment: int, cap: int, ability_id: str | None) -> QuotaExceeded:
    what = f"{cap} invocations" if ability_id is None else f"{cap} invocations of {ability_id!r}"
    extra: dict[str, Any] = {
        "quota": "dailyInvocations" if ability_id is None else "dailyInvocationsByAbility",
        "limit": cap,
        "resetsAt": window.resets_at,
    }
    if ability_id is not None:
        extra["abilityId"] = ability_id
    return QuotaExceeded(
        f"Daily quota of {what} for this token is used up (resets {window.resets_at})",
        extra=extra,
        headers={"Retry-After": retry_after(window, moment)},
    )


def media_refused(stored: int, quota: int, size: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"Media quota of {quota} bytes for this token is used up "
        f"({stored} stored, this file needs {size} more)",
        extra={"quota": "mediaBytes", "limit": quota, "used": stored},
    )


__all__ = [
    "ALL_ABILITIES",
    "QuotaExceeded",
    "Window",
    "charge",
    "day_window",
    "media_refused",
    "zone",
]

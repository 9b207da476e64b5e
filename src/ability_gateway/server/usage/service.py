"""What the usage routes answer, and setting a token's quotas.

Usage is read from the hourly rollups (``models/usage_rollup.py``), never from the tasks:

* **Range**: ``from``/``to`` are ISO 8601 times with a zone (``2026-12-02T00:00:00+08:00``,
  ``…Z``); default the last 24 hours; at most :data:`MAX_RANGE_DAYS` days (hours grouped:
  :data:`MAX_HOURLY_DAYS`). An hour row is in the range when its hour overlaps
  [from, to): ``from`` is rounded down to its hour.
* **Grouping**: ``groupBy`` is a comma-separated subset of ``token``, ``ability`` and one of
  ``day`` / ``hour``; nothing: one total row. Days are calendar days in
  ``GATEWAY_QUOTA_TIMEZONE``: each UTC hour row belongs to the local day its start falls in.
  For a zone with a whole-hour offset that is exact; in a half-hour zone (``Asia/Kolkata``)
  the hour that straddles local midnight counts in the day it starts in. Offset changes
  (summer time) inside the range are followed.
* **Days from compacted rows**: a local day wholly in the range (or today, when the range
  runs to now) is read from its ``usage_day_rollups`` rows, compacted from its hours the
  first time an answer needs it (at most :data:`MAX_COMPACTIONS` days per answer, newest
  first; today's as its hours end); the hours of partial days, and every hour when grouped
  by hour, from the hourly rows. A GET may therefore write (a few short transactions, once
  per day). The rules that keep the sum exact are in ``usage/repository.py``.
* **Percentiles**: ``p50Ms``/``p95Ms`` are estimated from the summed duration buckets by
  linear interpolation inside the bucket that holds the percentile (as Prometheus'
  ``histogram_quantile``), so they are exact to within that bucket's width; a percentile in
  the last, open bucket (over 120 s) is reported as its lower bound, 120000.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.engine import RowMapping

from ability_gateway.server.auth.service import Principal, TokenCache
from ability_gateway.server.db import Database
from ability_gateway.server.errors import BadRequest, FieldError
from ability_gateway.server.models.usage_rollup import BUCKET_COLUMNS, DURATION_BUCKETS_MS
from ability_gateway.server.usage import repository
from ability_gateway.server.usage.quotas import ALL_ABILITIES, day_window, now_ms, zone
from ability_gateway.server.usage.repository import (
    COMPACT_MARGIN_MS,
    DAY_MS,
    HOUR_MS,
    Period,
    UsageQuery,
)

MAX_RANGE_DAYS = 400
MAX_HOURLY_DAYS = 31
MAX_ROWS = 10_000
MAX_COMPACTIONS = 62  # days compacted for one answer (each a short transaction)
DEFAULT_RANGE_MS = DAY_MS
GROUPINGS = ("token", "ability", "day", "hour")
_EPOCH = date(1970, 1, 1)


def _bad(field: str, problem: str) -> BadRequest:
    return BadRequest("The request is invalid", [FieldError(field, problem)])


def parse_time(field: str, value: str) -> int:
    """An ISO 8601 time with its zone as epoch ms; 400 naming ``field`` otherwise."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(field, "must be an ISO 8601 time, e.g. 2026-12-02T00:00:00+08:00") from exc
    if moment.tzinfo is None:
        raise _bad(field, "must say its time zone (Z or +08:00)")
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError) as exc:
        raise _bad(field, "is out of range") from exc


@dataclass(frozen=True, slots=True)
class Grouping:
    token: bool
    ability: bool
    period: Period | None

    @property
    def names(self) -> list[str]:
        names = ["token"] if self.token else []
        names += ["ability"] if self.ability else []
        return names + ([self.period] if self.period else [])


def parse_group_by(value: str | None) -> Grouping:
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    unknown = [p for p in parts if p not in GROUPINGS]
    if unknown:
        raise _bad("groupBy", f"unknown grouping {unknown[0][:40]!r} (token, ability, day, hour)")
    if "day" in parts and "hour" in parts:
        raise _bad("groupBy", "day and hour cannot be combined")
    period: Period | None = "day" if "day" in parts else "hour" if "hour" in parts else None
    return Grouping("token" in parts, "ability" in parts, period)


@dataclass(frozen=True, slots=True)
class Range:
    since_ms: int
    until_ms: int


def parse_range(since: str | None, until: str | None, grouping: Grouping, now: int) -> Range:
    until_ms = now if until is None else parse_time("to", until)
    since_ms = until_ms - DEFAULT_RANGE_MS if since is None else parse_time("from", since)
    if since_ms >= until_ms:
        raise _bad("from", "must be before to")
    longest = MAX_HOURLY_DAYS if grouping.period == "hour" else MAX_RANGE_DAYS
    if until_ms - since_ms > longest * DAY_MS:
        what = "grouped by hour, " if grouping.period == "hour" else ""
        raise _bad("to", f"{what}the range spans at most {longest} days")
    return Range(since_ms, until_ms)


# --- time zones -------------------------------------------------------------------------


def _offset_ms(ms: int, timezone: str) -> int:
    offset = datetime.fromtimestamp(ms / 1000, zone(timezone)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def day_offsets(since_ms: int, until_ms: int, timezone: str) -> tuple[tuple[int, int], ...]:
    """The zone's offset from each hour on where it changes, in [since_ms, until_ms):
    ``((since_ms, offset), (first hour of the next offset, offset), …)``."""
    current = _offset_ms(since_ms, timezone)
    offsets = [(since_ms, current)]
    day_start = since_ms
    while day_start < until_ms:
        day_end = min(day_start + DAY_MS, until_ms)
        if _offset_ms(day_end, timezone) != current:
            hour = (day_start // HOUR_MS + 1) * HOUR_MS  # the change is after day_start
            while hour <= day_end and _offset_ms(hour, timezone) == current:
                hour += HOUR_MS
            current = _offset_ms(hour, timezone)
            offsets.append((hour, current))
            day_start = hour
            continue
        day_start = day_end
    return tuple(offsets)


def _format(ms: int, timezone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, zone(timezone)).isoformat(timespec="seconds")


def _day_start(day_index: int, timezone: str) -> str:
    day = _EPOCH + timedelta(days=int(day_index))
    return datetime(day.year, day.month, day.day, tzinfo=zone(timezone)).isoformat()


# --- planning: compacted days and hours -----------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalDay:
    day: int  # days since 1970-01-01 in the zone's calendar
    start_ms: int  # its local midnight
    end_ms: int  # the next one


def local_days(since_ms: int, until_ms: int, timezone: str) -> list[LocalDay]:
    """The local days [since_ms, until_ms) touches."""
    tz = zone(timezone)
    current = datetime.fromtimestamp(since_ms / 1000, tz).date()
    last = datetime.fromtimestamp((until_ms - 1) / 1000, tz).date()
    days = []
    start = datetime(current.year, current.month, current.day, tzinfo=tz)
    while current <= last:
        following = current + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=tz)
        days.append(
            LocalDay(
                (current - _EPOCH).days, int(start.timestamp() * 1000), int(end.timestamp() * 1000)
            )
        )
        current, start = following, end
    return days


def _without(span: tuple[int, int], holes: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``span`` minus the (sorted, disjoint) ``holes``."""
    start, end = span
    left: list[tuple[int, int]] = []
    for hole_start, hole_end in holes:
        if hole_start > start:
            left.append((start, min(hole_start, end)))
        start = max(start, hole_end)
    if start < end:
        left.append((start, end))
    return tuple((a, b) for a, b in left if a < b)


async def plan(
    db: Database,
    timezone: str,
    span: Range,
    grouping: Grouping,
    now: int,
    *,
    token_id: str | None,
    ability_id: str | None,
) -> UsageQuery:
    """What the answer sums: the local days wholly in the range (or ending now) from their
    compacted rows, compacting what is missing first (at most :data:`MAX_COMPACTIONS` days, the
    newest first; the rest is summed from hours), and every other hour from the hourly rows.

    Hours are those that overlap [from, to): ``from`` is rounded down to its hour."""
    since = span.since_ms // HOUR_MS * HOUR_MS
    until = span.until_ms
    base = UsageQuery(
        hours=((since, until),),
        token_id=token_id,
        ability_id=ability_id,
        by_token=grouping.token,
        by_ability=grouping.ability,
        period=grouping.period,
        zone=timezone,
        day_offsets=day_offsets(since, until, timezone),
        limit=MAX_ROWS,
    )
    if grouping.period == "hour":
        return base
    # A day's rows may be read if they can hold no hour outside the range: the day is inside
    # it, or it is today and the range runs to now (a mark never passes now − the margin).
    usable = [
        d
        for d in local_days(since, until, timezone)
        if d.start_ms >= since and (d.end_ms <= until or until >= now)
    ]
    if not usable:
        return base
    async with db.read() as conn:
        marks = await repository.marks_of(conn, timezone, [d.day for d in usable])
    ripe = (now - COMPACT_MARGIN_MS) // HOUR_MS * HOUR_MS
    due = [d for d in usable if marks.get(d.day, d.start_ms) < min(d.end_ms, ripe)]
    if due:
        for d in due[::-1][:MAX_COMPACTIONS]:
            await db.run_write(
                partial(
                    repository.compact_day,
                    zone=timezone,
                    day=d.day,
                    start_ms=d.start_ms,
                    end_ms=d.end_ms,
                )
            )
        async with db.read() as conn:
            marks = await repository.marks_of(conn, timezone, [d.day for d in usable])
    compacted = [d for d in usable if d.day in marks]
    # Each compacted day: its rows, and its hours past the mark (read with the mark's guard,
    # since the mark may move on before the answer is read); every other hour as it is.
    covered = [(d.start_ms, min(d.end_ms, until)) for d in compacted]
    tails = [(marks[d.day], end) for d, (_, end) in zip(compacted, covered, strict=True)]
    return replace(
        base,
        hours=_without((since, until), covered),
        guarded_hours=tuple((a, b) for a, b in tails if a < b),
        days=tuple(d.day for d in compacted),
    )


# --- percentiles ------------------------------------------------------------------------


def percentile(buckets: list[int], q: float) -> int | None:
    """The ``q`` quantile of durations counted in the fixed buckets, by linear interpolation
    inside the bucket that holds it; None without any duration."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(DURATION_BUCKETS_MS):  # the open bucket: its lower bound
                return DURATION_BUCKETS_MS[-1]
            lower = 0 if index == 0 else DURATION_BUCKETS_MS[index - 1]
            upper = DURATION_BUCKETS_MS[index]
            return round(lower + (upper - lower) * (rank - seen) / count)
        seen += count
    return DURATION_BUCKETS_MS[-1]


def _item(row: RowMapping, grouping: Grouping, timezone: str) -> dict[str, Any]:
    n = {name: int(row[name] or 0) for name in repository.COUNTERS}
    buckets = [n[name] for name in BUCKET_COLUMNS]
    timed = sum(buckets)
    period = None
    if grouping.period == "hour":
        period = _format(int(row["period"]), timezone)
    elif grouping.period == "day":
        period = _day_start(int(row["period"]), timezone)
    return {
        "period": period,
        "tokenId": row["token_id"] if grouping.token else None,
        "abilityId": row["ability_id"] if grouping.ability else None,
        "calls": n["calls"],
        "succeeded": n["succeeded"],
        "failed": n["failed"],
        "timeout": n["timeout"],
        "canceled": n["canceled"],
        "cacheHits": n["cache_hits"],
        "p50Ms": percentile(buckets, 0.5),
        "p95Ms": percentile(buckets, 0.95),
        "meanMs": round(n["duration_sum_ms"] / timed) if timed else None,
        "cozeTokens": {
            "input": n["input_tokens"],
            "output": n["output_tokens"],
            "total": n["total_tokens"],
        },
    }


# --- the answers ------------------------------------------------------------------------


async def usage(
    db: Database,
    timezone: str,
    *,
    since: str | None,
    until: str | None,
    group_by: str | None,
    token_id: str | None = None,
    ability_id: str | None = None,
    self_only: bool = False,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """The usage answer: rows of the rollups in the range, grouped, and the quotas of the
    tokens concerned (``self_only``: ``token_id`` is the caller, whose quotas are shown
    even when it has none)."""
    now = now_ms() if at_ms is None else at_ms
    grouping = parse_group_by(group_by)
    span = parse_range(since, until, grouping, now)
    query = await plan(
        db,
        timezone,
        span,
        grouping,
        now,
        token_id=token_id,
        ability_id=ability_id,
    )
    async with db.read() as conn:
        rows = await repository.rollup_rows(conn, query)
        quota_rows = await repository.quotas_of(conn, token_id, only_set=not self_only)
        window = day_window(now, timezone)
        ids = [str(row["id"]) for row in quota_rows]
        used = await repository.used_in_window(conn, ids, window.start_ms)
        with_media = [str(r["id"]) for r in quota_rows if r["quota_media_bytes"] is not None]
        media_used = await repository.media_bytes_of(conn, with_media if not self_only else ids)
    if self_only:
        media_used = {token: media_used.get(token, 0) for token in ids}
    return {
        "from": _format(span.since_ms, timezone),
        "to": _format(span.until_ms, timezone),
        "timezone": timezone,
        "groupBy": grouping.names,
        "items": [_item(row, grouping, timezone) for row in rows[:MAX_ROWS]],
        "truncated": len(rows) > MAX_ROWS,
        "quotas": [
            _quota_view(row, used, media_used, window.start_ms, window.resets_at, timezone)
            for row in quota_rows
        ],
    }


def _quota_view(
    row: RowMapping,
    used: dict[tuple[str, str], int],
    media_used: dict[str, int],
    window_start_ms: int,
    resets_at: str,
    timezone: str,
) -> dict[str, Any]:
    token_id = str(row["id"])
    daily = row["quota_daily_invocations"]
    by_ability = row["quota_daily_by_ability"] or {}
    media_quota = row["quota_media_bytes"]
    return {
        "tokenId": token_id,
        "dayStart": _format(window_start_ms, timezone),
        "resetsAt": resets_at,
        "dailyInvocations": None
        if daily is None
        else {"limit": daily, "used": used.get((token_id, ALL_ABILITIES), 0)},
        "dailyInvocationsByAbility": {
            ability: {"limit": int(cap), "used": used.get((token_id, ability), 0)}
            for ability, cap in sorted(by_ability.items())
        },
        # Without a media quota, a token's own answer still says what it stored.
        "mediaBytes": None
        if media_quota is None and token_id not in media_used
        else {"limit": media_quota, "used": media_used.get(token_id, 0)},
    }


async def own_usage(
    db: Database,
    timezone: str,
    principal: Principal,
    *,
    since: str | None,
    until: str | None,
    group_by: str | None,
    ability_id: str | None = None,
) -> dict[str, Any]:
    """A token's own usage: always only its own rows (token grouping changes nothing)."""
    return await usage(
        db,
        timezone,
        since=since,
        until=until,
        group_by=group_by,
        token_id=principal.token_id,
        ability_id=ability_id,
        self_only=True,
    )


# --- setting quotas ---------------------------------------------------------------------

UNSET: Any = ...
MAX_QUOTA = 2**31 - 1
MAX_MEDIA_QUOTA = 2**62


def quota_values(
    daily_invocations: int | None = UNSET,
    daily_by_ability: dict[str, int] | None = UNSET,
    media_bytes: int | None = UNSET,
) -> dict[str, Any]:
    """The token columns for the quotas given (``UNSET``: unchanged, None: removed); 400
    naming the field of a bad value."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    if daily_invocations is not UNSET:
        if daily_invocations is not None and not 0 <= daily_invocations <= MAX_QUOTA:
            errors.append(FieldError("dailyInvocations", f"must be between 0 and {MAX_QUOTA}"))
        values["quota_daily_invocations"] = daily_invocations
    if daily_by_ability is not UNSET:
        for ability, cap in (daily_by_ability or {}).items():
            if not ability or len(ability) > 100 or ability == ALL_ABILITIES:
                errors.append(FieldError("dailyInvocationsByAbility", "has a bad ability id"))
            elif isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_QUOTA:
                field = f"dailyInvocationsByAbility.{ability}"
                errors.append(FieldError(field, f"must be between 0 and {MAX_QUOTA}"))
        values["quota_daily_by_ability"] = dict(daily_by_ability) if daily_by_ability else None
    if media_bytes is not UNSET:
        if media_bytes is not None and not 0 <= media_bytes <= MAX_MEDIA_QUOTA:
            errors.append(FieldError("mediaBytes", f"must be between 0 and {MAX_MEDIA_QUOTA}"))
        values["quota_media_bytes"] = media_bytes
    if errors:
        raise BadRequest("The request is invalid", errors)
    return values


async def set_quotas(
    db: Database,
    token_id: str,
    daily_invocations: int | None = UNSET,
    daily_by_ability: dict[str, int] | None = UNSET,
    media_bytes: int | None = UNSET,
    *,
    cache: TokenCache | None = None,
) -> bool:
    """Set (or with None remove) a token's quotas; arguments left out stay as they are.
    False when there is no such token. Other nodes apply it within
    ``GATEWAY_AUTH_CACHE_SECONDS``; this one at once when its token ``cache`` is given.
    Lowering a daily quota below what was used today refuses from the next invocation on."""
    values = quota_values(daily_invocations, daily_by_ability, media_bytes)
    if not values:
        return True
    changed = await db.run_write(partial(repository.set_quotas, token_id=token_id, values=values))
    if cache is not None:
        cache.clear()
    return changed

"""Every query on usage rollups, quota counters and the quota columns of tokens.

The two writes on the hot path are one statement each, built once here for each dialect
(``INSERT … ON CONFLICT DO UPDATE``, which SQLite and PostgreSQL both have, spelled by
their own SQLAlchemy dialect inserts) and chosen by the connection's dialect at run time:

* :func:`record_task_end` adds an ended task to its hour's rollup row (increments only, no
  read), inside the transaction that ends the task — unless the database was opened with
  ``ROLLUPS_OPTION`` false (``GATEWAY_USAGE_ROLLUPS=false``);
* :func:`take_quota` takes one unit of a quota window, *unless the cap is reached*: the
  update's ``WHERE n < :cap`` leaves the row as it is and ``RETURNING`` gives no row. On
  PostgreSQL the conflicting row is locked until the accept transaction commits, so a
  second node re-checks the cap against the first one's unit; on SQLite the one writer
  serialises them. Two nodes can never both take the last unit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Integer,
    RowMapping,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import (
    media,
    media_tokens,
    quota_counters,
    tokens,
    usage_day_marks,
    usage_day_rollups,
    usage_rollups,
)
from ability_gateway.server.models.usage_rollup import (
    BUCKET_COLUMNS,
    DURATION_BUCKETS_MS,
    OUTCOME_COLUMNS,
    TOKEN_COLUMNS,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Every counter of a rollup row, in the order of the table.
COUNTERS: tuple[str, ...] = (
    *OUTCOME_COLUMNS,
    "duration_sum_ms",
    *BUCKET_COLUMNS,
    *TOKEN_COLUMNS,
)
_KEY = ("hour_start_ms", "token_id", "ability_id")
_ZERO: dict[str, int] = dict.fromkeys(COUNTERS, 0)


# --- rollups: one upsert per task end ---------------------------------------------------


def _rollup_upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(usage_rollups).values(
        # The hour the task ended in, by the database clock (as its finished_at).
        hour_start_ms=(db_now_ms() // HOUR_MS) * HOUR_MS,
        token_id=bindparam("token_id"),
        ability_id=bindparam("ability_id"),
        **{name: bindparam(name) for name in COUNTERS},
    )
    return statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: usage_rollups.c[name] + statement.excluded[name] for name in COUNTERS},
    )


_ROLLUP = {
    "sqlite": _rollup_upsert(sqlite_insert),
    "postgresql": _rollup_upsert(postgresql_insert),
}


def bucket_of(duration_ms: int) -> str:
    """The histogram column a duration falls in: (previous bound, bound]."""
    for bound, column in zip(DURATION_BUCKETS_MS, BUCKET_COLUMNS, strict=False):
        if duration_ms <= bound:
            return column
    return BUCKET_COLUMNS[-1]


def _count(value: Any) -> int:
    """A usage count from Coze's answer, tolerated: a non-negative int, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return max(0, min(int(value), 2**53))


def increments(
    status: str, duration_ms: int | None, payload: Any, *, cache_hit: bool
) -> dict[str, int]:
    """What one ended task adds to its rollup row."""
    values = dict(_ZERO)
    values["calls"] = 1
    if status in ("succeeded", "failed", "timeout", "canceled"):
        values[status] = 1
    if cache_hit:
        values["cache_hits"] = 1
    if duration_ms is not None:
        duration = max(0, int(duration_ms))
        values["duration_sum_ms"] = duration
        values[bucket_of(duration)] = 1
    # Coze's usage of this run; a cache hit made no run (its copied usage is not counted).
    usage = ((payload or {}).get("metadata") or {}).get("usage") if not cache_hit else None
    if isinstance(usage, dict):
        values["input_tokens"] = _count(usage.get("input_count"))
        values["output_tokens"] = _count(usage.get("output_count"))
        values["total_tokens"] = _count(usage.get("token_count"))
    return values


# An execution option of the gateway's connections (``Database(options=…)``): every place a
# task ends writes through terminal.py, on whichever connection it holds.
ROLLUPS_OPTION = "ability_gateway_usage_rollups"


def record_task_end(conn: Connection, row: RowMapping, *, cache_hit: bool = False) -> None:
    """Add a task that has just ended (the row its terminal update returned) to its rollup."""
    if not conn.get_execution_options().get(ROLLUPS_OPTION, True):
        return
    values = increments(
        row["status"], row["duration_ms"], row["result_payload"], cache_hit=cache_hit
    )
    conn.execute(
        _ROLLUP[conn.dialect.name],
        {"token_id": row["token_id"], "ability_id": row["ability_id"], **values},
    )


def insert_rollups(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Add whole rollup rows (tests, benchmarks, imports): increments like task ends. Rows of
    hours that are over make every compacted day stale: those are forgotten."""
    if rows:
        conn.execute(_ROLLUP_ROWS[conn.dialect.name], list(rows))
        forget_days(conn)  # they may be of hours already compacted


def _rollup_rows_upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(usage_rollups)
    return statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: usage_rollups.c[name] + statement.excluded[name] for name in COUNTERS},
    )


_ROLLUP_ROWS = {
    "sqlite": _rollup_rows_upsert(sqlite_insert),
    "postgresql": _rollup_rows_upsert(postgresql_insert),
}


# --- days compacted from hours ---------------------------------------------------------
#
# A query over many days would sum 24 hourly rows per day, token and ability (a 30-day
# answer: ~290k rows for 400 pairs, over a second on SQLite); a day's hours, once over, never
# change, so they are summed once into usage_day_rollups (per zone: days are local).
#
#   usage_day_marks(zone, day, through_ms): the day's hours before through_ms are in its
#   usage_day_rollups rows; through_ms only grows (to the day's end, or the last hour that
#   ended COMPACT_MARGIN_MS ago while it is today).
#
# compact_day() moves a mark forward and adds those hours' sums, in one transaction whose
# first write is the mark's conditional update (WHERE through_ms = the value read): of two
# nodes compacting the same hours, one moves the mark and the other writes nothing. A reading
# statement (rollup_statement) takes each day either from its day rows plus the hours past its
# mark (guarded by the mark as of that statement) or from its hours alone, so an answer is the
# same whatever was compacted when.

COMPACT_MARGIN_MS = 10 * 60_000  # a transaction that began before an hour's end is over
_NOW = select(db_now_ms())
_MARK = select(usage_day_marks.c.through_ms).where(
    usage_day_marks.c.zone == bindparam("zone"), usage_day_marks.c.day == bindparam("day")
)
_MOVE_MARK = (
    update(usage_day_marks)
    .where(
        usage_day_marks.c.zone == bindparam("zone"),
        usage_day_marks.c.day == bindparam("day"),
        usage_day_marks.c.through_ms == bindparam("old"),
    )
    .values(through_ms=bindparam("target"))
)


def _first_mark(dialect_insert: Any) -> Any:
    return (
        dialect_insert(usage_day_marks)
        .values(zone=bindparam("zone"), day=bindparam("day"), through_ms=bindparam("target"))
        .on_conflict_do_nothing()
        .returning(usage_day_marks.c.through_ms)
    )


def _compaction(dialect_insert: Any) -> Any:
    hour = usage_rollups.c.hour_start_ms
    sums = select(
        bindparam("zone", type_=String()),
        bindparam("day", type_=Integer()),
        usage_rollups.c.token_id,
        usage_rollups.c.ability_id,
        *(func.sum(usage_rollups.c[name]) for name in COUNTERS),
    ).where(hour >= bindparam("base"), hour < bindparam("target"))
    sums = sums.group_by(usage_rollups.c.token_id, usage_rollups.c.ability_id)
    statement = dialect_insert(usage_day_rollups).from_select(
        ["zone", "day", "token_id", "ability_id", *COUNTERS], sums
    )
    return statement.on_conflict_do_update(
        index_elements=["zone", "day", "token_id", "ability_id"],
        set_={name: usage_day_rollups.c[name] + statement.excluded[name] for name in COUNTERS},
    )


_FIRST_MARK = {"sqlite": _first_mark(sqlite_insert), "postgresql": _first_mark(postgresql_insert)}
_COMPACT = {"sqlite": _compaction(sqlite_insert), "postgresql": _compaction(postgresql_insert)}


def compact_day(conn: Connection, zone: str, day: int, start_ms: int, end_ms: int) -> None:
    """Add the day's hours that are over and not compacted yet to its day rows."""
    now = int(conn.execute(_NOW).scalar_one())
    target = min(end_ms, (now - COMPACT_MARGIN_MS) // HOUR_MS * HOUR_MS)
    old = conn.execute(_MARK, {"zone": zone, "day": day}).scalar()
    base = start_ms if old is None else int(old)
    if target <= base:
        return
    params = {"zone": zone, "day": day, "old": old, "target": target}
    if old is None:
        moved = conn.execute(_FIRST_MARK[conn.dialect.name], params).first() is not None
    else:
        moved = bool(conn.execute(_MOVE_MARK, params).rowcount)
    if moved:  # else another node compacted these hours just now
        conn.execute(
            _COMPACT[conn.dialect.name], {"zone": zone, "day": day, "base": base, "target": target}
        )


async def marks_of(conn: AsyncConnection, zone: str, days: Sequence[int]) -> dict[int, int]:
    """How far each of ``days`` is compacted: {day: through_ms} (days not begun are left out)."""
    if not days:
        return {}
    mark = usage_day_marks.c
    rows = await conn.execute(
        select(mark.day, mark.through_ms).where(
            mark.zone == zone, mark.day >= min(days), mark.day <= max(days)
        )
    )
    wanted = set(days)
    return {int(r.day): int(r.through_ms) for r in rows if int(r.day) in wanted}


def forget_days(conn: Connection) -> None:
    """Drop every compacted day (hourly rows were added to past hours: a backfill)."""
    conn.execute(delete(usage_day_rollups))
    conn.execute(delete(usage_day_marks))


# --- rollups: reading -------------------------------------------------------------------

Period = Literal["hour", "day"]
Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to sum, from where, grouped how (``usage/service.py`` plans it).

    Sources: hourly rows in ``hours`` as they are; hourly rows in ``guarded_hours`` unless
    their day's mark covers them (the hours after a compacted day's mark); day rows of
    ``days`` in ``zone``. ``day_offsets``: the zone's UTC offset (ms) from each instant on,
    ``[(from_ms, offset_ms), …]``, the first from the range's start.
    """

    hours: Ranges
    token_id: str | None
    ability_id: str | None
    by_token: bool
    by_ability: bool
    period: Period | None
    zone: str = "UTC"
    day_offsets: tuple[tuple[int, int], ...] = ((0, 0),)
    guarded_hours: Ranges = ()
    days: tuple[int, ...] = ()
    limit: int = 10_000


def _local_day(hour: ColumnElement[int], offsets: tuple[tuple[int, int], ...]) -> Any:
    """The local day (days since 1970-01-01 in the zone) an hour row falls in."""
    offset: ColumnElement[Any]
    if len(offsets) == 1:
        offset = literal(offsets[0][1], Integer)
    else:
        whens = [
            (hour < start, previous) for (_, previous), (start, _) in itertools.pairwise(offsets)
        ]
        offset = case(*whens, else_=offsets[-1][1])
    return (hour + offset) // DAY_MS


def _in(column: ColumnElement[int], ranges: Ranges) -> ColumnElement[bool]:
    return or_(*(and_(column >= start, column < end) for start, end in ranges))


def _filtered(statement: Select[Any], table: Any, query: UsageQuery) -> Select[Any]:
    if query.token_id is not None:
        statement = statement.where(table.c.token_id == query.token_id)
    if query.ability_id is not None:
        statement = statement.where(table.c.ability_id == query.ability_id)
    return statement


def _hour_rows(query: UsageQuery, ranges: Ranges, *, guarded: bool) -> Select[Any]:
    hour = usage_rollups.c.hour_start_ms
    day = _local_day(hour, query.day_offsets)
    statement = select(
        hour.label("start_ms"),
        day.label("day"),
        usage_rollups.c.token_id,
        usage_rollups.c.ability_id,
        *(usage_rollups.c[name] for name in COUNTERS),
    ).where(_in(hour, ranges))
    if guarded:
        mark = usage_day_marks.c
        covered = select(literal(1)).where(
            mark.zone == query.zone, mark.day == day, mark.through_ms > hour
        )
        statement = statement.where(~covered.exists())
    return _filtered(statement, usage_rollups, query)


def _day_rows(query: UsageQuery) -> Select[Any]:
    days = usage_day_rollups.c
    statement = select(
        literal(None, BigInteger).label("start_ms"),
        days.day,
        days.token_id,
        days.ability_id,
        *(days[name] for name in COUNTERS),
    ).where(days.zone == query.zone, days.day.in_(query.days))
    return _filtered(statement, usage_day_rollups, query)


def rollup_statement(query: UsageQuery) -> Select[Any]:
    """The query of :func:`rollup_rows` (the benchmark prints its plan)."""
    parts: list[Select[Any]] = []
    if query.hours:
        parts.append(_hour_rows(query, query.hours, guarded=False))
    if query.guarded_hours:
        parts.append(_hour_rows(query, query.guarded_hours, guarded=True))
    if query.days:
        parts.append(_day_rows(query))
    if not parts:  # nothing to read: an empty answer of the right shape
        parts.append(_hour_rows(query, ((0, 0),), guarded=False))
    source = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("source")
    keys: list[ColumnElement[Any]] = []
    if query.period is not None:
        keys.append(source.c.start_ms if query.period == "hour" else source.c.day)
    if query.by_token:
        keys.append(source.c.token_id)
    if query.by_ability:
        keys.append(source.c.ability_id)
    shown = [keys[0].label("period"), *keys[1:]] if query.period else keys
    sums = [func.sum(source.c[name]).label(name) for name in COUNTERS]
    statement = select(*shown, *sums)
    if keys:
        statement = statement.group_by(*keys).order_by(*keys)
    else:
        # One total row; none at all when no row matched (sum() of nothing is NULL).
        statement = statement.having(func.count() > 0)
    return statement.limit(query.limit + 1)


async def rollup_rows(conn: AsyncConnection, query: UsageQuery) -> list[RowMapping]:
    """The summed counters of each group (at most ``limit + 1`` rows), ordered by period,
    token and ability."""
    result = await conn.execute(rollup_statement(query))
    return list(result.mappings().all())


# --- quotas -----------------------------------------------------------------------------


def _take_upsert(dialect_insert: Any) -> Any:
    statement = dialect_insert(quota_counters).values(
        token_id=bindparam("token_id"),
        scope=bindparam("scope"),
        window_start_ms=bindparam("window_start_ms"),
        n=1,
    )
    return statement.on_conflict_do_update(
        index_elements=["token_id", "scope", "window_start_ms"],
        set_={"n": quota_counters.c.n + 1},
        where=quota_counters.c.n < bindparam("cap"),
    ).returning(quota_counters.c.n)


_TAKE = {"sqlite": _take_upsert(sqlite_insert), "postgresql": _take_upsert(postgresql_insert)}


def take_quota(conn: Connection, token_id: str, scope: str, window_start_ms: int, cap: int) -> bool:
    """Take one unit of ``scope``'s quota in this window; False (nothing taken) at the cap."""
    if cap <= 0:
        return False
    result = conn.execute(
        _TAKE[conn.dialect.name],
        {"token_id": token_id, "scope": scope, "window_start_ms": window_start_ms, "cap": cap},
    )
    return result.first() is not None


async def used_in_window(
    conn: AsyncConnection, token_ids: Sequence[str], window_start_ms: int
) -> dict[tuple[str, str], int]:
    """Units taken in one window: {(token id, scope): n}."""
    if not token_ids:
        return {}
    counter = quota_counters.c
    rows = await conn.execute(
        select(counter.token_id, counter.scope, counter.n).where(
            counter.token_id.in_(list(token_ids)), counter.window_start_ms == window_start_ms
        )
    )
    return {(row.token_id, row.scope): int(row.n) for row in rows}


_HAS_QUOTA = or_(
    tokens.c.quota_daily_invocations.is_not(None),
    tokens.c.quota_daily_by_ability.is_not(None),
    tokens.c.quota_media_bytes.is_not(None),
)
_QUOTAS = select(
    tokens.c.id,
    tokens.c.quota_daily_invocations,
    tokens.c.quota_daily_by_ability,
    tokens.c.quota_media_bytes,
)


async def quotas_of(
    conn: AsyncConnection, token_id: str | None, *, only_set: bool = True, limit: int = 1000
) -> list[RowMapping]:
    """The quotas of one token, or of every token that has one (the admin's view)."""
    statement = _QUOTAS
    if token_id is not None:
        statement = statement.where(tokens.c.id == token_id)
    if only_set:
        statement = statement.where(_HAS_QUOTA)
    result = await conn.execute(statement.order_by(tokens.c.id).limit(limit))
    return list(result.mappings().all())


def set_quotas(conn: Connection, token_id: str, values: dict[str, Any]) -> bool:
    result = conn.execute(update(tokens).where(tokens.c.id == token_id).values(**values))
    return bool(result.rowcount)


# --- the media bytes quota --------------------------------------------------------------

# Bytes of the distinct contents a token stored or reused (media are deduplicated).
_MEDIA_BYTES = (
    select(func.coalesce(func.sum(media.c.size), 0))
    .select_from(media_tokens.join(media, media.c.sha256 == media_tokens.c.sha256))
    .where(media_tokens.c.token_id == bindparam("token_id"))
)
_LINKED = select(literal(1)).where(
    and_(
        media_tokens.c.sha256 == bindparam("sha256"),
        media_tokens.c.token_id == bindparam("token_id"),
    )
)
# The token's row, locked on PostgreSQL until the storing transaction ends: two nodes storing
# for the same token check its bytes one after the other (SQLite's one writer already does).
_LOCK_MEDIA_QUOTA = (
    select(tokens.c.quota_media_bytes).where(tokens.c.id == bindparam("token_id")).with_for_update()
)


async def media_bytes_of(conn: AsyncConnection, token_ids: Sequence[str]) -> dict[str, int]:
    """Stored bytes per token (of those given)."""
    if not token_ids:
        return {}
    rows = await conn.execute(
        select(media_tokens.c.token_id, func.coalesce(func.sum(media.c.size), 0))
        .select_from(media_tokens.join(media, media.c.sha256 == media_tokens.c.sha256))
        .where(media_tokens.c.token_id.in_(list(token_ids)))
        .group_by(media_tokens.c.token_id)
    )
    return {str(row[0]): int(row[1]) for row in rows}


def media_room(conn: Connection, token_id: str, sha256: str, size: int) -> tuple[int, int] | None:
    """Whether ``token_id`` may add content ``sha256`` of ``size`` bytes, under its quota:
    None when it may (no quota, already its own, or it fits), else (bytes stored, quota).

    Locks the token's row on PostgreSQL (see above): call it in the transaction that links
    the content to the token.
    """
    quota = conn.execute(_LOCK_MEDIA_QUOTA, {"token_id": token_id}).scalar()
    if quota is None:
        return None
    if conn.execute(_LINKED, {"sha256": sha256, "token_id": token_id}).first() is not None:
        return None  # already counted
    stored = int(conn.execute(_MEDIA_BYTES, {"token_id": token_id}).scalar_one())
    return None if stored + size <= quota else (stored, int(quota))


async def media_room_now(
    conn: AsyncConnection, token_id: str, sha256: str, size: int, quota: int
) -> tuple[int, int] | None:
    """:func:`media_room` as a read, before storing anything (not authoritative)."""
    if (await conn.execute(_LINKED, {"sha256": sha256, "token_id": token_id})).first() is not None:
        return None
    stored = int((await conn.execute(_MEDIA_BYTES, {"token_id": token_id})).scalar_one())
    return None if stored + size <= quota else (stored, quota)

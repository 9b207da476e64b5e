"""The claim: one statement that leases due jobs for one or more slices (a runner's slot
budgets), each with its own kinds and limit, and the per-kind policies in it.

A slice's key caps are part of that statement: a due job whose ``concurrency_key`` already has
its cap of running jobs of its kind (any node) is passed over, and of the jobs of one key found due
together only as many as still fit are taken. On PostgreSQL a claim with key caps first takes a
transaction-scoped advisory lock, so that its statement's snapshot sees every other node's
committed claim (two statements running at the same moment would each count only what was
committed before they began); SQLite has one writer anyway. The lock is only tried: while
another node holds it, a claim takes its uncapped slices alone and says so (``contended``),
and the runner looks again a moment later.

The claim reads the database clock; a test may hand it ``now_ms`` instead, to claim as if
at that moment (a job due later, a lease taken at a known time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, and_, case, func, literal, null, or_, select, union_all, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE, CompoundSelect, Select

from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import jobs
from ability_gateway.server.runner.queue import KEYED_LOCK
from ability_gateway.server.runner.repository import Lease


@dataclass(frozen=True, slots=True)
class ClaimSlice:
    """One slot budget's part of a claim: up to ``limit`` due jobs whose kind is one of
    ``kinds`` (with ``exclude``: is none of them). ``key_caps`` holds (kind, key, cap)
    triples: at most ``cap`` jobs of that kind with that ``concurrency_key`` (None: with any
    one key, where no triple names the key) run at once, counting every node's; jobs without
    a key are not capped."""

    kinds: tuple[str, ...]
    exclude: bool
    limit: int
    key_caps: tuple[tuple[str, str | None, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    leases: list[Lease]
    # Due jobs found but not taken because their key reached its cap within this claim: claim
    # again now (the next claim counts them running and passes over their key).
    held_back: int
    # Another node was claiming capped kinds: this claim left them out; claim again shortly.
    contended: bool = False


def claim(
    conn: Connection,
    owner: str,
    token: str,
    ttl_ms: int,
    limit: int,
    now_ms: int | None = None,
) -> list[Lease]:
    """Lease up to ``limit`` due jobs of any kind, without key caps."""
    whole = ClaimSlice(kinds=(), exclude=True, limit=limit)
    return claim_slices(conn, owner, token, ttl_ms, [whole], now_ms=now_ms).leases


def claim_slices(
    conn: Connection,
    owner: str,
    token: str,
    ttl_ms: int,
    slices: Sequence[ClaimSlice],
    now_ms: int | None = None,
) -> Claimed:
    """Lease due jobs for each slice, in one statement (SKIP LOCKED where the database has it)."""
    slices = [s for s in slices if s.limit > 0]
    contended = False
    if conn.dialect.name == "postgresql" and any(s.key_caps for s in slices):
        locked = select(func.pg_try_advisory_xact_lock(KEYED_LOCK))
        if not conn.execute(locked).scalar_one():
            slices = [s for s in slices if not s.key_caps]
            contended = True
    if not slices:
        return Claimed([], 0, contended)
    # Running jobs per (kind, key), on every node: few rows (at most every runner's slots).
    busy = (
        select(jobs.c.kind, jobs.c.concurrency_key, func.count().label("n"))
        .where(jobs.c.state == "running", jobs.c.concurrency_key.is_not(None))
        .group_by(jobs.c.kind, jobs.c.concurrency_key)
        .cte("busy")
    )
    picks: list[Select[int]] = []
    held_back_total: ColumnElement[int] = literal(0)
    clock: ColumnElement[int] = db_now_ms() if now_ms is None else literal(now_ms, BigInteger)
    for number, part in enumerate(slices):
        pick, held_back = _slice(part, number, busy, clock)
        picks.append(pick)
        if held_back is not None:
            held_back_total = held_back_total + held_back
    chosen: Select[int] | CompoundSelect[int] = picks[0] if len(picks) == 1 else union_all(*picks)
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(chosen), jobs.c.state == "queued")
        .values(
            state="running",
            lease_owner=owner,
            lease_token=token,
            lease_expires_at=clock + ttl_ms,
            claimed_at=clock,
            steps=jobs.c.steps + 1,
            updated_at=clock,
        )
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.task_id,
            jobs.c.payload,
            jobs.c.steps,
            jobs.c.crash_count,
            jobs.c.claimed_at,
            held_back_total.label("held_back"),
        )
    ).all()
    return Claimed(
        [
            Lease(
                r.id,
                r.kind,
                r.task_id,
                r.payload or {},
                token,
                r.steps,
                r.crash_count,
                int(r.claimed_at),
            )
            for r in rows
        ],
        int(rows[0].held_back) if rows else 0,
        contended,
    )


def _slice(
    part: ClaimSlice, number: int, busy: CTE, clock: ColumnElement[int]
) -> tuple[Select[int], ColumnElement[int] | None]:
    """The ids one slice takes, and (with key caps) how many it found but held back."""
    conditions: list[ColumnElement[bool]] = [
        jobs.c.state == "queued",
        jobs.c.next_run_at <= clock,
    ]
    if part.kinds:
        conditions.append(
            jobs.c.kind.not_in(part.kinds) if part.exclude else jobs.c.kind.in_(part.kinds)
        )
    if not part.key_caps:
        # A materialized CTE picks the rows once (a correlated re-scan of a LIMIT … SKIP LOCKED
        # subquery could otherwise claim more than ``limit`` on PostgreSQL).
        due = (
            select(jobs.c.id)
            .where(*conditions)
            .order_by(jobs.c.next_run_at, jobs.c.id)
            .limit(part.limit)
            .with_for_update(skip_locked=True, of=jobs)
            .cte(f"due_{number}")
            .prefix_with("MATERIALIZED")
        )
        return select(due.c.id), None
    cap = _cap_of_job(part.key_caps)
    running = func.coalesce(busy.c.n, 0)
    # A key already at its cap is passed over: the jobs behind it are found instead.
    conditions.append(or_(jobs.c.concurrency_key.is_(None), cap.is_(None), running < cap))
    due = (
        select(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.concurrency_key,
            jobs.c.next_run_at,
            running.label("running"),
            cap.label("cap"),
        )
        .select_from(
            jobs.outerjoin(
                busy,
                and_(busy.c.kind == jobs.c.kind, busy.c.concurrency_key == jobs.c.concurrency_key),
            )
        )
        .where(*conditions)
        .order_by(jobs.c.next_run_at, jobs.c.id)
        .limit(part.limit)
        .with_for_update(skip_locked=True, of=jobs)
        .cte(f"due_{number}")
        .prefix_with("MATERIALIZED")
    )
    # Of the jobs of one key found together, only as many as still fit under its cap.
    rank = func.row_number().over(
        partition_by=(due.c.kind, due.c.concurrency_key), order_by=(due.c.next_run_at, due.c.id)
    )
    ranked = select(
        due.c.id, due.c.concurrency_key, due.c.running, due.c.cap, rank.label("rank")
    ).subquery(f"ranked_{number}")
    pick = (
        select(ranked.c.id)
        .where(
            or_(
                ranked.c.concurrency_key.is_(None),
                ranked.c.cap.is_(None),
                ranked.c.rank + ranked.c.running <= ranked.c.cap,
            )
        )
        .cte(f"pick_{number}")
    )
    found = select(func.count()).select_from(due).scalar_subquery()
    taken = select(func.count()).select_from(pick).scalar_subquery()
    return select(pick.c.id), found - taken


def _cap_of_job(key_caps: tuple[tuple[str, str | None, int], ...]) -> ColumnElement[int]:
    """The cap that applies to a job's (kind, key), or NULL: a key's own cap first, then its
    kind's cap for any key."""
    named = [(k, key, cap) for k, key, cap in key_caps if key is not None]
    default = [(k, cap) for k, key, cap in key_caps if key is None]
    whens: list[tuple[ColumnElement[bool], int]] = [
        (and_(jobs.c.kind == k, jobs.c.concurrency_key == key), cap) for k, key, cap in named
    ]
    whens += [(jobs.c.kind == k, cap) for k, cap in default]
    return case(*whens, else_=null())

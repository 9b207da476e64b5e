"""A usage query over a year of hourly rollups: 50 tokens × 8 abilities × 8,760 hours (SQLite).

Fills a fresh, migrated SQLite database with 3.5 million ``usage_rollups`` rows (bulk insert,
straight through sqlite3), then times the usage service answering a 30-day range grouped by
day (the issue's target: under 100 ms), and a few other shapes, and prints each query's plan
so the index it uses is visible. A measurement, not a test: nothing is asserted.

    .venv/bin/python bench/usage_query.py [--tokens 50] [--abilities 8] [--days 365]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite

from ability_gateway.server.db import Database
from ability_gateway.server.migrate import upgrade_to_head
from ability_gateway.server.models.usage_rollup import BUCKET_COLUMNS
from ability_gateway.server.usage import service
from ability_gateway.server.usage.repository import COUNTERS, HOUR_MS, rollup_rows, rollup_statement

TIMEZONE = "Asia/Shanghai"
ROUNDS = 15


def fill(path: Path, tokens: int, abilities: int, hours: int, end_ms: int) -> int:
    """Insert every (hour, token, ability) row; the number of rows."""
    columns = ["hour_start_ms", "token_id", "ability_id", *COUNTERS]
    sql = (
        f"INSERT INTO usage_rollups ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    rng = random.Random(12)
    token_ids = [f"tok_{n:026d}" for n in range(tokens)]
    ability_ids = [f"ability_{n}" for n in range(abilities)]
    first_hour = end_ms // HOUR_MS * HOUR_MS - hours * HOUR_MS
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    count = 0
    with db:
        for h in range(hours):
            hour = first_hour + h * HOUR_MS
            batch = []
            for token in token_ids:
                for ability in ability_ids:
                    calls = rng.randint(0, 40)
                    ok = calls - calls // 10
                    buckets = [0] * len(BUCKET_COLUMNS)
                    for _ in range(min(calls, 4)):
                        buckets[rng.randint(2, 7)] += calls // 4 or 1
                    outcomes = [calls, ok, calls - ok, 0, 0, calls // 5]
                    tokens_in = ok * 1500
                    batch.append(
                        (
                            hour,
                            token,
                            ability,
                            *outcomes,
                            calls * 900,
                            *buckets,
                            tokens_in,
                            ok * 80,
                            tokens_in + ok * 80,
                        )
                    )
            db.executemany(sql, batch)
            count += len(batch)
    db.execute("ANALYZE")
    db.close()
    return count


async def timed(db: Database, label: str, **params: str | None) -> None:
    """The first answer (it compacts the days it needs that are not yet) and the next ones."""
    times = []
    answer: dict[str, Any] = {}
    for _ in range(ROUNDS):
        start = time.perf_counter()
        answer = await service.usage(
            db,
            TIMEZONE,
            since=params.get("since"),
            until=params.get("until"),
            group_by=params.get("group_by"),
            token_id=params.get("token_id"),
        )
        times.append((time.perf_counter() - start) * 1000)
    print(
        f"{label:<44} first {times[0]:7.1f} ms   then median {statistics.median(times[1:]):6.1f}"
        f" ms, best {min(times[1:]):6.1f} ms   rows {len(answer['items'])}"
    )


async def hours_only(db: Database, since_ms: int, until_ms: int) -> None:
    """The same 30 days by day summed from hourly rows alone (no compacted day): what the
    compaction saves."""
    grouping = service.parse_group_by("day")
    start_hour = since_ms // HOUR_MS * HOUR_MS
    base = await service.plan(
        db,
        TIMEZONE,
        service.Range(since_ms, until_ms),
        grouping,
        until_ms,
        token_id=None,
        ability_id=None,
    )
    query = replace(base, hours=((start_hour, until_ms),), guarded_hours=(), days=())
    times = []
    for _ in range(3):
        start = time.perf_counter()
        async with db.read() as conn:
            await rollup_rows(conn, query)
        times.append((time.perf_counter() - start) * 1000)
    print(f"{'30 days by day from hourly rows only':<44} best {min(times):7.1f} ms")


async def plan(db: Database, label: str, since_ms: int, until_ms: int, group_by: str) -> None:
    """SQLite's plan of the statement an answer runs (which indexes it reads)."""
    grouping = service.parse_group_by(group_by)
    span = service.Range(since_ms, until_ms)
    query = await service.plan(
        db, TIMEZONE, span, grouping, until_ms, token_id=None, ability_id=None
    )
    compiled = rollup_statement(query).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    print(f"query plan, {label}:")
    async with db.read() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        for row in rows:
            print("    ", row[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--abilities", type=int, default=8)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agw-usage-bench-") as directory:
        path = Path(directory) / "bench.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade_to_head(db)
        await db.dispose()
        now = int(time.time() * 1000)
        start = time.perf_counter()
        rows = fill(path, args.tokens, args.abilities, args.days * 24, now)
        print(f"filled {rows:,} rollup rows in {time.perf_counter() - start:.1f} s")
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            month = now - 30 * 86_400_000
            # Up to now (`to` left out), as a dashboard asks: today's compacted hours count too.
            since, until = service._format(month, "UTC"), None
            await timed(
                db, "30 days by day (every token)", since=since, until=until, group_by="day"
            )
            await timed(db, "30 days by token,day", since=since, until=until, group_by="token,day")
            await timed(
                db, "30 days by ability,day", since=since, until=until, group_by="ability,day"
            )
            await timed(
                db,
                "30 days by day, one token (GET /api/usage)",
                since=since,
                until=until,
                group_by="day",
                token_id=f"tok_{7:026d}",
            )
            await timed(db, "last 24 h total (the default)")
            await hours_only(db, month, now)
            await plan(db, "30 days by day", month, now, "day")
            await plan(db, "30 days by hour (hourly rows only)", now - 86_400_000, now, "hour")
        finally:
            await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())

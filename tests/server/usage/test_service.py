"""Percentiles from summed buckets, days in the quota time zone (whole-hour, half-hour and
summer-time zones), the range and grouping rules, and setting quotas."""

from __future__ import annotations

import asyncio
import random
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select

from ability_gateway.server.errors import BadRequest
from ability_gateway.server.models import usage_day_rollups
from ability_gateway.server.models.usage_rollup import BUCKET_COLUMNS
from ability_gateway.server.state import GatewayState
from ability_gateway.server.usage import repository, service
from ability_gateway.server.usage.quotas import day_window, now_ms
from ability_gateway.server.usage.repository import HOUR_MS, UsageQuery
from ability_gateway.server.usage.service import day_offsets, percentile, quota_values
from tests.server.usage.conftest import PROMPT, TAGGING, add_rollups, gateway_app, ms, rollup


def counts(**by_column: int) -> list[int]:
    return [by_column.get(column, 0) for column in BUCKET_COLUMNS]


def test_percentiles_interpolate_inside_the_bucket_that_holds_them() -> None:
    # 100 durations: 50 in (0, 50], 40 in (50, 100], 10 in (1000, 2500].
    buckets = counts(ms_le_50=50, ms_le_100=40, ms_le_2500=10)
    assert percentile(buckets, 0.5) == 50  # the 50th is the last of the first bucket
    assert percentile(buckets, 0.7) == 75  # 20 of 40 into (50, 100]
    assert percentile(buckets, 0.95) == 1750  # 5 of 10 into (1000, 2500]
    assert percentile(counts(), 0.5) is None


def test_a_percentile_in_the_open_bucket_is_its_lower_bound() -> None:
    assert percentile(counts(ms_le_50=1, ms_over_120000=99), 0.95) == 120_000


def test_offsets_follow_summer_time_inside_the_range() -> None:
    # New York leaves summer time on 2026-11-01 at 06:00 UTC (02:00 EDT → 01:00 EST).
    since, until = ms("2026-10-31T00:00:00Z"), ms("2026-11-03T00:00:00Z")
    assert day_offsets(since, until, "America/New_York") == (
        (since, -4 * 3_600_000),
        (ms("2026-11-01T06:00:00Z"), -5 * 3_600_000),
    )
    assert day_offsets(since, until, "Asia/Shanghai") == ((since, 8 * 3_600_000),)


def test_the_quota_day_ends_at_local_midnight() -> None:
    window = day_window(ms("2026-12-02T20:30:00+08:00"), "Asia/Shanghai")
    assert window.start_ms == ms("2026-12-02T00:00:00+08:00")
    assert window.end_ms == ms("2026-12-03T00:00:00+08:00")
    assert window.resets_at == "2026-12-03T00:00:00+08:00"


async def days(tmp_path: Path, sim_url: str, timezone: str, hours: list[str]) -> dict[str, int]:
    async with gateway_app(tmp_path, sim_url) as gw:
        await add_rollups(gw.state, *(rollup(hour, "tok_a") for hour in hours))
        answer = await service.usage(
            gw.state.db,
            timezone,
            since="2026-10-25T00:00:00Z",
            until="2026-12-10T00:00:00Z",
            group_by="day",
        )
    return {item["period"]: item["calls"] for item in answer["items"]}


async def test_days_in_shanghai_are_not_days_in_utc(tmp_path: Path, sim_url: str) -> None:
    hours = ["2026-12-01T15:00:00Z", "2026-12-01T16:00:00Z"]  # 23:00 and 00:00 in Shanghai
    assert await days(tmp_path / "utc", sim_url, "UTC", hours) == {"2026-12-01T00:00:00+00:00": 2}
    assert await days(tmp_path / "sh", sim_url, "Asia/Shanghai", hours) == {
        "2026-12-01T00:00:00+08:00": 1,
        "2026-12-02T00:00:00+08:00": 1,
    }


async def test_a_half_hour_zone_puts_an_hour_in_the_day_it_starts_in(
    tmp_path: Path, sim_url: str
) -> None:
    # Kolkata is UTC+05:30: 18:00Z is 23:30 on Dec 1 (half of it is Dec 2), 19:00Z is 00:30.
    hours = ["2026-12-01T18:00:00Z", "2026-12-01T19:00:00Z"]
    assert await days(tmp_path, sim_url, "Asia/Kolkata", hours) == {
        "2026-12-01T00:00:00+05:30": 1,
        "2026-12-02T00:00:00+05:30": 1,
    }


async def test_days_follow_the_end_of_summer_time(tmp_path: Path, sim_url: str) -> None:
    hours = [
        "2026-11-01T04:00:00Z",  # 00:00 EDT, Nov 1
        "2026-11-02T04:00:00Z",  # 23:00 EST, Nov 1 (a 25-hour day)
        "2026-11-02T05:00:00Z",  # 00:00 EST, Nov 2
    ]
    assert await days(tmp_path, sim_url, "America/New_York", hours) == {
        "2026-11-01T00:00:00-04:00": 2,
        "2026-11-02T00:00:00-05:00": 1,
    }


async def test_grouping_by_token_ability_and_hour_sums_each_group(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        await add_rollups(
            gw.state,
            rollup("2026-12-01T10:00:00Z", "tok_a", calls=2, succeeded=2),
            rollup("2026-12-01T10:00:00Z", "tok_a", TAGGING, calls=1, failed=1),
            rollup("2026-12-01T11:00:00Z", "tok_b", calls=3, succeeded=3),
        )
        answer = await service.usage(
            gw.state.db,
            "UTC",
            since="2026-12-01T10:30:00Z",  # the hour it falls in counts
            until="2026-12-01T12:00:00Z",
            group_by="hour,token",
        )
        total = await service.usage(
            gw.state.db,
            "UTC",
            since="2026-12-01T00:00:00Z",
            until="2026-12-02T00:00:00Z",
            group_by=None,
        )
    rows = [(i["period"], i["tokenId"], i["abilityId"], i["calls"]) for i in answer["items"]]
    assert rows == [
        ("2026-12-01T10:00:00+00:00", "tok_a", None, 3),
        ("2026-12-01T11:00:00+00:00", "tok_b", None, 3),
    ]
    assert answer["groupBy"] == ["token", "hour"]
    [only] = total["items"]
    assert (only["calls"], only["succeeded"], only["failed"]) == (6, 5, 1)


@pytest.mark.parametrize(
    ("since", "until", "group_by", "field"),
    [
        ("yesterday", None, None, "from"),
        (None, "2026-12-02T00:00:00", None, "to"),
        ("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z", None, "from"),
        ("2025-01-01T00:00:00Z", "2026-12-01T00:00:00Z", None, "to"),
        ("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z", "hour", "to"),
        (None, None, "token,week", "groupBy"),
        (None, None, "day,hour", "groupBy"),
    ],
)
async def test_bad_ranges_and_groupings_name_their_field(
    tmp_path: Path,
    sim_url: str,
    since: str | None,
    until: str | None,
    group_by: str | None,
    field: str,
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        with pytest.raises(BadRequest) as refused:
            await service.usage(gw.state.db, "UTC", since=since, until=until, group_by=group_by)
    assert [e["field"] for e in refused.value.extra["errors"]] == [field]


def test_quota_values_refuse_negative_caps_by_field() -> None:
    with pytest.raises(BadRequest) as refused:
        quota_values(-1, {"a": -2}, -3)
    fields = [e["field"] for e in refused.value.extra["errors"]]
    assert fields == ["dailyInvocations", "dailyInvocationsByAbility.a", "mediaBytes"]
    assert quota_values(daily_by_ability={}) == {"quota_daily_by_ability": None}
    assert quota_values() == {}


# --- compacted days give the answer the hours give --------------------------------------


async def straight_from_hours(
    state: GatewayState, timezone: str, since: str, until: str, group_by: str | None
) -> list[dict[str, object]]:
    """The answer's rows summed from hourly rows alone (no compacted day)."""
    grouping = service.parse_group_by(group_by)
    span = service.parse_range(since, until, grouping, now_ms())
    start = span.since_ms // HOUR_MS * HOUR_MS
    query = UsageQuery(
        hours=((start, span.until_ms),),
        token_id=None,
        ability_id=None,
        by_token=grouping.token,
        by_ability=grouping.ability,
        period=grouping.period,
        zone=timezone,
        day_offsets=day_offsets(start, span.until_ms, timezone),
    )
    async with state.db.read() as conn:
        rows = await repository.rollup_rows(conn, query)
    return [service._item(row, grouping, timezone) for row in rows]


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Shanghai", "Asia/Kolkata", "America/New_York"])
async def test_compacted_days_answer_as_the_hours_do(
    tmp_path: Path, sim_url: str, timezone: str
) -> None:
    rng = random.Random(timezone)
    now = now_ms()
    first = now // HOUR_MS * HOUR_MS - 40 * 24 * HOUR_MS  # 40 days ago, up to this hour
    rows = [
        rollup(
            service._format(first + h * HOUR_MS, "UTC"),
            token,
            ability,
            calls=rng.randint(1, 9),
            succeeded=rng.randint(0, 5),
            ms_le_500=rng.randint(0, 3),
            total_tokens=rng.randint(0, 999),
        )
        for h in range(0, 40 * 24 + 1, 1)
        for token in ("tok_a", "tok_b")
        for ability in (PROMPT, TAGGING)
        if rng.random() < 0.3
    ]
    ranges = [
        (service._format(now - 30 * 86_400_000, "UTC"), service._format(now, "UTC")),
        (service._format(first + 5 * 3_600_000, "UTC"), service._format(now - 86_400_000, "UTC")),
        (service._format(first, "UTC"), service._format(now + 3_600_000, "UTC")),
    ]
    async with gateway_app(tmp_path, sim_url) as gw:
        await add_rollups(gw.state, *rows)
        for since, until in ranges:
            for group_by in ("day", "token,ability,day", "ability", None):
                expected = await straight_from_hours(gw.state, timezone, since, until, group_by)
                for _ in range(2):  # the first compacts what it may, the second reads it
                    answer = await service.usage(
                        gw.state.db, timezone, since=since, until=until, group_by=group_by
                    )
                    assert answer["items"] == expected, (since, until, group_by)
        async with gw.state.db.read() as conn:
            compacted = await repository.marks_of(conn, timezone, list(range(0, 100_000)))
    assert len(compacted) >= 30


async def test_a_backfill_of_past_hours_is_not_hidden_by_compacted_days(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        yesterday = service._format(now_ms() // 86_400_000 * 86_400_000 - 86_400_000, "UTC")
        week = {"since": service._format(now_ms() - 7 * 86_400_000, "UTC"), "until": None}
        await add_rollups(gw.state, rollup(yesterday, "tok_a", calls=2))
        before = await service.usage(gw.state.db, "UTC", group_by=None, **week)
        await add_rollups(gw.state, rollup(yesterday, "tok_a", calls=3))
        after = await service.usage(gw.state.db, "UTC", group_by=None, **week)
    assert [i["calls"] for i in before["items"]] == [2]
    assert [i["calls"] for i in after["items"]] == [5]


async def test_two_compactions_of_one_day_at_once_count_its_hours_once(
    tmp_path: Path, sim_url: str
) -> None:
    day_start = now_ms() // 86_400_000 * 86_400_000 - 2 * 86_400_000
    async with gateway_app(tmp_path, sim_url) as gw:
        await add_rollups(
            gw.state,
            *(
                rollup(service._format(day_start + h * HOUR_MS, "UTC"), "tok_a", calls=1)
                for h in range(24)
            ),
        )
        day = day_start // 86_400_000
        compact = partial(
            repository.compact_day,
            zone="UTC",
            day=day,
            start_ms=day_start,
            end_ms=day_start + 86_400_000,
        )
        await asyncio.gather(*(gw.state.db.run_write(compact) for _ in range(4)))
        async with gw.state.db.read() as conn:
            summed = await conn.execute(
                select(usage_day_rollups.c.calls).where(usage_day_rollups.c.day == day)
            )
            calls = [int(r.calls) for r in summed]
    assert calls == [24]

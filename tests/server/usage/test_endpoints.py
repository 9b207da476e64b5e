"""``GET /api/admin/usage`` and ``GET /api/usage`` over HTTP: admin only / own rows only,
every bad input a 400 naming its field, p95 from the buckets, quotas with today's use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.usage.conftest import (
    PROMPT,
    TAGGING,
    Gateway,
    add_rollups,
    bearer,
    gateway_app,
    rollup,
)

RANGE = {"from": "2026-12-01T00:00:00Z", "to": "2026-12-03T00:00:00Z"}


@pytest.fixture
async def gw(tmp_path: Path, sim_url: str) -> AsyncIterator[Gateway]:
    async with gateway_app(tmp_path, sim_url, quota_timezone="Asia/Shanghai") as gateway:
        yield gateway


async def test_an_app_token_gets_403_on_the_admin_route(gw: Gateway) -> None:
    app = await gw.token()
    response = await gw.client.get("/api/admin/usage", headers=bearer(app))
    assert response.status_code == 403
    assert response.json()["message"] == "This operation needs the 'admin' scope"


async def test_an_app_token_reads_only_its_own_rows(gw: Gateway) -> None:
    mine, theirs = await gw.token("mine"), await gw.token("theirs")
    await add_rollups(
        gw.state,
        rollup("2026-12-01T10:00:00Z", mine.id, calls=2, succeeded=2),
        rollup("2026-12-01T10:00:00Z", theirs.id, calls=5, succeeded=5),
    )
    own = await gw.usage(mine, groupBy="token,ability", **RANGE)
    assert [(i["tokenId"], i["abilityId"], i["calls"]) for i in own["items"]] == [
        (mine.id, PROMPT, 2)
    ]
    assert [q["tokenId"] for q in own["quotas"]] == [mine.id]
    root = await gw.token("root", admin=True)
    every = await gw.usage(root, "/api/admin/usage", groupBy="token", **RANGE)
    assert sorted((i["tokenId"], i["calls"]) for i in every["items"]) == sorted(
        [(mine.id, 2), (theirs.id, 5)]
    )
    one = await gw.usage(root, "/api/admin/usage", tokenId=theirs.id, **RANGE)
    assert [i["calls"] for i in one["items"]] == [5]


async def test_rows_carry_outcomes_percentiles_and_coze_tokens(gw: Gateway) -> None:
    root = await gw.token("root", admin=True)
    await add_rollups(
        gw.state,
        rollup(
            "2026-12-01T10:00:00Z",
            "tok_a",
            calls=100,
            succeeded=90,
            failed=5,
            timeout=3,
            canceled=2,
            cache_hits=10,
            duration_sum_ms=40_000,
            buckets={"ms_le_100": 60, "ms_le_500": 30, "ms_le_5000": 10},
            input_tokens=1000,
            output_tokens=200,
            total_tokens=1200,
        ),
        rollup("2026-12-01T11:00:00Z", "tok_a", TAGGING, calls=0),
    )
    answer = await gw.usage(root, "/api/admin/usage", groupBy="ability", **RANGE)
    item = answer["items"][0]
    assert item["abilityId"] == PROMPT
    assert (item["succeeded"], item["failed"], item["timeout"], item["canceled"]) == (90, 5, 3, 2)
    assert item["cacheHits"] == 10
    # 60 in (50, 100]: the median is 50 of them in; the 95th is 5 of 10 into (2500, 5000].
    assert item["p50Ms"] == round(50 + 50 * 50 / 60)
    assert item["p95Ms"] == 3750
    assert item["meanMs"] == 400
    assert item["cozeTokens"] == {"input": 1000, "output": 200, "total": 1200}
    assert answer["timezone"] == "Asia/Shanghai"
    assert answer["from"] == "2026-12-01T08:00:00+08:00"


async def test_days_are_shanghai_days(gw: Gateway) -> None:
    app = await gw.token()
    await add_rollups(
        gw.state,
        rollup("2026-12-01T15:00:00Z", app.id),  # 23:00 in Shanghai
        rollup("2026-12-01T16:00:00Z", app.id),  # 00:00 the next day
    )
    answer = await gw.usage(app, groupBy="day", **RANGE)
    assert [(i["period"], i["calls"]) for i in answer["items"]] == [
        ("2026-12-01T00:00:00+08:00", 1),
        ("2026-12-02T00:00:00+08:00", 1),
    ]


async def test_the_default_range_is_the_last_day_and_holds_a_fresh_invoke(gw: Gateway) -> None:
    app = await gw.token()
    assert (await gw.invoke(app)).status_code == 200
    answer = await gw.usage(app)
    [item] = answer["items"]
    assert (item["calls"], item["succeeded"], item["period"]) == (1, 1, None)
    assert item["cozeTokens"]["total"] > 0


@pytest.mark.parametrize("path", ["/api/usage", "/api/admin/usage"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "last week"}, "from"),
        ({"to": "2026-12-02T00:00:00"}, "to"),
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "to"),
        ({"groupBy": "token,week"}, "groupBy"),
        ({"groupBy": "day,hour"}, "groupBy"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    gw: Gateway, path: str, params: dict[str, str], field: str
) -> None:
    root = await gw.token("root", admin=True)
    response = await gw.client.get(path, params=params, headers=bearer(root))
    assert response.status_code == 400, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["requestId"] == response.headers["x-request-id"]


async def test_quotas_and_todays_use_are_in_the_answer(gw: Gateway) -> None:
    app = await gw.token(daily_invocations=5, daily_by_ability={PROMPT: 2}, media_bytes=10**6)
    plain = await gw.token("plain")
    assert (await gw.invoke(app, wish="a")).status_code == 200
    [quota] = (await gw.usage(app))["quotas"]
    assert quota["dailyInvocations"] == {"limit": 5, "used": 1}
    assert quota["dailyInvocationsByAbility"] == {PROMPT: {"limit": 2, "used": 1}}
    assert quota["mediaBytes"] == {"limit": 10**6, "used": 0}
    assert quota["resetsAt"].endswith("T00:00:00+08:00")
    [none] = (await gw.usage(plain))["quotas"]
    assert (none["dailyInvocations"], none["dailyInvocationsByAbility"]) == (None, {})
    assert none["mediaBytes"] == {"limit": None, "used": 0}
    root = await gw.token("root", admin=True)
    listed = (await gw.usage(root, "/api/admin/usage"))["quotas"]
    assert [q["tokenId"] for q in listed] == [app.id]  # only tokens that have a quota

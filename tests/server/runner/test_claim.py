"""Per-kind claim policies, in the claim statement itself: slot budgets per kind and a cap
on running jobs of one kind with the same ``concurrency_key`` (every node counted)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ability_gateway.server.app import create_app
from ability_gateway.server.models import jobs
from ability_gateway.server.runner import claim as claiming
from ability_gateway.server.runner import queue, repository
from ability_gateway.server.runner.claim import ClaimSlice
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import TEST_DATABASE

KIND = "test.keyed"
CAP = 2


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayState]:
    settings = make_settings(tmp_path, "http://127.0.0.1:1", runner_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        await state.runner.stop(grace_seconds=0)  # claims are made by hand here
        yield state


def keyed(limit: int) -> ClaimSlice:
    return ClaimSlice(kinds=(KIND,), exclude=False, limit=limit, key_caps=((KIND, None, CAP),))


async def enqueue(state: GatewayState, *keys: str | None, kind: str = KIND) -> list[int]:
    def write(conn: object) -> list[int]:
        return [
            queue.enqueue(
                conn,  # type: ignore[arg-type]
                kind,
                payload={"key": key},
                concurrency_key=key,
            ).id
            for key in keys
        ]

    return await state.db.run_write(write)


async def running_by_key(state: GatewayState) -> Counter[str | None]:
    async with state.db.read() as conn:
        rows = await conn.execute(
            select(jobs.c.concurrency_key).where(jobs.c.state == "running", jobs.c.kind == KIND)
        )
        return Counter(row[0] for row in rows)


async def claim(state: GatewayState, *slices: ClaimSlice) -> claiming.Claimed:
    return await state.db.run_write(
        partial(claiming.claim_slices, owner="a", token="t", ttl_ms=60_000, slices=slices)
    )


async def test_one_claim_takes_no_more_of_one_key_than_its_cap(gateway: GatewayState) -> None:
    await enqueue(gateway, *["x"] * 4, "y")
    claimed = await claim(gateway, keyed(limit=10))
    assert Counter(lease.payload["key"] for lease in claimed.leases) == {"x": CAP, "y": 1}
    assert claimed.held_back == 2  # X's other two: the runner claims again at once


async def test_a_key_at_its_cap_does_not_block_the_jobs_queued_behind_it(
    gateway: GatewayState,
) -> None:
    await enqueue(gateway, *["x"] * 10)
    await claim(gateway, keyed(limit=10))
    [later] = await enqueue(gateway, "y")
    claimed = await claim(gateway, keyed(limit=1))
    assert [lease.id for lease in claimed.leases] == [later]
    assert await running_by_key(gateway) == {"x": CAP, "y": 1}


async def test_a_finished_job_frees_its_keys_place(gateway: GatewayState) -> None:
    await enqueue(gateway, *["x"] * 4)
    first = await claim(gateway, keyed(limit=10))
    assert await claim(gateway, keyed(limit=10)) == claiming.Claimed([], 0)
    done = first.leases[0]
    await gateway.db.run_write(
        partial(repository.finish, job_id=done.id, token=done.token, state="done")
    )
    again = await claim(gateway, keyed(limit=10))
    assert len(again.leases) == 1
    assert await running_by_key(gateway) == {"x": CAP}


async def test_jobs_without_a_key_are_not_capped(gateway: GatewayState) -> None:
    await enqueue(gateway, *[None] * 5)
    claimed = await claim(gateway, keyed(limit=10))
    assert len(claimed.leases) == 5


async def test_each_slice_claims_only_its_kinds_within_its_own_limit(
    gateway: GatewayState,
) -> None:
    await enqueue(gateway, *[None] * 5, kind="test.other")
    await enqueue(gateway, *[None] * 5)
    own = ClaimSlice(kinds=(KIND,), exclude=False, limit=2)
    rest = ClaimSlice(kinds=(KIND,), exclude=True, limit=3)
    claimed = await claim(gateway, own, rest)
    assert Counter(lease.kind for lease in claimed.leases) == {KIND: 2, "test.other": 3}


@pytest.mark.skipif(TEST_DATABASE != "postgresql", reason="concurrent claimers: PostgreSQL")
async def test_two_concurrent_claims_never_exceed_the_cap(gateway: GatewayState) -> None:
    # Two nodes claiming at the same moment: the first claim's transaction is still open
    # when the second one runs, and it locked only three of the ten due jobs (SKIP LOCKED
    # leaves the other seven to the second). The second must count the first one's claims.
    await enqueue(gateway, *["x"] * 10)
    engine = create_async_engine(gateway.settings.resolved_database_url)
    try:
        async with engine.connect() as first:
            await first.begin()
            mine = await first.run_sync(
                partial(
                    claiming.claim_slices,
                    owner="a",
                    token="ta",
                    ttl_ms=60_000,
                    slices=[keyed(3)],
                )
            )

            async def second_node() -> claiming.Claimed:
                async with engine.begin() as conn:
                    return await conn.run_sync(
                        partial(
                            claiming.claim_slices,
                            owner="b",
                            token="tb",
                            ttl_ms=60_000,
                            slices=[keyed(10)],
                        )
                    )

            during = await asyncio.wait_for(second_node(), 10)  # the first is uncommitted
            await first.commit()
        after = await second_node()
    finally:
        await engine.dispose()
    assert len(mine.leases) == CAP
    assert during.leases == []
    assert after.leases == []
    assert await running_by_key(gateway) == {"x": CAP}


@pytest.mark.skipif(TEST_DATABASE != "postgresql", reason="concurrent claimers: PostgreSQL")
async def test_a_claim_during_another_nodes_keyed_claim_still_takes_uncapped_jobs(
    gateway: GatewayState,
) -> None:
    await enqueue(gateway, *["x"] * 4)
    await enqueue(gateway, *[None] * 3, kind="test.other")
    rest = ClaimSlice(kinds=(KIND,), exclude=True, limit=10)
    engine = create_async_engine(gateway.settings.resolved_database_url)
    try:
        async with engine.connect() as first:
            await first.begin()
            await first.run_sync(
                partial(
                    claiming.claim_slices,
                    owner="a",
                    token="ta",
                    ttl_ms=60_000,
                    slices=[keyed(10)],
                )
            )
            async with engine.begin() as conn:
                during = await conn.run_sync(
                    partial(
                        claiming.claim_slices,
                        owner="b",
                        token="tb",
                        ttl_ms=60_000,
                        slices=[keyed(10), rest],
                    )
                )
            await first.commit()
    finally:
        await engine.dispose()
    assert Counter(lease.kind for lease in during.leases) == {"test.other": 3}
    assert during.contended  # the runner claims its keyed kinds again a moment later


async def test_a_key_may_have_a_cap_of_its_own_beside_its_kinds_cap(
    gateway: GatewayState,
) -> None:
    await enqueue(gateway, *["solo"] * 3, *["x"] * 4)
    caps = ((KIND, "solo", 1), (KIND, None, CAP))
    claimed = await claim(gateway, ClaimSlice((KIND,), False, 10, caps))
    assert Counter(lease.payload["key"] for lease in claimed.leases) == {"solo": 1, "x": CAP}
    assert claimed.held_back == 2 + (4 - CAP)


async def test_only_named_keys_are_capped_when_the_kind_has_no_cap_of_its_own(
    gateway: GatewayState,
) -> None:
    await enqueue(gateway, *["solo"] * 3, *["free"] * 4)
    claimed = await claim(gateway, ClaimSlice((KIND,), False, 10, ((KIND, "solo", 1),)))
    assert Counter(lease.payload["key"] for lease in claimed.leases) == {"solo": 1, "free": 4}


def leased_enqueue(key: str, cap: int | None) -> Callable[[Connection], queue.Enqueued]:
    request = queue.LeaseRequest("handler", "tok", 60_000, key_cap=cap)
    return lambda conn: queue.enqueue(conn, KIND, concurrency_key=key, lease=request)


async def test_an_enqueue_takes_the_lease_only_while_its_key_has_room(
    gateway: GatewayState,
) -> None:
    first = await gateway.db.run_write(leased_enqueue("x", 2))
    second = await gateway.db.run_write(leased_enqueue("x", 2))
    third = await gateway.db.run_write(leased_enqueue("x", 2))
    other = await gateway.db.run_write(leased_enqueue("y", 2))
    uncapped = await gateway.db.run_write(leased_enqueue("x", None))
    assert [j.leased for j in (first, second, third, other, uncapped)] == [
        True,
        True,
        False,  # x is at its cap: written queued, for a runner to claim in turn
        True,
        True,
    ]
    assert first.leased_at_ms is not None
    assert third.leased_at_ms is None
    assert await running_by_key(gateway) == {"x": 3, "y": 1}
    # The queued one is claimed once x has room, not before.
    assert await claim(gateway, keyed(limit=10)) == claiming.Claimed([], 0)


@pytest.mark.skipif(TEST_DATABASE != "postgresql", reason="concurrent nodes: PostgreSQL")
async def test_an_enqueue_waits_for_another_nodes_claim_before_counting(
    gateway: GatewayState,
) -> None:
    # Node A's claim took x's last place and has not committed: node B's leased enqueue must
    # not see room (it waits on the claim's lock, then counts A's claim).
    await enqueue(gateway, "x")
    engine = create_async_engine(gateway.settings.resolved_database_url)
    try:
        async with engine.connect() as first:
            await first.begin()
            mine = await first.run_sync(
                partial(
                    claiming.claim_slices,
                    owner="a",
                    token="ta",
                    ttl_ms=60_000,
                    slices=[ClaimSlice((KIND,), False, 10, ((KIND, None, 1),))],
                )
            )

            async def other_node() -> queue.Enqueued:
                async with engine.begin() as conn:
                    return await conn.run_sync(leased_enqueue("x", 1))

            pending = asyncio.ensure_future(other_node())
            await asyncio.sleep(0.3)
            assert not pending.done()  # held by A's lock
            await first.commit()
            theirs = await asyncio.wait_for(pending, 10)
    finally:
        await engine.dispose()
    assert len(mine.leases) == 1
    assert not theirs.leased
    assert await running_by_key(gateway) == {"x": 1}

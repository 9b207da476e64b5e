"""The table of notices received: a notice is claimed once for its window, then pruned."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from ability_gateway.server.models import provider_notices
from ability_gateway.server.provider_callbacks import repository
from ability_gateway.server.state import GatewayState


async def received(gateway: GatewayState, webhook_id: str, external_id: str) -> bool:
    async with gateway.db.read() as conn:
        return await repository.was_received(conn, webhook_id, external_id)


async def claim(gateway: GatewayState, webhook_id: str, external_id: str, keep_ms: int) -> bool:
    return await gateway.db.run_write(
        lambda c: repository.claim(c, webhook_id, external_id, keep_ms)
    )


async def rows(gateway: GatewayState) -> int:
    async with gateway.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(provider_notices))).scalar_one()
        )


async def test_a_notice_is_claimed_once_for_its_window_per_job(gateway: GatewayState) -> None:
    assert await claim(gateway, "msg_1", "job_a", 60_000)
    assert await received(gateway, "msg_1", "job_a")
    assert not await received(gateway, "msg_1", "job_b")
    assert not await received(gateway, "msg_2", "job_a")
    assert not await claim(gateway, "msg_1", "job_a", 60_000)  # the same notice again
    assert await rows(gateway) == 1


async def test_of_two_copies_arriving_at_once_one_claims(gateway: GatewayState) -> None:
    results = await asyncio.gather(*(claim(gateway, "msg_1", "job_a", 60_000) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_a_later_copy_keeps_the_notice_for_its_own_window(gateway: GatewayState) -> None:
    assert await claim(gateway, "msg_1", "job_a", 1_000)
    async with gateway.db.read() as conn:
        first = (await conn.execute(select(provider_notices.c.expires_at))).scalar_one()
    assert not await claim(gateway, "msg_1", "job_a", 600_000)  # a retry, newer timestamp
    async with gateway.db.read() as conn:
        later = (await conn.execute(select(provider_notices.c.expires_at))).scalar_one()
    assert later >= first + 599_000


async def test_a_notice_that_could_not_be_applied_is_forgotten(gateway: GatewayState) -> None:
    assert await claim(gateway, "msg_1", "job_a", 60_000)
    await gateway.db.run_write(lambda c: repository.forget(c, "msg_1", "job_a"))
    assert await claim(gateway, "msg_1", "job_a", 60_000)  # its retry is applied


async def test_an_expired_notice_is_forgotten_and_pruned(gateway: GatewayState) -> None:
    assert await claim(gateway, "msg_old", "job_a", -1)
    assert not await received(gateway, "msg_old", "job_a")
    assert await rows(gateway) == 1
    # The next notice claimed prunes the expired one.
    assert await claim(gateway, "msg_new", "job_b", 60_000)
    assert await rows(gateway) == 1
    assert await received(gateway, "msg_new", "job_b")

"""The table of notices received: a notice is remembered for its window, then pruned."""

from __future__ import annotations

from sqlalchemy import func, select

from ability_gateway.server.models import provider_notices
from ability_gateway.server.provider_callbacks import repository
from ability_gateway.server.state import GatewayState


async def received(gateway: GatewayState, webhook_id: str, external_id: str) -> bool:
    async with gateway.db.read() as conn:
        return await repository.was_received(conn, webhook_id, external_id)


async def rows(gateway: GatewayState) -> int:
    async with gateway.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(provider_notices))).scalar_one()
        )


async def test_a_notice_is_remembered_for_its_window_per_job(gateway: GatewayState) -> None:
    await gateway.db.run_write(lambda c: repository.remember(c, "msg_1", "job_a", 60_000))
    assert await received(gateway, "msg_1", "job_a")
    assert not await received(gateway, "msg_1", "job_b")
    assert not await received(gateway, "msg_2", "job_a")
    # The same notice twice (two deliveries racing): one row, no error.
    await gateway.db.run_write(lambda c: repository.remember(c, "msg_1", "job_a", 60_000))
    assert await rows(gateway) == 1


async def test_an_expired_notice_is_forgotten_and_pruned(gateway: GatewayState) -> None:
    await gateway.db.run_write(lambda c: repository.remember(c, "msg_old", "job_a", -1))
    assert not await received(gateway, "msg_old", "job_a")
    assert await rows(gateway) == 1
    # The next notice remembered prunes the expired one.
    await gateway.db.run_write(lambda c: repository.remember(c, "msg_new", "job_b", 60_000))
    assert await rows(gateway) == 1
    assert await received(gateway, "msg_new", "job_b")

"""``ability-gateway token create/limits`` quota flags, through the real entry point."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ability_gateway.server.db import Database
from ability_gateway.server.models import tokens
from tests.support import cli, database_env


def quotas_of(env: dict[str, str], token_id: str) -> tuple[Any, ...]:
    url = (
        env.get("GATEWAY_DATABASE_URL")
        or f"sqlite+aiosqlite:///{env['GATEWAY_DATA_DIR']}/gateway.db"
    )

    async def read() -> tuple[Any, ...]:
        db = Database(url)
        try:
            async with db.read() as conn:
                row = (
                    await conn.execute(
                        select(
                            tokens.c.quota_daily_invocations,
                            tokens.c.quota_daily_by_ability,
                            tokens.c.quota_media_bytes,
                        ).where(tokens.c.id == token_id)
                    )
                ).one()
        finally:
            await db.dispose()
        return tuple(row)

    return asyncio.run(read())


def test_token_create_and_limits_set_and_remove_quotas(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), **database_env()}
    created = cli(
        "token", "create", "--name", "q", "--json", "--daily-quota", "100",
        "--ability-quota", "ability_coze_upscale_8k=5", "--ability-quota", "ability_x=0",
        "--media-quota-bytes", "1000", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert token["quotas"] == {
        "dailyInvocations": 100,
        "dailyInvocationsByAbility": {"ability_coze_upscale_8k": 5, "ability_x": 0},
        "mediaBytes": 1000,
    }
    assert quotas_of(env, token["id"]) == (
        100,
        {"ability_coze_upscale_8k": 5, "ability_x": 0},
        1000,
    )
    changed = cli(
        "token", "limits", token["id"], "--daily-quota", "0", "--ability-quota", "a=2", env=env
    )
    assert changed.returncode == 0, changed.stderr
    assert quotas_of(env, token["id"]) == (None, {"a": 2}, 1000)
    bad = cli("token", "limits", token["id"], "--ability-quota", "a", env=env)
    assert bad.returncode == 2
    assert "ABILITY_ID=N" in bad.stderr

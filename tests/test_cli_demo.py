"""The demo's token: made once, kept readable by this user only, reused while it works."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from ability_gateway._cli_demo import DEMO_TOKEN_FILE, _demo_token
from ability_gateway.server.auth.service import revoke_token
from ability_gateway.server.db import Database
from tests.conftest import make_settings


def test_the_demo_token_is_reused_until_it_stops_working(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9")
    first, reused = _demo_token(settings)
    assert not reused
    kept = tmp_path / DEMO_TOKEN_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    again, reused = _demo_token(settings)
    assert reused
    assert again["token"] == first["token"]

    async def revoke() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await revoke_token(db, str(first["id"]))
        finally:
            await db.dispose()

    asyncio.run(revoke())
    new, reused = _demo_token(settings)
    assert not reused
    assert new["token"] != first["token"]

"""The ``token`` command group: create, list, limit and revoke API tokens.

This module owns :data:`token_app` and its four commands, which work on the gateway's
database directly (migrating it first), not over HTTP; :func:`_token_create` is also how
``demo`` makes its token. Server-side imports happen inside the commands.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ability_gateway._cli_server import _settings

if TYPE_CHECKING:
    from ability_gateway.server.config import Settings

token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


def _opened(settings: Settings) -> Settings:
    """Say which database a token command works on (on stderr: --json stays clean)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    print(f"database: {url}", file=sys.stderr)
    return settings


async def _token_create(
    settings: Settings,
    name: str,
    admin: bool,
    expires_in_days: float | None,
    rate_limit: int | None = None,
    max_concurrent: int | None = None,
    quotas: Quotas | None = None,
) -> dict[str, object]:
    from ability_gateway.server.auth.service import create_token
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head
    from ability_gateway.server.usage.service import set_quotas

    db = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(db)
        created = await create_token(
            db,
            name,
            admin=admin,
            expires_in_days=expires_in_days,
            rate_limit_per_minute=rate_limit,
            max_concurrent_tasks=max_concurrent,
        )
        if quotas:
            await set_quotas(db, created.id, **quotas)
    finally:
        await db.dispose()
    return {
        "id": created.id,
        "name": created.name,
        "token": created.token,
        "callbackSecret": created.callback_secret,
        "scopes": created.scopes,
        "expiresAt": created.expires_at,
        "rateLimitPerMinute": rate_limit,
        "maxConcurrentTasks": max_concurrent,
        **({"quotas": {_QUOTA_NAMES[k]: v for k, v in quotas.items()}} if quotas else {}),
    }


# Quota options: set_quotas keyword → value (None removes); shared by create and limits.
Quotas = dict[str, Any]
_QUOTA_NAMES = {
    "daily_invocations": "dailyInvocations",
    "daily_by_ability": "dailyInvocationsByAbility",
    "media_bytes": "mediaBytes",
}
DailyQuota = Annotated[
    int | None, typer.Option("--daily-quota", help="Invocations a day (quota timezone).", min=0)
]
AbilityQuota = Annotated[
    list[str] | None,
    typer.Option(
        "--ability-quota",
        metavar="ABILITY_ID=N",
        help="ABILITY_ID=N: invocations a day of one ability (repeatable; replaces the set).",
    ),
]
MediaQuota = Annotated[
    int | None, typer.Option("--media-quota-bytes", help="Bytes of stored media.", min=0)
]


def _quotas(
    daily: int | None, by_ability: list[str] | None, media_bytes: int | None, *, zero_removes: bool
) -> Quotas:
    """The quotas given on the command line (in ``limits``, 0 removes one)."""
    values: Quotas = {}
    if daily is not None:
        values["daily_invocations"] = daily or None if zero_removes else daily
    if by_ability:
        caps: dict[str, int] = {}
        for item in by_ability:
            ability, sep, count = item.partition("=")
            if not sep or not ability.strip() or not count.strip().isdigit():
                raise typer.BadParameter("expected ABILITY_ID=N", param_hint="--ability-quota")
            if int(count) or not zero_removes:
                caps[ability.strip()] = int(count)
        values["daily_by_ability"] = caps or None
    if media_bytes is not None:
        values["media_bytes"] = media_bytes or None if zero_removes else media_bytes
    return values


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    admin: Annotated[bool, typer.Option(help="Also grant the admin scope.")] = False,
    expires_in_days: Annotated[
        float | None, typer.Option(help="Expire after this many days (default: never).")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute (default: unlimited).", min=1)
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Unfinished tasks at once (default: unlimited).", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    daily_quota: DailyQuota = None,
    ability_quota: AbilityQuota = None,
    media_quota_bytes: MediaQuota = None,
) -> None:
    """Create a token. It is shown once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("must not be empty", param_hint="--name")
    if expires_in_days is not None and expires_in_days <= 0:
        raise typer.BadParameter("must be positive", param_hint="--expires-in-days")
    settings = _opened(_settings())
    created = asyncio.run(
        _token_create(
            settings,
            name,
            admin,
            expires_in_days,
            rate_limit,
            max_concurrent,
            _quotas(daily_quota, ability_quota, media_quota_bytes, zero_removes=False),
        )
    )
    if as_json:
        print(json.dumps(created))
        return
    print(f"id:              {created['id']}")
    print(f"name:            {created['name']}")
    print(f"scopes:          {', '.join(created['scopes'])}")  # type: ignore[arg-type]
    print(f"token:           {created['token']}")
    print(f"callback secret: {created['callbackSecret']}")
    print("Store both now: they are not shown again.")


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List tokens (never the tokens themselves)."""
    from ability_gateway.server.auth.service import list_tokens
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head

    settings = _opened(_settings())

    async def run() -> list[dict[str, object]]:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
            return await list_tokens(db)
        finally:
            await db.dispose()

    rows = asyncio.run(run())
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Column, Table

    table = Table("name", "prefix", "scopes", "created", "expires", "revoked")
    # Ids whole (they are what the other commands take), however narrow the terminal.
    table.columns.insert(0, Column("id", no_wrap=True, min_width=30))

    def when(ms: object) -> str:
        if not isinstance(ms, int):
            return "-"
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))

    for row in rows:
        scopes = row["scopes"]
        table.add_row(
            str(row["id"]),
            str(row["name"]),
            str(row["token_prefix"]) + "…",
            ", ".join(scopes) if isinstance(scopes, list) else str(scopes),
            when(row["created_at"]),
            when(row["expires_at"]),
            when(row["revoked_at"]),
        )
    Console().print(table)


@token_app.command("limits")
def token_limits(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok_…).")],
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute; 0 removes the limit.", min=0)
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="Unfinished tasks at once; 0 removes the limit.", min=0)
    ] = None,
    daily_quota: DailyQuota = None,
    ability_quota: AbilityQuota = None,
    media_quota_bytes: MediaQuota = None,
) -> None:
    """Change a token's limits and quotas (0 removes one; running nodes apply it within
    GATEWAY_AUTH_CACHE_SECONDS)."""
    from ability_gateway.server.auth.service import set_token_limits
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head
    from ability_gateway.server.usage.service import set_quotas

    values: dict[str, int | None] = {}
    if rate_limit is not None:
        values["rate_limit_per_minute"] = rate_limit or None
    if max_concurrent is not None:
        values["max_concurrent_tasks"] = max_concurrent or None
    quotas = _quotas(daily_quota, ability_quota, media_quota_bytes, zero_removes=True)
    if not values and not quotas:
        raise typer.BadParameter("give --rate-limit, --max-concurrent and/or a quota")
    settings = _opened(_settings())

    async def run() -> bool:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
            found = await set_token_limits(db, token_id, values) if values else True
            return found and (await set_quotas(db, token_id, **quotas) if quotas else True)
        finally:
            await db.dispose()

    if not asyncio.run(run()):
        print(f"no token {token_id}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"limits of {token_id} updated")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (tok_…).")]) -> None:
    """Revoke a token: it is refused (401) from now on."""
    from ability_gateway.server.auth.service import revoke_token
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head

    settings = _opened(_settings())

    async def run() -> bool:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
            return await revoke_token(db, token_id)
        finally:
            await db.dispose()

    if not asyncio.run(run()):
        print(f"no active token {token_id}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"revoked {token_id}")

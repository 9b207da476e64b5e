"""The gateway process commands ``serve``, ``worker`` and ``migrate``, and what they share.

This module owns reading the server settings from the environment (with a clear error when
the server extra is missing), logging setup, and running the ASGI app under uvicorn on
uvloop; the token and demo commands use the same helpers. Server-side imports happen inside
the functions so that the SDK part of the package stays importable with only httpx +
pydantic installed.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ability_gateway.server.config import Settings


def _settings() -> Settings:
    try:
        from ability_gateway.server.config import get_settings
    except ImportError as exc:  # the server extra is missing
        raise typer.BadParameter(
            "the server is not installed: pip install 'ability-gateway[server]'"
        ) from exc
    return get_settings()


def get_settings_cache_clear() -> None:
    from ability_gateway.server.config import get_settings

    get_settings.cache_clear()


def _configure_logging(settings: Settings) -> None:
    """The root log handler: GATEWAY_LOG_LEVEL, GATEWAY_LOG_FORMAT (see server/logs.py)."""
    from ability_gateway.server.logs import configure

    configure(settings.log_level, settings.log_format)


def _run_server(settings: Settings, host: str, port: int, on_ready: str | None = None) -> None:
    import uvicorn

    from ability_gateway.server.app import create_app
    from ability_gateway.server.serving import server_config

    # httptools with a request-head size cap and a head-read timeout (see server/serving.py).
    server = uvicorn.Server(server_config(create_app(settings), settings, host, port))

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if on_ready and server.started:
            print(on_ready, flush=True)
        await task

    import uvloop

    uvloop.run(serve())


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GATEWAY_PORT).")] = None,
) -> None:
    """Start the gateway with its settings from the environment (GATEWAY_*)."""
    settings = _settings()
    _configure_logging(settings)
    # The address given here is the one the default public URL (local media) names.
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": settings.port if port is None else port}
    )
    _run_server(settings, settings.host, settings.port)


def worker() -> None:
    """Run background jobs only (no HTTP): scale job execution apart from serving."""
    import uvloop

    from ability_gateway.server.abilities.catalog import Catalog
    from ability_gateway.server.lifecycle import gateway_state

    settings = _settings()
    _configure_logging(settings)
    catalog = Catalog.load(settings.catalog_file)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with gateway_state(settings, catalog, run_jobs=True) as state:
            print(f"worker {state.runner.owner} running", flush=True)
            await stop.wait()

    uvloop.run(run())


def migrate() -> None:
    """Apply database migrations (the gateway also does this at start)."""
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head

    settings = _settings()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    print("database is up to date")

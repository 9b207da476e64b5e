"""The ``ability-gateway`` command: server, worker, simulator and admin commands.

Server-side imports happen inside the commands so that the SDK part of the
package stays importable with only httpx + pydantic installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ability_gateway.server.config import Settings

app = typer.Typer(
    name="ability-gateway",
    help="Ability Gateway: one stable REST API over Coze workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("coze-sim")
def coze_sim(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    token: Annotated[
        list[str] | None,
        typer.Option("--token", help="Accepted Bearer token (repeatable). Default: pat_simulator."),
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="Added latency per workflow run, in ms.")] = 0.0,
    fail_rate: Annotated[
        float, typer.Option(help="Share of runs that fail with 720701013 (0..1).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for the fault injection.")] = 0,
    job_seconds: Annotated[
        float, typer.Option(help="How long external generation jobs take, in seconds.")
    ] = 5.0,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base URL the simulator puts in the file URLs it returns."),
    ] = None,
    job_fail_rate: Annotated[
        float,
        typer.Option(help="Share of external generation jobs that end failed (0..1)."),
    ] = 0.0,
    notify_url: Annotated[
        str | None,
        typer.Option(help="POST each finished job's signed notice to NOTIFY_URL/{job_id}."),
    ] = None,
    notify_secret: Annotated[
        str | None,
        typer.Option(help="Notice signing secret: whsec_<base64>, or any string (its UTF-8)."),
    ] = None,
    throttle_every: Annotated[
        int,
        typer.Option(help="Answer every Nth run-history request with code 4009 (0 = off)."),
    ] = 0,
    oauth_app: Annotated[
        list[str] | None,
        typer.Option(
            "--oauth-app",
            metavar="APP_ID:KID:PEM_PATH",
            help="Register an OAuth service app for POST /api/permission/oauth2/token: JWT iss, "
            "JWT header kid, and the file of its RSA public key in PEM (repeatable).",
        ),
    ] = None,
    allow_remote_images: Annotated[
        bool,
        typer.Option(help="Download source images from hosts beyond loopback (default: refused)."),
    ] = False,
) -> None:
    """Run the local Coze API simulator (the eight workflows + a job query one, real PNGs)."""
    from ability_gateway.simulator.app import SimulatorConfig, serve
    from ability_gateway.simulator.oauth import read_oauth_app_option

    try:
        oauth_apps = tuple(read_oauth_app_option(value) for value in oauth_app or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--oauth-app") from exc
    config = SimulatorConfig(
        tokens=tuple(token or ("pat_simulator",)),
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        job_seconds=job_seconds,
        public_url=public_url,
        job_fail_rate=job_fail_rate,
        notify_url=notify_url,
        notify_secret=notify_secret,
        throttle_every=throttle_every,
        oauth_apps=oauth_apps,
        allow_remote_images=allow_remote_images,
    )
    serve(host=host, port=port, config=config)


token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Migrations log every plugin they load at INFO; only their problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GATEWAY_PORT).")] = None,
) -> None:
    """Start the gateway with its settings from the environment (GATEWAY_*)."""
    settings = _settings()
    _configure_logging(settings.log_level)
    # The address given here is the one the default public URL (local media) names.
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": settings.port if port is None else port}
    )
    _run_server(settings, settings.host, settings.port)


@app.command()
def worker() -> None:
    """Run background jobs only (no HTTP): scale job execution apart from serving."""
    import uvloop

    from ability_gateway.server.abilities.catalog import Catalog
    from ability_gateway.server.lifecycle import gateway_state

    settings = _settings()
    _configure_logging(settings.log_level)
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


@app.command()
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


async def _token_create(
    settings: Settings,
    name: str,
    admin: bool,
    expires_in_days: float | None,
    rate_limit: int | None = None,
    max_concurrent: int | None = None,
) -> dict[str, object]:
    from ability_gateway.server.auth.service import create_token
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head

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
    }


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
) -> None:
    """Create a token. It is shown once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("must not be empty", param_hint="--name")
    if expires_in_days is not None and expires_in_days <= 0:
        raise typer.BadParameter("must be positive", param_hint="--expires-in-days")
    created = asyncio.run(
        _token_create(_settings(), name, admin, expires_in_days, rate_limit, max_concurrent)
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

    settings = _settings()

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
    from rich.table import Table

    table = Table("id", "name", "prefix", "scopes", "created", "expires", "revoked")

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
) -> None:
    """Change a token's limits (running nodes apply it within GATEWAY_AUTH_CACHE_SECONDS)."""
    from ability_gateway.server.auth.service import set_token_limits
    from ability_gateway.server.db import Database
    from ability_gateway.server.migrate import upgrade_to_head

    values: dict[str, int | None] = {}
    if rate_limit is not None:
        values["rate_limit_per_minute"] = rate_limit or None
    if max_concurrent is not None:
        values["max_concurrent_tasks"] = max_concurrent or None
    if not values:
        raise typer.BadParameter("give --rate-limit and/or --max-concurrent")
    settings = _settings()

    async def run() -> bool:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(db)
            return await set_token_limits(db, token_id, values)
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

    settings = _settings()

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


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """In a child process: get SIGTERM when the parent dies, however it dies (Linux)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    sim_port: Annotated[int, typer.Option(help="Coze simulator port.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface for both.")] = "127.0.0.1",
) -> None:
    """Start the Coze simulator and the gateway on SQLite + ./data, with a fresh demo token."""
    import base64
    import secrets

    sim_url = f"http://{host}:{sim_port}"
    notice_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    # The demo always runs against its own simulator, whatever the shell exports.
    os.environ["GATEWAY_COZE_BASE_URL"] = sim_url
    os.environ["GATEWAY_COZE_API_TOKEN"] = "pat_simulator"
    os.environ["GATEWAY_PROVIDER_CALLBACK_SECRET"] = notice_secret
    # Its Coze is its own simulator on this machine: it may read the simulator's image URLs.
    os.environ["GATEWAY_COZE_ALLOW_INTERNAL_IMAGE_URLS"] = "true"
    # Callbacks to a receiver on this machine are the point of a demo.
    os.environ.setdefault("GATEWAY_EGRESS_ALLOW", "127.0.0.0/8")
    get_settings_cache_clear()
    settings = _settings()
    _configure_logging(settings.log_level)
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ability_gateway",
            "coze-sim",
            "--host",
            host,
            "--port",
            str(sim_port),
            "--notify-url",
            f"http://{host}:{port}/api/provider_callbacks/coze",
            "--notify-secret",
            notice_secret,
        ],
        preexec_fn=_die_with_parent,
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down; turning it into SystemExit
    # lets the `finally` below stop the simulator too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _wait_http(f"{sim_url}/healthz", 30)
        created = asyncio.run(_token_create(settings, "demo", True, None))
        base = f"http://{host}:{port}"
        image = f"{sim_url}/files/samples/landscape.png"
        body = json.dumps({"inputs": {"url": image, "shuru": "水彩风格"}}, ensure_ascii=False)
        banner = "\n".join(
            [
                "",
                "Ability Gateway demo is running (Coze simulator behind it).",
                f"  gateway:   {base}   (API docs: {base}/docs)",
                f"  simulator: {sim_url}",
                f"  token:     {created['token']}",
                "  for the SDK and CLI:",
                f"    export GATEWAY_URL={base} GATEWAY_TOKEN={created['token']}",
                f"  callback secret: {created['callbackSecret']}",
                "",
                "Try:",
                f"  curl -s {base}/api/abilities -H 'Authorization: Bearer {created['token']}'",
                f"  curl -s {base}/api/abilities/ability_coze_prompt_extract/invoke \\",
                f"    -H 'Authorization: Bearer {created['token']}' \\",
                f"    -H 'Content-Type: application/json' -d '{body}'",
                "",
                "Ctrl-C stops both.",
            ]
        )
        settings = settings.model_copy(update={"host": host, "port": port})
        _run_server(settings, host, port, on_ready=banner)
    finally:
        simulator.terminate()
        try:
            simulator.wait(10)
        except subprocess.TimeoutExpired:
            simulator.kill()


def _add_client_commands() -> None:
    """The client commands need the SDK only; a missing server extra must not hide them."""
    from ability_gateway._cli_client import abilities_app, invoke, task_app

    app.add_typer(abilities_app, name="abilities")
    app.add_typer(task_app, name="task")
    app.command("invoke")(invoke)


_add_client_commands()


def main() -> None:
    app()

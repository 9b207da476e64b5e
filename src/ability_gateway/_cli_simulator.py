"""The ``coze-sim`` command: the local Coze API simulator in the foreground.

This module owns the command's options, one per :class:`~ability_gateway.simulator.SimulatorConfig`
knob plus the address to bind, and turns them into a config for
:func:`ability_gateway.simulator.app.serve`. The simulator (aiohttp) is imported inside the
command, so the SDK part of the package stays importable without the server extra.
"""

from __future__ import annotations

from typing import Annotated

import typer


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

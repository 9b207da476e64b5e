"""The ``ability-gateway`` command: server, worker, simulator and admin commands.

Server-side imports happen inside the commands so that the SDK part of the
package stays importable with only httpx + pydantic installed.
"""

from __future__ import annotations

from typing import Annotated

import typer

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
) -> None:
    """Run the local Coze API simulator (the eight workflows, real PNG outputs)."""
    from ability_gateway.simulator.app import SimulatorConfig, serve

    config = SimulatorConfig(
        tokens=tuple(token or ("pat_simulator",)),
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        job_seconds=job_seconds,
        public_url=public_url,
    )
    serve(host=host, port=port, config=config)


def main() -> None:
    app()

"""The simulator's HTTP application: Coze's workflow endpoints plus the files it hands out.

Routes::

    POST /api/permission/oauth2/token                          exchange a signed JWT for a token
    POST /api/permission/oauth2/account/{account_id}/token     the same (enterprise multi-org path)
    POST /v1/workflow/run                                      run a workflow (sync or is_async)
    GET  /v1/workflows/{workflow_id}/run_histories/{execute_id} a run's record (poll async runs)
    GET  /v1/sim/jobs/{job_id}                                 a job's state (simulator only)
    GET  /files/{width}x{height}/{name}.png                    a generated image (see files.py)
    GET  /files/samples/{sample}.png                           a sample source image
    GET  /healthz                                              {"status": "ok"}

``GET /v1/sim/jobs/{job_id}`` is **not part of Coze's API**: an introspection aid for tests and
demos. With a valid Bearer token it answers ``{"code": 0, "msg": "", "data": {...}}`` where ``data``
is the job report of jobs.py as an object (the query workflow returns the same thing as a JSON
string), image URLs on ``public_url`` or the request's origin; an unknown id is
``{"code": 4314, "msg": "job not found"}``.

The knobs are :class:`SimulatorConfig`'s (config.py). The routes live by concern: runs, run
history and jobs in routes_runs.py, the OAuth exchange in routes_oauth.py, files in
routes_files.py; the state they share is state.py's, the envelope they answer in envelope.py's.
This module assembles them (with ``/healthz``) into the application and serves it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from aiohttp import web

from ability_gateway.simulator.config import SimulatorConfig
from ability_gateway.simulator.envelope import JSON_CONTENT_TYPE, logid_middleware
from ability_gateway.simulator.routes_files import get_file
from ability_gateway.simulator.routes_oauth import oauth_token
from ability_gateway.simulator.routes_runs import get_job, get_run_history, run_workflow
from ability_gateway.simulator.state import SIMULATOR, SimulatorState

__all__ = ["SimulatorConfig", "create_app", "serve"]

_MAX_REQUEST_BYTES = 20 * 1024 * 1024  # Coze's documented request size limit for workflow APIs


async def get_health(_request: web.Request) -> web.Response:
    """``GET /healthz``: readiness for tests and process managers."""
    return web.Response(body=b'{"status":"ok"}', headers={"Content-Type": JSON_CONTENT_TYPE})


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the simulator application (start it with :func:`serve` or any aiohttp runner)."""
    sim = SimulatorState(config or SimulatorConfig())
    app = web.Application(middlewares=[logid_middleware], client_max_size=_MAX_REQUEST_BYTES)
    app[SIMULATOR] = sim

    async def lifespan(_app: web.Application) -> AsyncIterator[None]:
        await sim.start()
        yield
        await sim.stop()

    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/api/permission/oauth2/token", oauth_token)
    app.router.add_post("/api/permission/oauth2/account/{account_id}/token", oauth_token)
    app.router.add_post("/v1/workflow/run", run_workflow)
    app.router.add_get("/v1/workflows/{workflow_id}/run_histories/{execute_id}", get_run_history)
    app.router.add_get("/v1/sim/jobs/{job_id}", get_job)
    app.router.add_get("/files/{path:.+}", get_file)
    app.router.add_get("/healthz", get_health)
    return app


def serve(host: str, port: int, config: SimulatorConfig | None = None) -> None:
    """Run the simulator until SIGINT or SIGTERM, then shut down cleanly (exit status 0)."""

    def announce(_message: str) -> None:
        sys.stdout.write(f"Coze simulator listening on http://{host}:{port}\n")
        sys.stdout.flush()

    web.run_app(
        create_app(config),
        host=host,
        port=port,
        access_log=None,
        print=announce,
        shutdown_timeout=2.0,
        handle_signals=True,
    )

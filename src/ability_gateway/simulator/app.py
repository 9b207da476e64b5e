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

Knobs (:class:`SimulatorConfig`):

* ``tokens``: accepted Bearer tokens; anything else is ``4100 authentication is invalid``.
* ``oauth_apps``: ``(app_id, kid, public_key_pem)`` triples, the OAuth service apps whose RS256
  JWTs ``POST /api/permission/oauth2/token`` exchanges for ``czs_…`` access tokens (reference
  §7; see oauth.py for the checks, errors and HTTP statuses). An issued token is accepted as a
  Bearer token on every other route, like ``tokens``, until its ``expires_in``; then it is
  ``4100`` again. The account id in the enterprise path is not checked.
* ``latency_ms``: every run request (sync run or async submit) waits this long before answering,
  with ``asyncio.sleep`` so thousands of requests can wait at once.
* ``fail_rate``: the share of runs that fail with ``720701013`` ("server issues"), decided by a
  ``random.Random(seed)`` draw per run in arrival order, so a given seed replays the same sequence.
  A failing sync run answers the error; a failing async run is submitted fine and its history
  turns ``Fail``. It applies to every workflow run (a failed generation run starts no job) and
  never to job outcomes.
* ``job_fail_rate``: the share of external jobs that end ``failed`` instead of ``succeeded``,
  decided per job from SHA-256 of ``seed`` and the run's input digest (see jobs.py), so the same
  inputs and seed always give the same outcome. ``job_fail_rate=1`` fails every job while the
  submitting runs still succeed.
* ``job_seconds``: how long the external generation jobs take (see jobs.py); may be fractional.
* ``public_url``: the base of returned file URLs; by default the origin the request came in on,
  so whoever called can fetch them.
* ``notify_url`` + ``notify_secret``: send each job's signed completion notice to
  ``{notify_url}/{job_id}`` when it finishes (see notices.py for the format, signature, retries,
  and why jobs finishing while the simulator is down are never notified). ``notify_secret`` is
  ``whsec_<base64 key>`` (Standard Webhooks) or, as a convenience, any other string whose UTF-8
  bytes are the key; it is required with ``notify_url``.
* ``throttle_every``: when ``N > 0``, every Nth request to the run-history route (counted from
  process start, whatever its token or ids) answers HTTP 200
  ``{"code": 4009, "msg": "Request rate exceeded. Please retry later."}`` instead, to exercise
  a poller's backoff. 0 (the default) turns it off.

An async run stays ``Running`` for ``max(latency_ms / 1000, 0.2)`` seconds after its submit is
answered, then executes: the 0.2 s floor keeps the ``Running`` state observable even with no latency
configured, which is what a poller must be tested against.

Every response carries ``X-Tt-Logid`` (and JSON bodies repeat it as ``detail.logid``); business
errors are HTTP 200 with a non-zero ``code``, as in the cloud API.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from ability_gateway.simulator.files import generated_path, parse_file_path
from ability_gateway.simulator.jobs import JobRegistry
from ability_gateway.simulator.notices import Notifier, secret_key
from ability_gateway.simulator.oauth import COZE_AUDIENCES, OAuthError, OAuthServer
from ability_gateway.simulator.png import render_png
from ability_gateway.simulator.protocol import (
    CODE_AUTH_INVALID,
    CODE_BAD_PARAMETER,
    CODE_EXECUTE_FAILED,
    CODE_RATE_LIMITED,
    CODE_RECORD_NOT_FOUND,
    CODE_WORKFLOW_NOT_FOUND,
    MSG_AUTH_INVALID,
    MSG_JOB_NOT_FOUND,
    MSG_RATE_LIMITED,
    MSG_RECORD_NOT_FOUND,
    MSG_SERVER_ISSUES,
    MSG_WORKFLOW_ID_NOT_POSITIVE,
    MSG_WORKFLOW_NOT_FOUND,
    ExecuteIdFactory,
    connector_uid,
    dumps,
    new_logid,
)
from ability_gateway.simulator.runs import RUN_MODE_ASYNC, RUN_MODE_SYNC, RunRecord, RunStore
from ability_gateway.simulator.sources import SourceImageError, SourceImages
from ability_gateway.simulator.workflows import (
    WORKFLOWS,
    BadParameter,
    Inputs,
    Workflow,
    WorkflowFailure,
)

__all__ = ["SimulatorConfig", "create_app", "serve"]

logger = logging.getLogger(__name__)

MIN_ASYNC_SECONDS = 0.2
"""Shortest time an async run stays ``Running`` (see the module docstring)."""
_MAX_REQUEST_BYTES = 20 * 1024 * 1024  # Coze's documented request size limit for workflow APIs
_RENDER_IN_THREAD_PIXELS = 1_000_000  # bigger images are encoded off the event loop
_JSON = "application/json; charset=utf-8"
_FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; see the module docstring for each knob."""

    tokens: tuple[str, ...] = ("pat_simulator",)
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    seed: int = 0
    job_seconds: float = 5.0
    public_url: str | None = None
    job_fail_rate: float = 0.0
    notify_url: str | None = None
    notify_secret: str | None = None
    throttle_every: int = 0
    oauth_apps: tuple[tuple[str, str, str], ...] = ()
    allow_remote_images: bool = False  # download source images from beyond loopback

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("at least one accepted token is required")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.job_seconds < 0:
            raise ValueError("job_seconds must not be negative")
        if not 0.0 <= self.job_fail_rate <= 1.0:
            raise ValueError("job_fail_rate must be between 0 and 1")
        if self.throttle_every < 0:
            raise ValueError("throttle_every must not be negative")
        for name in ("public_url", "notify_url"):
            value = getattr(self, name)
            if value is not None:
                url = URL(value)
                if url.scheme not in ("http", "https") or not url.host:
                    raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
        if self.notify_secret is not None:
            secret_key(self.notify_secret)  # raises ValueError when unusable
        if self.notify_url is not None and self.notify_secret is None:
            raise ValueError("notify_secret is required with notify_url")
        OAuthServer(self.oauth_apps)  # raises ValueError for a bad key or a duplicate kid


class _Simulator:
    """The process-wide state behind the routes: runs, jobs, fault draws, background runs."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.latency_seconds = config.latency_ms / 1000.0
        self.runs = RunStore()
        self.notifier = (
            Notifier(config.notify_url, config.notify_secret)
            if config.notify_url and config.notify_secret
            else None
        )
        self.jobs = JobRegistry(
            config.job_seconds,
            fail_rate=config.job_fail_rate,
            seed=config.seed,
            on_create=self.notifier.schedule if self.notifier else None,
        )
        self.sources = SourceImages(allow_remote=config.allow_remote_images)
        self.execute_ids = ExecuteIdFactory()
        self.public_base = config.public_url.rstrip("/") if config.public_url else None
        self.public_origin = str(URL(config.public_url).origin()) if config.public_url else None
        self._faults = random.Random(config.seed)
        # Coze reports the token owner as connector_uid when ext.user_id is absent; derive a stable
        # 16-digit "user id" per accepted token.
        self._token_uids = {token: connector_uid(token) for token in config.tokens}
        self.oauth = OAuthServer(config.oauth_apps)
        self._own_netloc = urlsplit(config.public_url).netloc if config.public_url else None
        self._background: set[asyncio.Task[None]] = set()
        self._history_requests = 0

    def throttled(self) -> bool:
        """Count a run-history request; ``True`` if it is one the throttle knob rejects."""
        if not self.config.throttle_every:
            return False
        self._history_requests += 1
        return self._history_requests % self.config.throttle_every == 0

    def base_url(self, request: web.Request) -> str:
        """Where returned file URLs point: ``public_url`` or the request's origin."""
        return self.public_base or str(request.url.origin())

    def owner_of(self, request: web.Request) -> str | None:
        """The connector uid of the request's Bearer token, or ``None`` if it is not accepted."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        uid = self._token_uids.get(token)
        return uid if uid is not None else self.oauth.owner_of(token)

    def audiences(self, request: web.Request) -> list[str]:
        """The ``aud`` values a JWT may carry: the cloud hosts and this simulator's host:port."""
        own = [request.host, self._own_netloc]
        return [*COZE_AUDIENCES, *(netloc for netloc in own if netloc)]

    def draw_failure(self) -> bool:
        return self._faults.random() < self.config.fail_rate

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the event loop holds tasks only weakly.
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        await self.sources.start()
        if self.notifier is not None:
            await self.notifier.start()

    async def stop(self) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.sources.close()


@dataclass(frozen=True, slots=True)
class _RunContext:
    """A run's view of the simulator (implements ``workflows.RunContext``)."""

    jobs: JobRegistry
    sources: SourceImages
    base_url: str
    own_origins: frozenset[str]

    async def image_size(self, url: str) -> tuple[int, int]:
        try:
            return await self.sources.size(url, self.own_origins)
        except SourceImageError as exc:
            raise WorkflowFailure(f"failed to download image from url {url}: {exc}") from exc

    def file_url(self, width: int, height: int, name: str) -> str:
        return self.base_url + generated_path(width, height, name)


_SIMULATOR = web.AppKey("simulator", _Simulator)


# --------------------------------------------------------------------------------------------
# Envelope helpers.


def _reply(request: web.Request, body: dict[str, Any]) -> web.Response:
    body["detail"] = {"logid": request["logid"]}
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": _JSON})


def _error(request: web.Request, code: int, msg: str) -> web.Response:
    return _reply(request, {"code": code, "msg": msg})


@web.middleware
async def _logid_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request a log id and every response the ``X-Tt-Logid`` header."""
    logid = new_logid()
    request["logid"] = logid
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Tt-Logid"] = logid
        raise
    response.headers["X-Tt-Logid"] = logid
    return response


# --------------------------------------------------------------------------------------------
# Request parsing.


@dataclass(frozen=True, slots=True)
class _RunRequest:
    workflow: Workflow
    inputs: Inputs
    is_async: bool
    bot_id: str
    user_id: str | None


class _NotFound(Exception):
    """The workflow id is well-formed but no such workflow is published (4200)."""


def _parse_workflow_id(value: Any) -> str:
    # Coze's backend reads the id as an int64: absent or 0 trips the "> 0" check, junk is invalid.
    if value is None or value == "":
        raise BadParameter(MSG_WORKFLOW_ID_NOT_POSITIVE)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text.removeprefix("-").isdigit():
            number = int(text)
    if number is None:
        raise BadParameter("The parameter workflow_id is invalid. Please check your input.")
    if number <= 0:
        raise BadParameter(MSG_WORKFLOW_ID_NOT_POSITIVE)
    return str(number)


def _parse_parameters(value: Any) -> dict[str, Any]:
    """``parameters`` may be an object or a JSON string of one (reference §2: accept both)."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise BadParameter(
                "The parameter parameters is not a valid JSON string. Please check your input."
            ) from exc
    if not isinstance(value, dict):
        raise BadParameter(
            "The parameter parameters must be a JSON object. Please check your input."
        )
    return value


def _optional_id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadParameter(f"The parameter {name} is invalid. Please check your input.")
    return str(value)


def _parse_run_request(raw: bytes) -> _RunRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadParameter("The request body is not valid JSON. Please check your input.") from exc
    if not isinstance(body, dict):
        raise BadParameter("The request body must be a JSON object. Please check your input.")
    workflow_id = _parse_workflow_id(body.get("workflow_id"))
    bot_id = _optional_id(body, "bot_id")
    app_id = _optional_id(body, "app_id")
    if bot_id and app_id:
        raise BadParameter(
            "bot_id and app_id cannot be specified at the same time. Please check your input."
        )
    is_async = body.get("is_async", False)
    if is_async is None:
        is_async = False
    if not isinstance(is_async, bool):
        raise BadParameter("The parameter is_async must be a boolean. Please check your input.")
    ext = body.get("ext")
    if ext is not None and not isinstance(ext, dict):
        raise BadParameter("The parameter ext must be a map of strings. Please check your input.")
    user_id = ext.get("user_id") if ext else None
    parameters = _parse_parameters(body.get("parameters"))
    workflow = WORKFLOWS.get(workflow_id)
    if workflow is None:
        raise _NotFound(workflow_id)
    return _RunRequest(
        workflow=workflow,
        inputs=workflow.bind(parameters),
        is_async=is_async,
        bot_id=bot_id or "0",
        user_id=str(user_id) if user_id not in (None, "") else None,
    )


# --------------------------------------------------------------------------------------------
# Handlers.


async def oauth_token(request: web.Request) -> web.Response:
    """``POST /api/permission/oauth2/token``: a signed JWT for a ``czs_…`` access token."""
    sim = request.app[_SIMULATOR]
    try:
        token, expires_in = sim.oauth.exchange(
            request.headers.get("Authorization"), await request.read(), sim.audiences(request)
        )
    except OAuthError as exc:
        return web.Response(
            status=exc.status, body=orjson.dumps(exc.body()), headers={"Content-Type": _JSON}
        )
    body = {"access_token": token, "expires_in": expires_in}
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": _JSON})


async def run_workflow(request: web.Request) -> web.Response:
    """``POST /v1/workflow/run``: the sync run, or the submit of an async one."""
    sim = request.app[_SIMULATOR]
    owner = sim.owner_of(request)
    if owner is None:
        return _error(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    try:
        run = _parse_run_request(await request.read())
    except BadParameter as exc:
        return _error(request, CODE_BAD_PARAMETER, str(exc))
    except _NotFound:
        return _error(request, CODE_WORKFLOW_NOT_FOUND, MSG_WORKFLOW_NOT_FOUND)

    if sim.latency_seconds > 0:
        await asyncio.sleep(sim.latency_seconds)
    fails = sim.draw_failure()
    record = sim.runs.start(
        execute_id=sim.execute_ids(),
        workflow_id=run.workflow.workflow_id,
        run_mode=RUN_MODE_ASYNC if run.is_async else RUN_MODE_SYNC,
        logid=request["logid"],
        connector_uid=run.user_id or owner,
        bot_id=run.bot_id,
    )
    origin = str(request.url.origin())
    context = _RunContext(
        jobs=sim.jobs,
        sources=sim.sources,
        base_url=sim.base_url(request),
        own_origins=frozenset(o for o in (origin, sim.public_origin) if o),
    )

    if run.is_async:
        sim.spawn(_finish_async_run(sim, run, context, record, fails))
        return _reply(
            request,
            {
                "code": 0,
                "msg": "Success",
                "execute_id": record.execute_id,
                "debug_url": record.debug_url,
            },
        )

    if fails:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, MSG_SERVER_ISSUES)
        return _failure(request, record, MSG_SERVER_ISSUES)
    try:
        outcome = await run.workflow.run(run.inputs, context)
    except WorkflowFailure as exc:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, exc.message)
        return _failure(request, record, exc.message)
    sim.runs.succeed(record, outcome.end_vars, outcome.usage)
    return _reply(
        request,
        {
            "code": 0,
            "msg": "",
            "data": dumps(outcome.end_vars),
            "execute_id": record.execute_id,
            "debug_url": record.debug_url,
            "usage": outcome.usage.as_dict(),
        },
    )


def _failure(request: web.Request, record: RunRecord, msg: str) -> web.Response:
    # The cloud's failed-run body: code, msg and the trace link, no data.
    return _reply(request, {"code": CODE_EXECUTE_FAILED, "msg": msg, "debug_url": record.debug_url})


async def _finish_async_run(
    sim: _Simulator, run: _RunRequest, context: _RunContext, record: RunRecord, fails: bool
) -> None:
    await asyncio.sleep(max(sim.latency_seconds, MIN_ASYNC_SECONDS))
    if fails:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, MSG_SERVER_ISSUES)
        return
    try:
        outcome = await run.workflow.run(run.inputs, context)
    except WorkflowFailure as exc:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, exc.message)
    except Exception:
        # Nothing may leave a run Running forever: an unexpected error still ends it, visibly.
        logger.exception("async run %s crashed", record.execute_id)
        sim.runs.fail(record, CODE_EXECUTE_FAILED, "Workflow execution failure: internal error")
    else:
        sim.runs.succeed(record, outcome.end_vars, outcome.usage)


async def get_run_history(request: web.Request) -> web.Response:
    """``GET /v1/workflows/{workflow_id}/run_histories/{execute_id}``."""
    sim = request.app[_SIMULATOR]
    if sim.throttled():
        return _error(request, CODE_RATE_LIMITED, MSG_RATE_LIMITED)
    if sim.owner_of(request) is None:
        return _error(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    record = sim.runs.get(request.match_info["execute_id"])
    if record is None or record.workflow_id != request.match_info["workflow_id"]:
        return _error(request, CODE_RECORD_NOT_FOUND, MSG_RECORD_NOT_FOUND)
    return _reply(request, {"code": 0, "msg": "", "data": [record.history_item()]})


async def get_job(request: web.Request) -> web.Response:
    """``GET /v1/sim/jobs/{job_id}``: a job's report (simulator only, not part of Coze's API)."""
    sim = request.app[_SIMULATOR]
    if sim.owner_of(request) is None:
        return _error(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    job = sim.jobs.get(request.match_info["job_id"])
    if job is None:
        return _error(request, CODE_RECORD_NOT_FOUND, MSG_JOB_NOT_FOUND)
    return _reply(
        request, {"code": 0, "msg": "", "data": sim.jobs.report(job, sim.base_url(request))}
    )


async def get_file(request: web.Request) -> web.Response:
    """``GET /files/...``: a generated or sample PNG (see files.py for the scheme)."""
    ref = parse_file_path(request.path)
    if ref is None:
        raise web.HTTPNotFound(text="no such file")
    etag = f'"{ref.width}x{ref.height}-{ref.seed:016x}"'
    headers = {"Cache-Control": _FILE_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    if ref.width * ref.height > _RENDER_IN_THREAD_PIXELS:
        body = await asyncio.to_thread(render_png, ref.width, ref.height, ref.seed)
    else:
        body = render_png(ref.width, ref.height, ref.seed)
    return web.Response(body=body, content_type="image/png", headers=headers)


async def get_health(_request: web.Request) -> web.Response:
    """``GET /healthz``: readiness for tests and process managers."""
    return web.Response(body=b'{"status":"ok"}', headers={"Content-Type": _JSON})


# --------------------------------------------------------------------------------------------
# Assembly.


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the simulator application (start it with :func:`serve` or any aiohttp runner)."""
    sim = _Simulator(config or SimulatorConfig())
    app = web.Application(middlewares=[_logid_middleware], client_max_size=_MAX_REQUEST_BYTES)
    app[_SIMULATOR] = sim

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

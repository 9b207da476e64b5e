"""The process's logs: readable text (the default) or one JSON object a line.

``GATEWAY_LOG_FORMAT=text`` writes ``<time> <LEVEL> <logger>: <message> key=value …``;
``json`` writes ``{"ts", "level", "logger", "event" | "message", …fields}`` per line, and
an exception as ``exc``. Either way every line goes to stderr through one root handler
(:func:`configure`), uvicorn's included (``serving.py`` gives it no handlers of its own).

Events (:func:`log_event`: a name and fields; in text the name is the message)::

    request.start      DEBUG   method, path, requestId                   (RequestLogMiddleware)
    request.end        INFO    method, route | path, status, durationMs, requestId,
                               tokenId, ability, taskId, … (a probe's 2xx/3xx: DEBUG;
                               a 5xx: WARNING)
    coze.call          INFO    executor, operation, workflowId, httpStatus, cozeCode,
                               logid, executeId, durationMs, outcome (no answer: WARNING)
    task.transition    INFO    taskId, ability, status, … (accepted, running, ended)
    callback.attempt   INFO    deliveryId, taskId, attempt, receiverHost, receiverStatus,
                               outcome, durationMs (gave up: WARNING)

Every line also carries the fields of its context: ``requestId`` inside a request and
those :func:`log_context` binds (a task's step binds ``taskId`` and ``ability``, so a Coze
call is tied to its task).

What is never logged: a token, a callback secret, the Coze credentials, a callback
header's value, a request or callback body, an image; of a request only its method and
route template (the path itself only before routing, at DEBUG, or when no route matched;
never a media key: its URL is its capability), never its query. Fields are chosen one by
one at each call site, never copied from a row or a request wholesale.

A transition written inside a write transaction (:func:`log_after_commit`) is logged when
that transaction commits and dropped when it rolls back: a batch of group-committed
SQLite writes that is rolled back and run again one by one (``db.py``) logs each once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ability_gateway.server.http import current_request_id

logger = logging.getLogger(__name__)

LogFormat = Literal["text", "json"]

_EVENT = "gateway_event"
_FIELDS = "gateway_fields"
_NO_FIELDS: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("log_context", default=_NO_FIELDS)
_PENDING = "ability_gateway.logs.pending"  # Connection.info: lines waiting for the commit
# Fields a request's handlers add (``annotate``), kept in the ASGI scope's state.
_REQUEST_FIELDS = "log_fields"
# Path parameters worth a field of their own in ``request.end`` (others, like a media
# key, are left out).
_PATH_FIELDS = {
    "ability_id": "ability",
    "task_id": "taskId",
    "log_id": "logId",
    "external_id": "externalId",
    "token_id": "targetTokenId",
}
# Polled by load balancers and scrapers: their successes only at DEBUG.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_BARE = re.compile(r"[\w./:{}@+,-]+")
_MAX_PATH = 200


# --- writing an event ------------------------------------------------------------------


def log_event(
    log: logging.Logger, name: str, level: int = logging.INFO, /, **fields: object
) -> None:
    """Log the event ``name`` with the context's fields and ``fields`` (which win; those
    that are None are left out)."""
    if log.isEnabledFor(level):
        merged = {**_context_fields(), **fields}
        log.log(level, name, extra={_EVENT: name, _FIELDS: merged}, stacklevel=2)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block (in this task's context)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def log_after_commit(
    conn: Connection,
    log: logging.Logger,
    name: str,
    level: int = logging.INFO,
    /,
    **fields: object,
) -> None:
    """:func:`log_event` once the write transaction of ``conn`` commits; nothing if it
    rolls back (a savepoint rolled back inside it does not drop it). Give every field: the
    write may run on another thread (SQLite's writer), outside the caller's context."""
    if log.isEnabledFor(level):
        conn.info.setdefault(_PENDING, []).append((log, level, name, fields))


def emit_on_commit(engine: Engine) -> None:
    """Make :func:`log_after_commit` work on the connections of ``engine``."""
    event.listen(engine, "commit", _flush_pending)
    event.listen(engine, "rollback", _drop_pending)


def _flush_pending(conn: Connection) -> None:
    if conn.invalidated:  # nothing commits on a lost connection
        return
    pending = conn.info.pop(_PENDING, None)
    for log, level, name, fields in pending or ():
        log.log(level, name, extra={_EVENT: name, _FIELDS: fields})


def _drop_pending(conn: Connection) -> None:
    # A lost connection: ``info`` cannot be reached without reconnecting, and is emptied
    # when the pool connects again, so what waited there is dropped with it.
    if not conn.invalidated:
        conn.info.pop(_PENDING, None)


def _context_fields() -> dict[str, object]:
    """The fields of the current context: the request's id, then :func:`log_context`'s."""
    request_id = current_request_id()
    found: dict[str, object] = {"requestId": request_id} if request_id else {}
    found.update(_context.get())
    return found


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """An event's fields (its context's taken when it was logged), or, for any other line,
    the context's now; None left out."""
    found = getattr(record, _FIELDS, None)
    if found is None:
        found = _context_fields()
    return {k: v for k, v in found.items() if v is not None}


# --- formats ---------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value …`` (values quoted when needed)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())


def _text_value(value: object) -> str:
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if _BARE.fullmatch(text):
        return text
    return orjson.dumps(text).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (UTC, ms), ``level``, ``logger``, then ``event``
    and its fields or ``message``, and ``exc`` / ``stack`` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        name = getattr(record, _EVENT, None)
        if name is not None:
            out["event"] = name
        else:
            out["message"] = record.getMessage()
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure(level: str, log_format: LogFormat = "text") -> None:
    """The root handler on stderr with the chosen format, replacing any before it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Python's warnings become log lines too (in json, one object a line, like the rest).
    logging.captureWarnings(True)
    # Migrations log every plugin they load at INFO; only their problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


# --- requests --------------------------------------------------------------------------


def annotate(scope: Scope, **fields: object) -> None:
    """Add fields to this request's ``request.end`` line (e.g. the caller's ``tokenId``)."""
    state = scope.setdefault("state", {})
    state.setdefault(_REQUEST_FIELDS, {}).update(fields)


class RequestLogMiddleware:
    """``request.start`` (DEBUG) and ``request.end`` (INFO): one line a request.

    Runs inside ``RequestIdMiddleware`` (the request id is set); an exception that escapes
    the app is logged with status 500, the answer ``RequestIdMiddleware`` gives it. A pure
    ASGI middleware, off: one level check a request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A 5xx is logged at WARNING: below that level nothing is logged at all.
        if scope["type"] != "http" or not logger.isEnabledFor(logging.WARNING):
            await self.app(scope, receive, send)
            return
        if logger.isEnabledFor(logging.DEBUG):
            log_event(
                logger,
                "request.start",
                logging.DEBUG,
                method=scope.get("method"),
                path=_path(scope),
            )
        started = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            if status is None:
                status = 500
            raise
        finally:
            _log_end(scope, status, started)


def _path(scope: Scope) -> str:
    """The request's path, capped, without a media key (the URL is its capability)."""
    path = str(scope.get("path", ""))
    if path.startswith("/media/"):
        return "/media/…"
    return path if len(path) <= _MAX_PATH else path[:_MAX_PATH] + "…"


def _log_end(scope: Scope, status: int | None, started: float) -> None:
    route = getattr(scope.get("route"), "path", None)
    if status is not None and status >= 500:
        level = logging.WARNING
    elif route in _PROBES and (status or 0) < 400:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields: dict[str, object] = {"method": scope.get("method")}
    if isinstance(route, str):
        fields["route"] = route
    else:
        fields["path"] = _path(scope)
    fields["status"] = status
    fields["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
    params = scope.get("path_params") or {}
    for param, field in _PATH_FIELDS.items():
        if param in params:
            fields[field] = params[param]
    fields.update(scope.get("state", {}).get(_REQUEST_FIELDS) or {})
    log_event(logger, "request.end", level, **fields)

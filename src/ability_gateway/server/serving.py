"""The HTTP server ``serve`` and ``demo`` run: uvicorn with httptools, plus two limits it lacks.

uvicorn's httptools protocol reads a request head (request line and headers) of any size and
waits for it for ever, so one client can hold gigabytes or thousands of connections. This
protocol keeps httptools (its C parser is most of uvicorn's speed) and adds::

    head size     the bytes of a head in progress, counted as they arrive; over
                  GATEWAY_MAX_HEADER_BYTES ──► 431 and the connection closed (at most
                  the cap plus one read is ever buffered)
    head timeout  a head not complete GATEWAY_HEADER_TIMEOUT_SECONDS after the connection
                  opened, or after the first byte of a later request on it ──► 408, closed

Between requests uvicorn's own keep-alive timeout closes an idle connection; while the
application answers, a slow client's next (pipelined) head waits without a deadline until
the answer is out, then its clock starts. Both refusals carry the uniform error body and an
``X-Request-ID``. uvicorn's h11 mode has a head-size limit but no head timeout either, and its
pure-Python parser costs more CPU per request; see the README for a reverse proxy's settings.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ability_gateway.server.config import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head-size cap and a head-read timeout."""

    max_header_bytes: ClassVar[int] = 64 * 1024
    header_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # refused and closing: nothing more is parsed or kept
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)
        if (
            self._awaiting_head
            and self._head_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(431, f"The request head is larger than {self.max_header_bytes} bytes")

    # httptools callbacks: a head ends at on_headers_complete; once its message (body
    # included) is parsed, whatever comes next is the head of the next request.
    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # an answer is on its way: the next head can wait for it
            return
        seconds = f"{self.header_timeout:g}"
        self._refuse(408, f"The request head did not arrive within {seconds} s")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        request_id = uuid.uuid4().hex
        body = orjson.dumps({"code": status, "message": message, "requestId": request_id})
        head = b"".join(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"x-request-id: %s\r\n" % request_id.encode(),
                b"connection: close\r\n\r\n",
            ]
        )
        # INFO, not WARNING: a flood of half-sent requests must not flood the log as well.
        self.logger.info("refused a request head: %s", message)
        self.transport.write(head + body)
        self.transport.close()


def guarded_protocol(max_header_bytes: int, header_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class with these limits (uvicorn builds one instance per connection)."""
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout},
    )


def server_config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """How ``serve`` and ``demo`` run uvicorn."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(settings.max_header_bytes, settings.header_timeout_seconds),
        # Our `request.end` line (logs.py) replaces uvicorn's access log, and uvicorn's own
        # lines go to the root handler in GATEWAY_LOG_FORMAT (no logging config of its own).
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        lifespan="on",
    )

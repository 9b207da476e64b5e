"""A loopback TCP proxy a test can cut, to play a database outage without stopping the server.

The gateway's database URL points at the proxy's port; the proxy forwards to the real one.
``cut()`` drops every open connection (statements in flight fail mid-way) and then, as
``mode`` says, either refuses new connections (nothing listens: a server that is down) or
answers each with PostgreSQL's ``57P03 the database system is shutting down``.
``restore()`` forwards again, on the same port. It runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Literal

Mode = Literal["refuse", "shutting_down"]

_SSL_REQUEST = 80877103


def _pg_error(code: str, message: str) -> bytes:
    """A PostgreSQL ErrorResponse message (FATAL)."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    payload = fields + b"\0"
    return b"E" + struct.pack("!I", len(payload) + 4) + payload


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode | None = None  # None: forwarding
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        await self._listen()
        return self.port

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self, mode: Mode = "refuse") -> None:
        self.mode = mode
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        elif mode == "shutting_down" and self._server is None:
            await self._listen()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        self.mode = None
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.cut("refuse")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "shutting_down":
            await self._answer_shutting_down(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _answer_shutting_down(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if length == 8 and struct.unpack("!I", body)[0] == _SSL_REQUEST:
                    writer.write(b"N")  # no TLS; the client sends its startup message next
                    continue
                writer.write(_pg_error("57P03", "the database system is shutting down"))
                await writer.drain()
                break
        writer.transport.abort()

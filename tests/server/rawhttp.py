"""Hand-made HTTP/1.1 exchanges over a plain socket, for what httpx will not send.

A huge or endless body or header, sent chunk by chunk while watching for the server's
answer: the test sees how much it had sent when the server answered (or hung up), so it
can tell a server that refuses early from one that reads everything first. Blocking
sockets: run them with ``asyncio.to_thread`` when the server shares the test's loop.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass
class Exchange:
    sent: int  # bytes sent after the head, before the server answered or hung up
    answer: bytes  # everything read back until the server closed (or the timeout)
    seconds: float  # from connecting to the end of the answer
    closed: bool  # the server closed the connection

    @property
    def status(self) -> int | None:
        line = self.answer.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    @property
    def headers(self) -> dict[str, str]:
        head = self.answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}

    def json(self) -> Any:
        return json.loads(self.answer.split(b"\r\n\r\n", 1)[1])


def filler(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of ``a``, ``chunk`` at a time (a generator: nothing is held)."""
    block = b"a" * chunk
    for _ in range(total // chunk):
        yield block


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    """``parts`` in HTTP/1.1 chunked framing (no final empty chunk: the sender stops first)."""
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"


def exchange(
    port: int, head: bytes, parts: Iterable[bytes] = (), *, timeout: float = 10.0
) -> Exchange:
    """Send ``head``, then ``parts`` one by one until the server answers or hangs up."""
    started = time.monotonic()
    deadline = started + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = 0
    answer = b""
    closed = False
    try:
        try:
            sock.sendall(head)
            for part in parts:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable or time.monotonic() > deadline:
                    break  # an answer (or the server's close) is waiting, or time is up
                sock.sendall(part)
                sent += len(part)
        except OSError:
            pass  # the server hung up mid-send (or stopped reading until the timeout)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            answer += data
    finally:
        sock.close()
    return Exchange(sent, answer, time.monotonic() - started, closed)

"""The server ``ability-gateway serve`` runs: a cap on request heads and a head-read timeout.

Each test starts the real command (a process of its own) with a small timeout, and talks
to it over a plain socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.server.rawhttp import Exchange, MiB, exchange, filler
from tests.support import database_env, gateway_process

HEADER_TIMEOUT = 0.5
MAX_HEADER_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    data_dir: Path = tmp_path_factory.mktemp("serving")
    env = {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "GATEWAY_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        **database_env(),
    }
    with gateway_process(env, data_dir) as url:
        found = urlsplit(url).port
        assert found is not None
        yield found


def assert_refused(answer: Exchange, status: int, message: str) -> None:
    assert answer.status == status, answer.answer[:300]
    body = answer.json()
    assert body == {"code": status, "message": message, "requestId": answer.headers["x-request-id"]}
    assert answer.closed


def test_a_200_megabyte_header_is_refused_quickly(port: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer = exchange(port, head, filler(200 * MiB))
    assert_refused(answer, 431, f"The request head is larger than {MAX_HEADER_BYTES} bytes")
    assert answer.sent < 16 * MiB, answer.sent
    assert answer.seconds < 5


def test_a_half_sent_request_is_closed_after_the_header_timeout(port: int) -> None:
    answer = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert_refused(answer, 408, f"The request head did not arrive within {HEADER_TIMEOUT:g} s")
    assert HEADER_TIMEOUT * 0.9 < answer.seconds < HEADER_TIMEOUT + 3


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(port: int) -> None:
    answer = exchange(port, b"")
    assert answer.status == 408
    assert answer.closed
    assert answer.seconds < HEADER_TIMEOUT + 3


def test_heads_within_the_cap_are_served_and_bodies_do_not_count(port: int) -> None:
    near_cap = b"a" * (MAX_HEADER_BYTES - 1024)
    ok = exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + near_cap + b"\r\n\r\n"
    )
    assert ok.status == 200, ok.answer[:300]
    # A body ten times the head cap, sent right behind its head: answered by the endpoint.
    body = b"{" + b" " * (10 * MAX_HEADER_BYTES) + b"}"
    posted = exchange(
        port,
        b"POST /api/abilities/x/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
    )
    assert posted.status == 401, posted.answer[:300]


def test_a_kept_alive_connection_may_idle_between_requests(port: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # /healthz answers a small JSON object
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            # Idle for longer than the head timeout (less than uvicorn's keep-alive of 5 s).
            time.sleep(HEADER_TIMEOUT * 2)

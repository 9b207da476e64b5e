"""Tests stay on loopback: any attempt to resolve a name or reach an address that is not this
machine's loopback is refused (before the real resolver or connect runs) and recorded.

Installed in the pytest process by tests/conftest.py and, through ``sitecustomize`` in this
directory (put on ``PYTHONPATH`` by tests/support.py), in every Python process the tests
start: gateways, workers, simulators, the demo. A refusal raises :class:`OutsideLoopback`
(an ``OSError``, so the code under test sees a network failure) and appends one JSON line to
the file named by ``ABILITY_GATEWAY_TEST_LOOPBACK_RECORD``; tests/conftest.py fails the test
during which a record appears, and the session if any record is left.

What is guarded: ``socket.getaddrinfo`` (also behind asyncio's ``loop.getaddrinfo`` and
``socket.create_connection``), ``gethostbyname(_ex)``, ``gethostbyaddr``, ``getnameinfo``,
``socket.connect``/``connect_ex``/``sendto`` of IP sockets, and uvloop's loop (its resolver
and connector are native code): ``getaddrinfo``, ``getnameinfo``, ``create_connection``,
``sock_connect``, ``create_datagram_endpoint``.

Only the standard library is imported here: a child's sitecustomize must not import what
the code under test may want to import (or be kept from importing) itself.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import ipaddress
import json
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RECORD_ENV = "ABILITY_GATEWAY_TEST_LOOPBACK_RECORD"
LOOPBACK_NAMES = frozenset({"localhost"})  # answered by /etc/hosts, never by DNS

_lock = threading.Lock()
_record_path: str | None = None
_installed = False


class OutsideLoopback(OSError):
    """A test tried to resolve or reach something other than this machine's loopback."""


def is_loopback_host(host: object) -> bool:
    """Whether looking ``host`` up or connecting to it stays on this machine (no DNS)."""
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard or loopback
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode("ascii", errors="replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]")
    if host == "" or host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:  # the numeric forms the C resolver takes without DNS: 2130706433, 127.1
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False  # a name: only DNS could answer it
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # The unspecified address (0.0.0.0, ::) is what servers bind to; connecting to it stays here.
    return address.is_loopback or address.is_unspecified


def _refuse(what: str, target: object) -> OutsideLoopback:
    entry = {
        "pid": os.getpid(),
        "argv": sys.argv[:6],
        "what": what,
        "target": repr(target),
        "stack": traceback.format_stack(limit=12)[:-2],
    }
    path = _record_path
    if path:
        with _lock, open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    return OutsideLoopback(
        f"test loopback guard: refused to {what} {target!r} (tests must stay on loopback)"
    )


def _check(what: str, host: object) -> None:
    if not is_loopback_host(host):
        raise _refuse(what, host)


def _check_address(sock: socket.socket, address: object, what: str) -> None:
    inet = sock.family in (socket.AF_INET, socket.AF_INET6)
    if inet and isinstance(address, tuple) and not is_loopback_host(address[0]):
        raise _refuse(what, address)


# --- wrappers (each refuses before it calls the real function) ---------------------------


def wrap_getaddrinfo(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        _check("resolve", host)
        return real(host, port, *args, **kwargs)

    return getaddrinfo


def _wrap_by_name(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        _check("resolve", host)
        return real(host, *args, **kwargs)

    return lookup


def _wrap_getnameinfo(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def getnameinfo(sockaddr: Any, *args: Any, **kwargs: Any) -> Any:
        _check("look up the name of", sockaddr[0] if isinstance(sockaddr, tuple) else sockaddr)
        return real(sockaddr, *args, **kwargs)

    return getnameinfo


def _wrap_connect(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def connect(self: socket.socket, address: Any) -> Any:
        _check_address(self, address, "connect to")
        return real(self, address)

    return connect


def _wrap_sendto(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def sendto(self: socket.socket, data: Any, *rest: Any) -> Any:
        if rest:
            _check_address(self, rest[-1], "send to")
        return real(self, data, *rest)

    return sendto


def _patch_uvloop(module: Any) -> None:
    loop_class = module.Loop
    if getattr(loop_class, "_loopback_guarded", False):
        return
    real_getaddrinfo = loop_class.getaddrinfo
    real_getnameinfo = loop_class.getnameinfo
    real_create_connection = loop_class.create_connection
    real_sock_connect = loop_class.sock_connect
    real_datagram = loop_class.create_datagram_endpoint

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        _check("resolve", host)
        return await real_getaddrinfo(self, host, port, *args, **kwargs)

    async def getnameinfo(self: Any, sockaddr: Any, *args: Any, **kwargs: Any) -> Any:
        _check("look up the name of", sockaddr[0] if isinstance(sockaddr, tuple) else sockaddr)
        return await real_getnameinfo(self, sockaddr, *args, **kwargs)

    async def create_connection(
        self: Any, protocol_factory: Any, host: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        if kwargs.get("sock") is None:
            _check("connect to", host)
        return await real_create_connection(self, protocol_factory, host, *args, **kwargs)

    async def sock_connect(self: Any, sock: socket.socket, address: Any) -> Any:
        _check_address(sock, address, "connect to")
        return await real_sock_connect(self, sock, address)

    async def create_datagram_endpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
        remote = kwargs.get("remote_addr")
        if isinstance(remote, tuple):
            _check("send to", remote[0])
        return await real_datagram(self, *args, **kwargs)

    loop_class.getaddrinfo = getaddrinfo
    loop_class.getnameinfo = getnameinfo
    loop_class.create_connection = create_connection
    loop_class.sock_connect = sock_connect
    loop_class.create_datagram_endpoint = create_datagram_endpoint
    loop_class._loopback_guarded = True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a module right after its first import (without importing it before that)."""

    def __init__(self, name: str, patch: Callable[[Any], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        patch = self.patch

        def exec_then_patch(module: Any) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_then_patch
        return spec


def install(record_path: str | None = None) -> None:
    """Guard this process; records go to ``record_path`` (default: the environment's)."""
    global _installed, _record_path
    _record_path = record_path or os.environ.get(RECORD_ENV) or None
    if _installed:
        return
    _installed = True
    socket.getaddrinfo = wrap_getaddrinfo(socket.getaddrinfo)
    socket.gethostbyname = _wrap_by_name(socket.gethostbyname)
    socket.gethostbyname_ex = _wrap_by_name(socket.gethostbyname_ex)
    socket.gethostbyaddr = _wrap_by_name(socket.gethostbyaddr)
    socket.getnameinfo = _wrap_getnameinfo(socket.getnameinfo)
    socket.socket.connect = _wrap_connect(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _wrap_connect(socket.socket.connect_ex)  # type: ignore[method-assign]
    socket.socket.sendto = _wrap_sendto(socket.socket.sendto)  # type: ignore[method-assign]
    if "uvloop" in sys.modules:
        _patch_uvloop(sys.modules["uvloop"])
    else:
        sys.meta_path.insert(0, _PatchOnImport("uvloop", _patch_uvloop))


def read_records(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Whole records from ``offset`` on, and the offset after the last whole one."""
    try:
        with open(path, "rb") as source:
            source.seek(offset)
            data = source.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + end


@contextmanager
def capture(path: str | Path) -> Iterator[list[dict[str, Any]]]:
    """Records of this process go to ``path`` inside the block (for the guard's own tests);
    the list is filled with them when the block ends."""
    global _record_path
    previous, _record_path = _record_path, str(path)
    found: list[dict[str, Any]] = []
    try:
        yield found
    finally:
        _record_path = previous
        found.extend(read_records(path)[0])


def describe(records: list[dict[str, Any]]) -> str:
    lines = []
    for entry in records:
        lines.append(
            f"pid {entry['pid']} {' '.join(entry['argv'])}: {entry['what']} {entry['target']}"
        )
        lines.extend(
            "    " + frame.rstrip().replace("\n", "\n    ") for frame in entry["stack"][-4:]
        )
    return "\n".join(lines)

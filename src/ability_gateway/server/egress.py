"""SSRF-safe outbound HTTP for callbacks and output downloads (media mirroring).

A caller-supplied URL must not become a way into our own network. So:

- the host is resolved once, by our resolver; if ANY address it resolves to is not
  public by the address policy of addresses.py (the IANA special-purpose tables: loopback,
  private, link local incl. 169.254.169.254, CGNAT, multicast, reserved, documentation,
  IPv6 outside 2000::/3, and the same hidden in IPv4-mapped, 6to4 or NAT64 forms), the
  request is refused, unless the address is inside ``GATEWAY_EGRESS_ALLOW``;
- the connection goes only to the vetted addresses (aiohttp connects to what the
  resolver returned; it never resolves again);
- literal IP hosts, which aiohttp does not resolve, are checked the same way, including
  the legacy numeric forms (``2130706433``, ``0177.0.0.1``, ``127.1``) and a trailing dot
  (``127.0.0.1.``);
- redirects are not followed, proxies from the environment are ignored, and answers
  are read only up to a cap.

What a refusal or a connection failure says to a token (attempt logs, media warnings, via
:func:`describe`) never names the address a host resolved to: "refused: not a public
address". The detail goes to the server log only.
"""

from __future__ import annotations

import errno as errnos
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ability_gateway.server.addresses import (
    IPAddress,
    Network,
    is_allowed,
    literal_address,
    normalise_host,
    parse_allow_list,
)

__all__ = [
    "EgressRefused",
    "IPAddress",
    "Network",
    "Response",
    "SafeClient",
    "SafeResolver",
    "TooLarge",
    "address_problem",
    "describe",
    "is_allowed",
    "literal_address",
    "parse_allow_list",
    "url_host",
    "url_problem",
]

logger = logging.getLogger(__name__)

NOT_PUBLIC = "refused: not a public address"
NON_PUBLIC_PROBLEM = "points at a private, loopback or otherwise non-public address"


class EgressRefused(OSError):
    """The destination is not allowed (an SSRF guard decision, not a network failure).

    ``str(exc)`` is the detail for the server log (it may name a resolved address);
    ``public`` is what a token may be told.
    """

    def __init__(self, detail: str, public: str = NOT_PUBLIC) -> None:
        super().__init__(detail)
        self.public = public


def url_host(url: str) -> str | None:
    """The host aiohttp will connect to, normalised (IDNA, no trailing dot); None if invalid.

    yarl normalises the host (IDNA), and full-width or circled digits become an IP address
    that is never resolved: the host to judge is yarl's, not urlsplit's.
    """
    try:
        host = yarl.URL(url).raw_host or urlsplit(url).hostname
    except ValueError:
        return None
    # A percent-escape or a backslash in a name or IPv4 host is read differently by other
    # parsers (a WHATWG parser decodes `169.254.169.254%2e`): such a host is not a host here.
    # (An IPv6 literal's `%25` zone is judged by the address: link-local, so refused.)
    if host and ("\\" in host or ("%" in host and ":" not in host)):
        return None
    return normalise_host(host) if host else None


def address_problem(host: str, allow: Iterable[Network] = ()) -> str | None:
    """Why a literal IP ``host`` may not be reached, or None (DNS names are not judged)."""
    address = literal_address(host)
    if address is not None and not is_allowed(address, allow):
        return NON_PUBLIC_PROBLEM
    return None


def url_problem(url: str, allow: Iterable[Network] = ()) -> str | None:
    """Why ``url`` may not be called (checked when a task is accepted), or None.

    Only what is knowable without DNS; names are checked when they are resolved.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if parts.username or parts.password or "@" in parts.netloc or "\\" in parts.netloc:
        return "must not carry credentials"
    if port == 0:
        return "has an invalid port"
    host = url_host(url)
    if host is None:
        return "is not a valid URL"
    return address_problem(host, allow)


class SafeResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the host if any address is not allowed."""

    def __init__(self, allow: Iterable[Network]) -> None:
        self._allow = tuple(allow)
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"])
            if not is_allowed(address, self._allow):
                # The address is for the server log only (see EgressRefused).
                raise EgressRefused(f"{host} resolves to a non-public address ({address})")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(slots=True)
class Response:
    status: int
    body: bytes  # at most the cap
    truncated: bool


class SafeClient:
    """One pooled aiohttp session for a purpose (callbacks), behind the egress policy."""

    def __init__(
        self,
        allow: Iterable[Network],
        *,
        max_response_bytes: int = 64 * 1024,
        limit: int = 100,
        user_agent: str = "ability-gateway",
    ) -> None:
        self.allow = tuple(allow)
        self.max_response_bytes = max_response_bytes
        self._limit = limit
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=SafeResolver(self.allow), limit=self._limit, ttl_dns_cache=10
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"User-Agent": self._user_agent}
            )
        return self._session

    async def post(
        self, url: str, *, body: bytes, headers: dict[str, str], timeout: float
    ) -> Response:
        """POST; raises EgressRefused, aiohttp.ClientError or TimeoutError."""
        self._vet(url)
        try:
            async with self._client().post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                data = bytearray()
                # read(n) returns what has arrived so far: read until the end or the cap.
                while len(data) <= self.max_response_bytes:
                    chunk = await resp.content.read(self.max_response_bytes + 1 - len(data))
                    if not chunk:
                        break
                    data += chunk
                return Response(
                    resp.status,
                    bytes(data[: self.max_response_bytes]),
                    len(data) > self.max_response_bytes,
                )
        except aiohttp.ClientConnectorError as exc:
            raise _unwrapped(url, exc) from exc

    async def get(self, url: str, *, timeout: float, max_bytes: int) -> bytes:
        """GET a whole body of at most ``max_bytes``; raises TooLarge beyond it, and what
        ``post`` raises otherwise. Non-2xx answers raise ``aiohttp.ClientResponseError``."""
        self._vet(url)
        try:
            async with self._client().get(
                url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                resp.raise_for_status()
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message="not a 200"
                    )
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise TooLarge(f"{declared} bytes declared, more than {max_bytes}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                return bytes(data)
        except aiohttp.ClientConnectorError as exc:
            raise _unwrapped(url, exc) from exc

    def _vet(self, url: str) -> None:
        problem = url_problem(url, self.allow)
        if problem is not None:
            public = NOT_PUBLIC if problem == NON_PUBLIC_PROBLEM else f"refused: the URL {problem}"
            logger.warning("egress refused %s: the URL %s", _origin(url), problem)
            raise EgressRefused(f"the URL {problem}", public)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _origin(url: str) -> str:
    """scheme://host:port of ``url`` (a query may carry a receiver's secret: never logged)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(an invalid URL)"


def _unwrapped(url: str, exc: aiohttp.ClientConnectorError) -> Exception:
    """Our own refusal out of aiohttp's wrapper; either way, the detail goes to the log."""
    if isinstance(exc.os_error, EgressRefused):
        logger.warning("egress refused %s: %s", _origin(url), exc.os_error)
        return exc.os_error
    logger.info("egress to %s failed: %s", _origin(url), exc)
    return exc


class TooLarge(Exception):
    """An answer bigger than the cap (reading stopped there)."""


def describe(exc: BaseException) -> str:
    """A short description of a failed attempt that a token may see (attempt logs, media
    warnings): never the address a name resolved to or was connected to."""
    if isinstance(exc, EgressRefused):
        return exc.public
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, TooLarge):
        return f"too large: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    cause: Any = getattr(exc, "os_error", None)
    if isinstance(cause, EgressRefused):
        return cause.public
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "could not resolve the host"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS failed: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Its text names the address connected to ("Connect call failed ('10.0.0.7', 80)").
        code = getattr(cause, "errno", None)
        if isinstance(code, int) and code in errnos.errorcode:
            return f"could not connect: {os.strerror(code)}"
        return "could not connect"
    return f"{type(exc).__name__}: {exc}"

"""SSRF-safe outbound HTTP for callbacks (and, later, media downloads).

A caller-supplied URL must not become a way into our own network. So:

- the host is resolved once, by our resolver; if ANY address it resolves to is not
  globally routable (loopback, private, link-local incl. 169.254.169.254, CGNAT,
  multicast, reserved, unspecified, and the same hidden in IPv4-mapped IPv6, 6to4 or
  NAT64 forms), the request is refused, unless the address is inside
  ``GATEWAY_EGRESS_ALLOW``;
- the connection goes only to the vetted addresses (aiohttp connects to what the
  resolver returned; it never resolves again);
- literal IP hosts, which aiohttp does not resolve, are checked the same way, including
  the legacy numeric forms (``2130706433``, ``0177.0.0.1``, ``127.1``);
- redirects are not followed, proxies from the environment are ignored, and answers
  are read only up to a cap.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")


class EgressRefused(OSError):
    """The destination is not allowed (an SSRF guard decision, not a network failure)."""


def parse_allow_list(text: str) -> tuple[Network, ...]:
    """``GATEWAY_EGRESS_ALLOW``: comma-separated CIDRs (``127.0.0.0/8,10.1.0.0/16``)."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return tuple(networks)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _6TO4:
        return address.sixtofour
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _is_public(address: IPAddress) -> bool:
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def is_allowed(address: IPAddress, allow: Iterable[Network] = ()) -> bool:
    """Whether we may connect to ``address``."""
    allow = tuple(allow)
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d: judge it as that address alone.
            candidates = [address.ipv4_mapped]
        elif (embedded := _embedded_ipv4(address)) is not None:
            candidates.append(embedded)
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in allow):
            continue
        if not _is_public(candidate):
            return False
    return True


def literal_address(host: str) -> IPAddress | None:
    """The IP a host names literally, legacy IPv4 forms included; None for a DNS name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts what resolvers do: 2130706433, 0x7f000001, 0177.0.0.1, 127.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
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
    if parts.username or parts.password:
        return "must not carry credentials (use callbackHeaders)"
    if port == 0:
        return "has an invalid port"
    try:
        # What aiohttp will connect to: yarl normalises the host (IDNA), and full-width or
        # circled digits become an IP address that is never resolved, so check that host.
        host = yarl.URL(url).raw_host or parts.hostname
    except ValueError:
        return "is not a valid URL"
    address = literal_address(host)
    if address is not None and not is_allowed(address, allow):
        return "points at a private, loopback or otherwise non-public address"
    return None


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
        problem = url_problem(url, self.allow)
        if problem is not None:
            raise EgressRefused(f"the URL {problem}")
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
            if isinstance(exc.os_error, EgressRefused):
                raise exc.os_error from exc
            raise

    async def get(self, url: str, *, timeout: float, max_bytes: int) -> bytes:
        """GET a whole body of at most ``max_bytes``; raises TooLarge beyond it, and what
        ``post`` raises otherwise. Non-2xx answers raise ``aiohttp.ClientResponseError``."""
        problem = url_problem(url, self.allow)
        if problem is not None:
            raise EgressRefused(f"the URL {problem}")
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
            if isinstance(exc.os_error, EgressRefused):
                raise exc.os_error from exc
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class TooLarge(Exception):
    """An answer bigger than the cap (reading stopped there)."""


def describe(exc: BaseException) -> str:
    """A short, log-safe description of a failed attempt."""
    if isinstance(exc, EgressRefused):
        return f"refused by the egress policy: {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, TooLarge):
        return f"too large: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    cause: Any = getattr(exc, "os_error", None)
    if isinstance(cause, EgressRefused):
        return f"refused by the egress policy: {cause}"
    return f"{type(exc).__name__}: {exc}"

"""Find out how big a workflow's source image is, the way a real workflow would: by downloading it.

A URL that names one of the simulator's own files (same origin as the request, or as the configured
public URL) is answered from the path, since its size is encoded there; this keeps benchmarks that
feed sample images free of self-requests. Anything else is fetched with a 5 s deadline and read up
to 256 KiB, just enough for any image header; a failed download is a :class:`SourceImageError`,
which the workflows turn into Coze's "failed to download image" execution failure.

A simulator is a local stand-in: it downloads only from this machine's loopback (``127.0.0.0/8``,
``::1``, ``localhost``) unless started with ``--allow-remote-images``. Any other host is refused
before it is resolved, so a test or demo that feeds it an outside URL fails visibly instead of
reaching out (or waiting on a DNS resolver).

Successful remote look-ups are cached (LRU, by URL): a simulator has no reason to assume that the
same URL changes size between runs, and the cache keeps repeated runs cheap.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Collection

import aiohttp
from yarl import URL

from ability_gateway.simulator.files import parse_file_path
from ability_gateway.simulator.imagesize import image_size

__all__ = ["SourceImageError", "SourceImages"]


class SourceImageError(Exception):
    """The source image could not be downloaded or is not a PNG, JPEG, GIF or WebP image."""


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address in any spelling (``127.1``, ``[::1]``, ``127.1.``)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class SourceImages:
    """Resolves image URLs to ``(width, height)``; owns one pooled HTTP client for the downloads."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 5.0,
        max_bytes: int = 256 * 1024,
        cache_size: int = 1024,
        allow_remote: bool = False,
    ) -> None:
        self._allow_remote = allow_remote
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_bytes = max_bytes
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client (call from the application's startup)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        """Close the HTTP client (call from the application's cleanup)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def size(self, url: str, own_origins: Collection[str]) -> tuple[int, int]:
        """The pixel size of the image at ``url``; ``own_origins``: this simulator's base URLs."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError) as exc:
            raise SourceImageError("invalid url") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise SourceImageError("unsupported url, expected http(s)")
        if str(parsed.origin()) in own_origins:
            ref = parse_file_path(parsed.path)
            if ref is None:
                raise SourceImageError("HTTP 404")
            return ref.width, ref.height
        if not self._allow_remote and not is_loopback_host(parsed.raw_host or ""):
            raise SourceImageError(
                "refused: the simulator downloads only from loopback (--allow-remote-images)"
            )
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        found = await self._fetch(url)
        self._cache[url] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    async def _fetch(self, url: str) -> tuple[int, int]:
        if self._session is None:
            raise RuntimeError("SourceImages.start() was not called")
        try:
            async with self._session.get(url) as response:
                if response.status >= 400:
                    raise SourceImageError(f"HTTP {response.status}")
                head = b""
                async for chunk in response.content.iter_chunked(64 * 1024):
                    head += chunk
                    found = image_size(head)
                    if found is not None:
                        return found
                    if len(head) >= self._max_bytes:
                        break
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            raise SourceImageError(reason) from exc
        raise SourceImageError("not a PNG, JPEG, GIF or WebP image")

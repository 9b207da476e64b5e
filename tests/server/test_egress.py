"""The SSRF guard: address policy, literal forms, and a real client on loopback."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from ability_gateway.server.egress import (
    EgressRefused,
    SafeClient,
    SafeResolver,
    is_allowed,
    literal_address,
    parse_allow_list,
    url_problem,
)
from tests.support import Receiver

LOOPBACK = parse_allow_list("127.0.0.0/8")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_allowed(ipaddress.ip_address(address))


def test_the_allow_list_opens_exactly_its_networks() -> None:
    assert is_allowed(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    assert is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK)
    assert not is_allowed(ipaddress.ip_address("10.0.0.1"), LOOPBACK)
    assert not is_allowed(ipaddress.ip_address("::1"), LOOPBACK)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("127.1", "127.0.0.1"),  # short form
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
        ("example.com", None),
    ],
)
def test_literal_forms_are_recognised(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://2130706433/cb", "points at a private, loopback or otherwise non-public address"),
        ("http://0177.0.0.1/cb", "points at a private, loopback or otherwise non-public address"),
        (
            "http://[::ffff:127.0.0.1]/cb",
            "points at a private, loopback or otherwise non-public address",
        ),
        (
            "http://169.254.169.254/latest",
            "points at a private, loopback or otherwise non-public address",
        ),
        ("ftp://example.com/cb", "must be an http(s) URL"),
        ("http://user:pw@example.com/cb", "must not carry credentials (use callbackHeaders)"),
        ("https://example.com/cb", None),
        # Hosts that IDNA normalisation turns into 127.0.0.1 (never resolved by aiohttp).
        (
            "http://127\u30020\u30020\u30021:8080/cb",
            "points at a private, loopback or otherwise non-public address",
        ),
        (
            "http://\u2460\u2461\u2466.0.0.1/cb",
            "points at a private, loopback or otherwise non-public address",
        ),
        (
            "http://\uff11\uff12\uff17.0.0.1/cb",
            "points at a private, loopback or otherwise non-public address",
        ),
    ],
)
def test_url_problems_known_without_dns(url: str, problem: str | None) -> None:
    assert url_problem(url) == problem


class FakeResolver:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolver = SafeResolver(())
    resolver._inner = FakeResolver(["93.184.216.34", "10.0.0.7"])  # type: ignore[assignment]
    with pytest.raises(EgressRefused, match="non-public"):
        await resolver.resolve("mixed.example", 80)
    resolver._inner = FakeResolver(["93.184.216.34"])  # type: ignore[assignment]
    assert len(await resolver.resolve("public.example", 80)) == 1


async def test_a_name_resolving_to_loopback_is_refused_at_send_time() -> None:
    with Receiver() as receiver:
        client = SafeClient(())
        try:
            with pytest.raises(EgressRefused, match="localhost resolves to a non-public address"):
                await client.post(
                    f"http://localhost:{receiver.port}/cb", body=b"{}", headers={}, timeout=5
                )
        finally:
            await client.close()
        assert receiver.requests == []


async def test_decimal_and_octal_hosts_are_refused_at_send_time() -> None:
    client = SafeClient(())
    try:
        for host in ("2130706433", "0177.0.0.1"):
            with pytest.raises(EgressRefused):
                await client.post(f"http://{host}:9/cb", body=b"{}", headers={}, timeout=5)
    finally:
        await client.close()


async def test_redirects_are_not_followed() -> None:
    with Receiver(script=[(302, "http://169.254.169.254/latest/meta-data", 0.0)]) as receiver:
        client = SafeClient(LOOPBACK)
        try:
            response = await client.post(receiver.url, body=b"{}", headers={}, timeout=5)
        finally:
            await client.close()
    assert response.status == 302
    assert len(receiver.requests) == 1


async def test_answers_are_read_only_up_to_the_cap() -> None:
    with Receiver(default=(200, "x" * 100_000, 0.0)) as receiver:
        client = SafeClient(LOOPBACK, max_response_bytes=1000)
        try:
            response = await client.post(receiver.url, body=b"{}", headers={}, timeout=5)
        finally:
            await client.close()
    assert len(response.body) == 1000
    assert response.truncated


async def test_proxies_from_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("http_proxy", "http://10.9.9.9:3128")
    with Receiver() as receiver:
        client = SafeClient(LOOPBACK)
        try:
            response = await client.post(receiver.url, body=b"{}", headers={}, timeout=5)
        finally:
            await client.close()
    assert response.status == 200
    assert len(receiver.requests) == 1

"""The SSRF guard: address policy, literal forms, and a real client on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

import aiohttp
import pytest

from ability_gateway.server.egress import (
    EgressRefused,
    SafeClient,
    SafeResolver,
    describe,
    is_allowed,
    literal_address,
    parse_allow_list,
    url_problem,
)
from tests.server.conftest import Live, LiveFactory
from tests.support import Receiver, free_port

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
        ("http://user:pw@example.com/cb", "must not carry credentials"),
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


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1./cb",
        "http://169.254.169.254./latest/meta-data/",
        "http://127.0.0.1../cb",
        "http://2130706433./cb",
        "http://[fec0::1]/cb",
        "http://[fe80::1%25eth0]/cb",
        "http://192.0.0.8/cb",
        "http://192.0.0.170/cb",
        "http://198.18.0.1/cb",
        "http://[2001:db8::1]/cb",
        "http://[64:ff9b::a9fe:a9fe]/cb",
        "http://[2002:a9fe:a9fe::]/cb",
    ],
)
def test_literal_private_addresses_in_any_spelling_are_refused_without_dns(url: str) -> None:
    assert url_problem(url) == "points at a private, loopback or otherwise non-public address"


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


@pytest.mark.parametrize(
    "address", ["192.0.0.8", "198.51.100.7", "fec0::1", "2001:db8::1", "64:ff9b::a00:1", "::1"]
)
async def test_a_name_resolving_into_a_special_purpose_range_is_refused(address: str) -> None:
    resolver = SafeResolver(())
    resolver._inner = FakeResolver([address])  # type: ignore[assignment]
    with pytest.raises(EgressRefused):
        await resolver.resolve("special.example", 80)


async def test_the_allow_list_opens_a_name_resolving_into_it() -> None:
    resolver = SafeResolver(parse_allow_list("fec0::/10"))
    resolver._inner = FakeResolver(["fec0::1"])  # type: ignore[assignment]
    assert len(await resolver.resolve("site-local.example", 80)) == 1


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


# --- what a token is told (attempt logs, media warnings): never a resolved address -------


async def test_a_refusal_tells_a_token_no_resolved_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ability_gateway.server.egress")
    client = SafeClient(())
    try:
        with pytest.raises(EgressRefused) as caught:
            await client.post(
                f"http://localhost:{free_port()}/cb", body=b"{}", headers={}, timeout=5
            )
    finally:
        await client.close()
    assert describe(caught.value) == "refused: not a public address"
    # The detail stays in the server log.
    assert "localhost resolves to a non-public address (127.0.0.1)" in caplog.text


async def test_a_literal_refusal_tells_the_same() -> None:
    client = SafeClient(())
    try:
        with pytest.raises(EgressRefused) as caught:
            await client.get("http://169.254.169.254./latest", timeout=5, max_bytes=10)
    finally:
        await client.close()
    assert describe(caught.value) == "refused: not a public address"


async def test_a_failed_connection_tells_a_token_no_address() -> None:
    client = SafeClient(LOOPBACK)
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await client.post(
                f"http://localhost:{free_port()}/cb", body=b"{}", headers={}, timeout=5
            )
    finally:
        await client.close()
    assert describe(caught.value) == "could not connect: Connection refused"


async def _attempts(gw: Live, task_id: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        response = await gw.client.get(
            f"/api/ability_tasks/{task_id}/callbacks", headers=gw.headers
        )
        body: dict[str, Any] = response.json()
        if body["attempts"]:
            return body
        assert loop.time() < deadline, "no callback attempt was made"
        await asyncio.sleep(0.05)


async def test_a_callback_attempt_refused_by_name_names_no_address(live: LiveFactory) -> None:
    with Receiver() as receiver:
        # The simulator is a Coze on this machine: it may read the loopback image URL.
        async with live(
            callback_retry_schedule="60", egress_allow="", coze_allow_internal_image_urls=True
        ) as gw:
            response = await gw.invoke(
                "ability_coze_prompt_extract",
                {
                    "inputs": {"url": f"{gw.sim_url}/files/samples/square.png"},
                    "callbackUrl": f"http://localhost:{receiver.port}/callback",
                },
            )
            assert response.status_code == 200, response.text
            listed = await _attempts(gw, response.json()["metadata"]["taskId"])
    assert receiver.requests == []
    assert listed["attempts"][0]["error"] == "refused: not a public address"
    assert listed["delivery"]["lastError"] == "refused: not a public address"


async def test_a_media_warning_for_a_refused_output_names_no_address(live: LiveFactory) -> None:
    # The simulator names its outputs by a public URL on `localhost`: the gateway resolves it
    # to 127.0.0.1 and, with an empty allow list, refuses to mirror them.
    public = f"http://localhost:{free_port()}"
    async with live(
        "--public-url", public, egress_allow="", coze_allow_internal_image_urls=True
    ) as gw:
        response = await gw.invoke(
            "ability_coze_outpaint",
            {
                "imageUrl": f"{gw.sim_url}/files/samples/square.png",
                "inputs": {
                    "expand_top": 0,
                    "expand_bottom": 0,
                    "expand_left": 8,
                    "expand_right": 8,
                },
            },
        )
    body = response.json()
    assert response.status_code == 200, body
    source = body["images"][0]["sourceUrl"]
    assert source.startswith(public)
    assert body["metadata"]["warnings"] == [f"{source}: refused: not a public address"]


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254%2e/cb", "http://%31%32%37.0.0.1/cb", "http://loc%61lhost/cb"],
)
def test_a_percent_escaped_callback_host_is_refused_at_accept(url: str) -> None:
    assert url_problem(url) == "is not a valid URL"

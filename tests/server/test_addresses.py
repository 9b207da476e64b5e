"""The address policy: every IANA special-purpose range, written out here independently of
the tables in addresses.py, so a range missing there fails a test."""

from __future__ import annotations

import ipaddress

import pytest

from ability_gateway.server.addresses import (
    is_allowed,
    is_local_network_name,
    is_loopback_name,
    literal_address,
    parse_allow_list,
)

# (first, last) address of every IPv4 range that must be refused, from the IANA IPv4
# special-purpose registry (blocks not globally reachable), plus multicast and reserved.
REFUSED_V4 = [
    ("0.0.0.0", "0.255.255.255"),  # "this network"
    ("10.0.0.0", "10.255.255.255"),  # private use
    ("100.64.0.0", "100.127.255.255"),  # shared address space (CGNAT)
    ("127.0.0.0", "127.255.255.255"),  # loopback
    ("169.254.0.0", "169.254.255.255"),  # link local (169.254.169.254: cloud metadata)
    ("172.16.0.0", "172.31.255.255"),  # private use
    ("192.0.0.0", "192.0.0.7"),  # IPv4 service continuity prefix (DS-Lite)
    ("192.0.0.8", "192.0.0.8"),  # IPv4 dummy address
    ("192.0.0.9", "192.0.0.10"),  # PCP / TURN anycast (refused with their block)
    ("192.0.0.170", "192.0.0.171"),  # NAT64/DNS64 discovery
    ("192.0.0.0", "192.0.0.255"),  # IETF protocol assignments
    ("192.0.2.0", "192.0.2.255"),  # documentation (TEST-NET-1)
    ("192.88.99.0", "192.88.99.255"),  # deprecated 6to4 relay anycast
    ("192.168.0.0", "192.168.255.255"),  # private use
    ("198.18.0.0", "198.19.255.255"),  # benchmarking
    ("198.51.100.0", "198.51.100.255"),  # documentation (TEST-NET-2)
    ("203.0.113.0", "203.0.113.255"),  # documentation (TEST-NET-3)
    ("224.0.0.0", "239.255.255.255"),  # multicast
    ("240.0.0.0", "255.255.255.254"),  # reserved
    ("255.255.255.255", "255.255.255.255"),  # limited broadcast
]

# IPv6: anything outside 2000::/3, and the not globally reachable blocks inside it.
REFUSED_V6 = [
    ("::", "::"),  # unspecified
    ("::1", "::1"),  # loopback
    ("::7f00:1", "::a9fe:a9fe"),  # IPv4-compatible (deprecated), outside 2000::/3
    ("64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"),  # local-use IPv4/IPv6 translation
    ("100::", "100::ffff:ffff:ffff:ffff"),  # discard-only
    ("100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff"),  # dummy IPv6 prefix
    ("2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"),  # IETF protocol assignments
    ("2001::1", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"),  # Teredo
    ("2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff"),  # benchmarking
    ("2001:10::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff"),  # deprecated ORCHID
    ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),  # documentation
    ("3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"),  # documentation
    ("5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # SRv6 SIDs
    ("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # unique local
    ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # link local
    ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # deprecated site local
    ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # multicast
    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1fff::"),  # just below 2000::/3
    ("4000::", "4000::1"),  # just above 2000::/3
]

# Private IPv4 hidden in an IPv6 address: mapped, NAT64 and 6to4 forms.
REFUSED_EMBEDDED = [
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:192.0.0.8",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::c000:8",  # NAT64 of 192.0.0.8
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:c000:8::",  # 6to4 of 192.0.0.8
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "1.0.0.0",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.31.196.1",  # AS112, globally reachable
    "192.88.98.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2000::1",
    "2001:200::1",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "3fff:1000::1",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "::ffff:8.8.8.8",
]


def _pairs(rows: list[tuple[str, str]]) -> list[str]:
    return [address for row in rows for address in row]


@pytest.mark.parametrize("address", _pairs(REFUSED_V4))
def test_every_special_purpose_ipv4_range_is_refused(address: str) -> None:
    assert not is_allowed(ipaddress.IPv4Address(address))


@pytest.mark.parametrize("address", _pairs(REFUSED_V6))
def test_ipv6_outside_global_unicast_or_special_purpose_is_refused(address: str) -> None:
    assert not is_allowed(ipaddress.IPv6Address(address))


@pytest.mark.parametrize("address", REFUSED_EMBEDDED)
def test_a_private_ipv4_embedded_in_ipv6_is_refused(address: str) -> None:
    assert not is_allowed(ipaddress.IPv6Address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_next_to_the_refused_ranges_are_allowed(address: str) -> None:
    assert is_allowed(ipaddress.ip_address(address))


def test_a_zone_does_not_make_a_link_local_address_public() -> None:
    assert not is_allowed(ipaddress.IPv6Address("fe80::1%eth0"))


@pytest.mark.parametrize(
    ("address", "allow"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("64:ff9b::7f00:1", "127.0.0.0/8"),
        ("2002:7f00:1::", "127.0.0.0/8"),
        ("192.0.0.8", "192.0.0.0/24"),
        ("fec0::1", "fec0::/10"),
        ("fd12::1", "fc00::/7"),
    ],
)
def test_the_allow_list_opens_its_networks(address: str, allow: str) -> None:
    assert is_allowed(ipaddress.ip_address(address), parse_allow_list(allow))


@pytest.mark.parametrize(
    ("address", "allow"),
    [("10.0.0.1", "127.0.0.0/8"), ("::1", "127.0.0.0/8"), ("fec0::1", "fc00::/7")],
)
def test_the_allow_list_opens_nothing_else(address: str, allow: str) -> None:
    assert not is_allowed(ipaddress.ip_address(address), parse_allow_list(allow))


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1.", "127.0.0.1"),
        ("169.254.169.254.", "169.254.169.254"),
        ("127.0.0.1..", "127.0.0.1"),
        ("2130706433.", "127.0.0.1"),
        ("[fec0::1]", "fec0::1"),
        ("fe80::1%25eth0", "fe80::1%eth0"),
        ("your-server.test.", None),
    ],
)
def test_trailing_dots_and_zones_are_normalised(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize(
    ("host", "loopback", "local"),
    [
        ("localhost", True, False),
        ("LOCALHOST.", True, False),
        ("api.localhost", True, False),
        ("printer.local", False, True),
        ("metadata.google.internal", False, True),
        ("nas.home.arpa", False, True),
        ("localhost.localdomain", False, True),
        ("notlocalhost", False, False),
        ("images.example.test", False, False),
    ],
)
def test_names_that_only_name_local_hosts_are_known(host: str, loopback: bool, local: bool) -> None:
    assert (is_loopback_name(host), is_local_network_name(host)) == (loopback, local)

"""Which IP addresses and host names outbound HTTP may reach: the address policy of egress.py.

The policy is an explicit table, not ``ipaddress.is_global``: what that property answers
changes between Python versions (3.11 calls ``192.0.0.8`` and ``fec0::1`` global). The tables
below are written out from the IANA special-purpose address registries (reviewed 2025; not
downloaded at run time):
https://www.iana.org/assignments/iana-ipv4-special-registry/ and
https://www.iana.org/assignments/iana-ipv6-special-registry/.

    address in GATEWAY_EGRESS_ALLOW? ──yes──► allowed
      │ no
      ├─ IPv4: in REFUSED_IPV4? ──yes──► refused, else allowed
      └─ IPv6: ::ffff:a.b.c.d (IPv4-mapped) or 64:ff9b::a.b.c.d (NAT64) ──► judge a.b.c.d alone
               outside 2000::/3 (global unicast), or in REFUSED_IPV6 ──► refused
               2002:a.b.c.d::/48 (6to4) ──► refused if a.b.c.d is refused
               otherwise allowed

Every entry of a registry whose "globally reachable" is False, and every multicast, reserved
or deprecated range, is refused. Where a registry block is not globally reachable but holds
a few anycast exceptions (``192.0.0.9``, ``2001:1::1``, AS112, AMT …), the whole block is
refused: no callback receiver or image lives at a protocol anycast address.

Host names: ``localhost`` and names under ``.localhost`` are loopback by definition (RFC 6761
§6.3) and are judged as ``127.0.0.1``. Names under ``.local`` (mDNS), ``.internal`` (ICANN's
private-use TLD), ``.home.arpa`` (RFC 8375) and ``.localdomain`` only ever name hosts of a
local network (used for URLs that nothing of ours resolves later, such as image URLs).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import unquote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(cidr), name) for cidr, name in rows)


def _table6(rows: Iterable[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(cidr), name) for cidr, name in rows)


# IANA IPv4 special-purpose registry, every block not globally reachable, plus multicast.
REFUSED_IPV4 = _table(
    [
        ("0.0.0.0/8", '"this network" (RFC 791)'),
        ("10.0.0.0/8", "private use (RFC 1918)"),
        ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback (RFC 1122)"),
        ("169.254.0.0/16", "link local, cloud metadata (RFC 3927)"),
        ("172.16.0.0/12", "private use (RFC 1918)"),
        # IETF protocol assignments (RFC 6890): 192.0.0.0/29 DS-Lite, 192.0.0.8 the dummy
        # address (RFC 7600), 192.0.0.170-171 NAT64 discovery (RFC 8880); also its anycast
        # exceptions 192.0.0.9 (PCP) and 192.0.0.10 (TURN).
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
        ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
        ("192.168.0.0/16", "private use (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
        ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
        ("224.0.0.0/4", "multicast (RFC 5771)"),
        ("240.0.0.0/4", "reserved (RFC 1112)"),
        ("255.255.255.255/32", "limited broadcast (RFC 8190)"),
    ]
)

GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# IANA IPv6 special-purpose registry, the blocks inside 2000::/3 not globally reachable.
# (Everything outside 2000::/3 is refused anyway: ::1, ::, ::ffff:0:0/96, 64:ff9b:1::/48,
# 100::/64, 5f00::/16 SRv6, fc00::/7 unique local, fe80::/10 link local, fec0::/10 the
# deprecated site local, ff00::/8 multicast, and the IPv4-compatible ::a.b.c.d.)
REFUSED_IPV6 = _table6(
    [
        # IETF protocol assignments (RFC 2928): Teredo 2001::/32, benchmarking 2001:2::/48,
        # ORCHID 2001:10::/28; also its anycast, AMT, AS112, ORCHIDv2 and DET exceptions.
        ("2001::/23", "IETF protocol assignments (RFC 2928)"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("3fff::/20", "documentation (RFC 9637)"),
    ]
)

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # globally reachable: judged by its IPv4 address
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")

LOOPBACK_NAMES = ("localhost",)  # and every name under them
LOCAL_NETWORK_SUFFIXES = ("local", "internal", "home.arpa", "localdomain")


def parse_allow_list(text: str) -> tuple[Network, ...]:
    """``GATEWAY_EGRESS_ALLOW``: comma-separated CIDRs (``127.0.0.0/8,10.1.0.0/16``)."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return tuple(networks)


def refused_range(address: IPAddress) -> str | None:
    """The name of the refused range ``address`` is in (ignoring any embedded IPv4), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((name for net, name in REFUSED_IPV4 if address in net), None)
    if address not in GLOBAL_UNICAST:
        return "outside global unicast 2000::/3"
    return next((name for net, name in REFUSED_IPV6 if address in net), None)


def _in(address: IPAddress, allow: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in allow)


def is_allowed(address: IPAddress, allow: Iterable[Network] = ()) -> bool:
    """Whether we may connect to ``address`` (the one classifier, at accept and at send)."""
    allow = tuple(allow)
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            # fe80::1%eth0: judge the address; a zone never makes one public.
            address = ipaddress.IPv6Address(int(address))
        if _in(address, allow):
            return True
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d: judge it as that address alone.
            return is_allowed(address.ipv4_mapped, allow)
        if address in NAT64:
            return is_allowed(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), allow)
        if refused_range(address) is not None:
            return False
        if address in SIX_TO_FOUR:
            assert address.sixtofour is not None
            return is_allowed(address.sixtofour, allow)
        return True
    return _in(address, allow) or refused_range(address) is None


def normalise_host(host: str) -> str:
    """A URL's host as the resolver sees it: no brackets, no trailing dots, a zone unquoted."""
    host = host.strip("[]").rstrip(".").lower()
    if ":" in host and "%" in host:
        host = unquote(host)  # fe80::1%25eth0 → fe80::1%eth0
    return host


def literal_address(host: str) -> IPAddress | None:
    """The IP a host names literally, legacy IPv4 forms included; None for a DNS name."""
    host = normalise_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts what resolvers do: 2130706433, 0x7f000001, 0177.0.0.1, 127.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_loopback_name(host: str) -> bool:
    """``localhost`` or a name under it (RFC 6761: always loopback)."""
    host = normalise_host(host)
    return any(host == name or host.endswith("." + name) for name in LOOPBACK_NAMES)


def is_local_network_name(host: str) -> bool:
    """A name that only ever names a host of a local network (``printer.local``, …)."""
    host = normalise_host(host)
    return any(host == s or host.endswith("." + s) for s in LOCAL_NETWORK_SUFFIXES)

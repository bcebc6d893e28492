"""Which schemes and peer addresses a download may reach (issue 5 §2: a pool scraped from the
web is untrusted input, so it must not reach the cloud metadata service, the LAN or the machine
itself).

Refused by default (-> ``blocked_address``), in the ranges of the IANA special-purpose address
registries (RFC 6890 and its updates): loopback (127/8, ::1), link-local (169.254/16,
fe80::/10), private (10/8, 172.16/12, 192.168/16), shared CGNAT space (100.64/10), unique local
(fc00::/7), site-local (fec0::/10), multicast, unspecified, reserved and every other range
Python's ``ipaddress`` does not call global. IPv6 forms that embed an IPv4 address (mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, SIIT ``::ffff:0:a.b.c.d``, 6to4 ``2002::/16``,
NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, Teredo ``2001::/32``) are judged by the IPv4
address they carry. ``allow_private`` lists the ranges a user opens on purpose; the directory
served by ``input.serve`` is reachable at exactly its own host and port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from curate.net.errors import Refused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_SCHEMES = ("http", "https")  # the only ones the client speaks

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class BlockedAddress(OSError):
    """Raised by the resolver when no address of a host may be reached: an ``OSError`` so the
    HTTP client reports it as a failed lookup, before any connection is attempted."""


def parse_networks(values: list[str]) -> tuple[IPNetwork, ...]:
    """``allow_private`` entries as networks; ``ValueError`` names the bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as err:
            raise ValueError(f"{value!r} is not a CIDR network ({err}); e.g. 127.0.0.0/8 or fd00::/8") from None
    return tuple(networks)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (empty for a plain one)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # (server, client): the client is the one packets reach
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64) or address in _SIIT:
        return [low32]
    if address in _COMPATIBLE and int(address) > 1:  # not :: or ::1, which are judged as they are
        return [low32]
    return []


def category(address: IPAddress) -> str | None:
    """Why ``address`` is refused by default (``None``: a global unicast address)."""
    carried = embedded_ipv4(address)
    if carried:
        reasons = [category(v4) for v4 in carried]
        blocked = next((r for r in reasons if r), None)
        return f"{blocked} ({', '.join(map(str, carried))} embedded)" if blocked else None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class NetPolicy:
    """What one download stage may reach."""

    schemes: frozenset[str] = frozenset(DEFAULT_SCHEMES)
    allow_private: tuple[IPNetwork, ...] = ()
    allow_endpoints: frozenset[tuple[IPAddress, int]] = field(default_factory=frozenset)

    @classmethod
    def build(cls, schemes: list[str], allow_private: list[str], served_url: str | None) -> NetPolicy:
        endpoints = set()
        if served_url:
            parts = urlsplit(served_url)
            endpoints.add((ipaddress.ip_address(parts.hostname), parts.port or 80))
        return cls(frozenset(s.lower() for s in schemes), parse_networks(allow_private), frozenset(endpoints))

    def check_scheme(self, scheme: str) -> None:
        if scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes))
            raise Refused("blocked_scheme", f"scheme {scheme!r} is not fetched (allowed: {allowed})")

    def refusal(self, host: str, port: int) -> str | None:
        """Why ``host`` (an IP address) at ``port`` must not be connected to, or ``None``."""
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
        why = category(address)
        if why is None:
            return None
        candidates = [address, *embedded_ipv4(address)]
        if any(a.version == net.version and a in net for a in candidates for net in self.allow_private):
            return None
        if any((a, port) in self.allow_endpoints for a in candidates):
            return None
        return f"{host} is {why} (to allow it, add its range to download.allow_private)"

    def check_address(self, host: str, port: int) -> None:
        why = self.refusal(host, port)
        if why is not None:
            raise Refused("blocked_address", why)

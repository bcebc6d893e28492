"""The address policy on its own: each refused range and embedded form, and what opens it."""

from __future__ import annotations

import ipaddress

import pytest

from curate.net.errors import Refused
from curate.net.policy import NetPolicy, category, parse_networks

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.0.1": "private",
    "100.64.0.1": "shared (CGNAT)",
    "fd00::1": "private",
    "fc00::1": "private",
    "fec0::1": "site-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "192.0.2.1": "private",  # documentation range: not global
    "::ffff:127.0.0.1": "loopback (127.0.0.1 embedded)",
    "::ffff:10.0.0.1": "private (10.0.0.1 embedded)",
    "::ffff:169.254.169.254": "link-local (169.254.169.254 embedded)",
    "::ffff:0:a00:1": "private (10.0.0.1 embedded)",  # SIIT
    "::10.0.0.1": "private (10.0.0.1 embedded)",  # IPv4-compatible
    "2002:a9fe:a9fe::1": "link-local (169.254.169.254 embedded)",  # 6to4
    "64:ff9b::a00:1": "private (10.0.0.1 embedded)",  # NAT64
    "64:ff9b:1::c0a8:1": "private (192.168.0.1 embedded)",  # local-use NAT64
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "private (65.54.227.120, 10.0.0.1 embedded)",  # Teredo client 10.0.0.1
}


@pytest.mark.parametrize(("address", "why"), REFUSED.items())
def test_refused_ranges(address, why) -> None:
    assert category(ipaddress.ip_address(address)) == why
    with pytest.raises(Refused) as caught:
        NetPolicy().check_address(address, 80)
    assert caught.value.reason == "blocked_address"
    assert caught.value.detail == f"{address} is {why} (to allow it, add its range to download.allow_private)"


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
                                     "64:ff9b::808:808", "100.128.0.1", "172.32.0.1"])
def test_global_addresses_pass(address) -> None:
    assert NetPolicy().refusal(address, 443) is None


def test_allow_private_opens_exactly_its_ranges() -> None:
    policy = NetPolicy.build(["http", "https"], ["127.0.0.0/8", "fd00::/8"], None)
    assert policy.refusal("127.0.0.1", 80) is None
    assert policy.refusal("::ffff:127.0.0.1", 80) is None  # the mapped form of an allowed address
    assert policy.refusal("fd12::1", 80) is None
    assert policy.refusal("::1", 80) is not None
    assert policy.refusal("10.0.0.1", 80) is not None
    assert policy.refusal("169.254.169.254", 80) is not None


def test_served_directory_is_reachable_at_exactly_its_host_and_port() -> None:
    policy = NetPolicy.build(["http", "https"], [], "http://127.0.0.1:8123/")
    assert policy.refusal("127.0.0.1", 8123) is None
    assert policy.refusal("127.0.0.1", 8124) is not None
    assert policy.refusal("127.0.0.2", 8123) is not None


def test_schemes() -> None:
    policy = NetPolicy.build(["https"], [], None)
    policy.check_scheme("https")
    with pytest.raises(Refused) as caught:
        policy.check_scheme("http")
    assert (caught.value.reason, caught.value.detail) == ("blocked_scheme", "scheme 'http' is not fetched (allowed: https)")


@pytest.mark.parametrize(("value", "message"), [
    ("10.0.0.1/8", "'10.0.0.1/8' is not a CIDR network (10.0.0.1/8 has host bits set); e.g. 127.0.0.0/8 or fd00::/8"),
    ("localhost", "'localhost' is not a CIDR network (",),
])
def test_parse_networks_names_the_bad_entry(value, message) -> None:
    with pytest.raises(ValueError) as caught:
        parse_networks(["127.0.0.0/8", value])
    assert str(caught.value).startswith(message)

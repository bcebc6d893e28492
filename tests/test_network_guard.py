"""The session-wide network guard of ``conftest.py``: tests reach loopback and nothing else."""

from __future__ import annotations

import socket

import pytest
from conftest import BlockedByNetworkGuard, NameBlockedByNetworkGuard, is_local_host


@pytest.fixture
def forget_attempts(network_guard):
    """These tests make refused attempts on purpose: drop them so the teardown check passes."""
    before = len(network_guard.attempts)
    yield network_guard
    del network_guard.attempts[before:]


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("169.254.169.254", 80), ("::ffff:10.0.0.1", 80, 0, 0)])
def test_connect_beyond_loopback_is_refused_and_recorded(forget_attempts, address) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    before = len(forget_attempts.attempts)
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(BlockedByNetworkGuard, match="loopback only"):
        sock.connect(address)
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(BlockedByNetworkGuard):
        sock.connect_ex(address)
    assert forget_attempts.attempts[before:] == [f"connect({address!r})"] * 2


def test_names_only_dns_knows_are_not_resolved(forget_attempts) -> None:
    with pytest.raises(NameBlockedByNetworkGuard, match="metadata.google.internal"):
        socket.getaddrinfo("metadata.google.internal", 80)
    with pytest.raises(BlockedByNetworkGuard):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert forget_attempts.attempts[-2:] == ["getaddrinfo('metadata.google.internal')", "connect(('192.0.2.1', 80))"]


def test_loopback_and_literals_pass(network_guard) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(("localhost", server.getsockname()[1]), timeout=5):
            pass
    assert socket.getaddrinfo("10.0.0.1", 80)[0][4][0] == "10.0.0.1"  # a literal needs no lookup


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", True),
    ("localhost", True), ("LOCALHOST.", True), ("a.localhost", True), (None, True),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fd00::1", False), ("example.com", False), ("localhost.example", False),
])
def test_what_counts_as_local(host, local) -> None:
    assert is_local_host(host) is local

"""Shared fixtures: a network guard around every test, one embedded Ray per test session (as
NeMo Curator's suite shares one), and paths to ../shared for the tests marked ``shared_data``."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class BlockedByNetworkGuard(ConnectionRefusedError):
    """A test tried to reach something that is not this machine's loopback."""


class NameBlockedByNetworkGuard(socket.gaierror):
    """A test tried to resolve a name that only DNS could answer."""


def is_local_host(host: str | bytes | None) -> bool:
    """Loopback or unspecified addresses (IPv4-mapped too), and the names /etc/hosts gives loopback."""
    if host is None or host in ("", b""):
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = host.split("%", 1)[0].strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name in LOCAL_NAMES or name.endswith(".localhost")
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_loopback or address.is_unspecified


def _is_ip_literal(host: str | bytes | None) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    return True


class NetworkGuard:
    """Wraps ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` for the whole
    session: a connection to anything but loopback, or a lookup of a name that is not local, is
    recorded and refused (nothing leaves the machine). ``getaddrinfo`` of an IP literal needs no
    network and passes; the connect to it is what is checked."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._real = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def install(self) -> None:
        real_connect, real_connect_ex, real_getaddrinfo = self._real
        guard = self

        def connect(sock, address):
            guard.check_address(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            guard.check_address(sock, address)
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if not _is_ip_literal(host) and not is_local_host(host):
                guard.attempts.append(f"getaddrinfo({host!r})")
                raise NameBlockedByNetworkGuard(socket.EAI_NONAME, f"test network guard: resolving {host!r} refused")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo

    def uninstall(self) -> None:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = self._real

    def check_address(self, sock: socket.socket, address) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or is_local_host(address[0]):
            return
        self.attempts.append(f"connect({address!r})")
        raise BlockedByNetworkGuard(f"test network guard: connect to {address!r} refused (tests reach loopback only)")


_GUARD = NetworkGuard()


@pytest.fixture(scope="session", autouse=True)
def network_guard():
    """Installed for the whole session; ``network_guard.attempts`` lists what was refused."""
    _GUARD.install()
    yield _GUARD
    _GUARD.uninstall()


@pytest.fixture(autouse=True)
def _no_network_attempts(network_guard):
    """Fails the test (at teardown) that tried to reach beyond loopback, even if its code swallowed the error."""
    before = len(network_guard.attempts)
    yield
    tried = network_guard.attempts[before:]
    if tried:
        pytest.fail(f"the test tried to reach beyond loopback: {tried}")


@pytest.fixture(scope="session")
def ray_session():
    """A 2-CPU embedded Ray, started as ``curate run`` starts it, shared by every test that runs a pipeline in-process."""
    import ray

    from curate.engine.ray_runtime import EmbeddedRay

    embedded = None
    if not ray.is_initialized():
        embedded = EmbeddedRay(num_cpus=2, object_store_memory=300 * 1024 * 1024)
        embedded.start()
    yield
    if embedded is not None:
        embedded.stop(failed=False)


@pytest.fixture
def sort_shuffle(ray_session):
    """Ray Data's sort shuffle for this test's reduce on the cluster. Ray's default hash shuffle
    (what ``curate run`` uses, and what test_cluster_shuffle_equals_in_process_reduce keeps) starts
    aggregator actors per groupby: 16-21 s for a groupby of 40 rows on the 2-core test machine
    (load ~14), against 0.7 s sorted once warm (same data, same session); a url_dedup run reduced on
    the cluster took 50 s hashed, 16-19 s sorted. Both give each group whole to one call."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    context = DataContext.get_current()
    before = context.shuffle_strategy
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    yield
    context.shuffle_strategy = before


def _shared(folder: str, what: str) -> Path:
    """``../shared/<folder>``, or a skip naming it where it is missing."""
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"needs {path} (real third-party {what}; see ../shared/{folder}/README.md)")
    return path


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return _shared("models", "weights")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _shared("data", "data")


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus (300 rows) shared by the end-to-end tests."""
    from curate.sample.synth import write_synth_corpus

    root = tmp_path_factory.mktemp("synth")
    write_synth_corpus(root, 300, seed=7)
    return root


@pytest.fixture(scope="session")
def http_server():
    """The loopback image server of :mod:`http_fixtures` (one per session; ``.reset()`` its counters)."""
    from http_fixtures import http_server as start

    with start() as server:
        yield server

"""Nothing is fetched that should not be (issue 5 §2): refused schemes and addresses, directly,
by name and through a redirect, all refused *before* any connection is attempted.

Every test runs under a connect guard: ``socket.socket.connect`` is wrapped so that a connection
to anything but the loopback test server is recorded and refused instead of made."""

from __future__ import annotations

import socket

import pyarrow as pa
import pytest

from curate.stages.base import ImageOutput, RunContext
from curate.stages.download import DownloadParams, DownloadStage

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def connects(monkeypatch) -> list[tuple]:
    """Every address a socket tried to connect to; non-loopback ones are refused, not made."""
    attempts: list[tuple] = []
    real = socket.socket.connect

    def guarded(sock, address):
        attempts.append(address)
        if address[0] not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError(f"connect guard: {address} refused")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def stage(context: RunContext | None = None, **params) -> DownloadStage:
    result = DownloadStage(DownloadParams(**{"timeout": 2.0, "threads": 8, **params}))
    result.bind(context or RunContext(ImageOutput(image_size=32)))
    result.setup()
    return result


def fetch(download: DownloadStage, urls: list[str]) -> list[tuple[str | None, str | None, int | None]]:
    rows = download.process(pa.table({"url": pa.array(urls, pa.string())})).to_pylist()
    return [(r["download_status"], r["download_error"], r["orig_bytes"]) for r in rows]


BLOCKED_DIRECT = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
    ("http://10.0.0.1/a.jpg", "10.0.0.1 is private"),
    ("http://172.16.5.4/a.jpg", "172.16.5.4 is private"),
    ("http://192.168.1.1/a.jpg", "192.168.1.1 is private"),
    ("http://100.64.0.1/a.jpg", "100.64.0.1 is shared (CGNAT)"),
    ("http://[fd00::1]/a.jpg", "fd00::1 is private"),
    ("http://[fe80::1]/a.jpg", "fe80::1 is link-local"),
    ("http://[::ffff:10.0.0.1]/a.jpg", "::ffff:10.0.0.1 is private (10.0.0.1 embedded)"),
    ("http://[::ffff:127.0.0.1]/a.jpg", "::ffff:127.0.0.1 is loopback (127.0.0.1 embedded)"),
    ("http://[2002:a9fe:a9fe::]/a.jpg", "2002:a9fe:a9fe:: is link-local (169.254.169.254 embedded)"),
    ("http://[64:ff9b::a9fe:a9fe]/a.jpg", "64:ff9b::a9fe:a9fe is link-local (169.254.169.254 embedded)"),
    ("http://[::1]/a.jpg", "::1 is loopback"),
    ("http://0.0.0.0/a.jpg", "0.0.0.0 is unspecified"),
    ("http://224.0.0.1/a.jpg", "224.0.0.1 is multicast"),
    ("http://127.1/a.jpg", "127.0.0.1 is loopback"),
    ("http://2130706433/a.jpg", "127.0.0.1 is loopback"),
]
SUFFIX = " (to allow it, add its range to download.allow_private)"


def test_refused_addresses_are_never_connected_to(connects) -> None:
    rows = fetch(stage(), [url for url, _ in BLOCKED_DIRECT])
    assert rows == [("blocked_address", why + SUFFIX, None) for _, why in BLOCKED_DIRECT]
    assert connects == []


def test_loopback_by_address_and_by_name_needs_allow_private(http_server, connects) -> None:
    port = http_server.base.rsplit(":", 1)[1]
    urls = [http_server.url("/good/a.jpg"), f"http://localhost:{port}/good/a.jpg"]
    (direct, _, _), (named, detail, _) = fetch(stage(), urls)
    assert direct == named == "blocked_address"
    assert detail.startswith("localhost resolves to ") and "is loopback" in detail
    assert connects == []
    # opened explicitly, the same URLs are fetched
    assert [r[0] for r in fetch(stage(allow_private=LOOPBACK), urls[:1])] == [None]


def test_redirects_are_checked_hop_by_hop(http_server, connects) -> None:
    targets = {
        "http://169.254.169.254/latest/meta-data/": ("blocked_address", "169.254.169.254 is link-local" + SUFFIX),
        "http://10.0.0.1/x.jpg": ("blocked_address", "10.0.0.1 is private" + SUFFIX),
        "http://[::ffff:192.168.0.1]/x.jpg": ("blocked_address", "::ffff:192.168.0.1 is private (192.168.0.1 embedded)" + SUFFIX),
        "http://[fd00::1]/x.jpg": ("blocked_address", "fd00::1 is private" + SUFFIX),
        "file:///etc/passwd": ("blocked_scheme", "scheme 'file' is not fetched (allowed: http, https)"),
        "ftp://127.0.0.1/x.jpg": ("blocked_scheme", "scheme 'ftp' is not fetched (allowed: http, https)"),
    }
    from urllib.parse import quote

    urls = [http_server.url("/to?location=" + quote(target, safe="")) for target in targets]
    rows = fetch(stage(allow_private=LOOPBACK), urls)
    assert [(reason, detail) for reason, detail, _ in rows] == list(targets.values())
    assert {address[0] for address in connects} == {"127.0.0.1"}  # only the allowed first hop


def test_local_files_are_never_opened(monkeypatch, connects) -> None:
    opened: list[str] = []
    real_open = open

    def recording_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    download = stage()
    monkeypatch.setattr("builtins.open", recording_open)
    urls = ["file:///etc/passwd", "file:///no/such/file", "file:///dev/zero", "FILE:///etc/hosts", "ftp://127.0.0.1:21/x.jpg",
            "gopher://127.0.0.1:70/x", "data:image/png;base64,iVBORw0KGgo="]
    rows = fetch(download, urls)
    schemes = ["file", "file", "file", "file", "ftp", "gopher", "data"]
    # the same answer whether the file exists or not: no file_not_found vs not_an_image oracle
    assert rows == [("blocked_scheme", f"scheme {s!r} is not fetched (allowed: http, https)", None) for s in schemes]
    assert not [path for path in opened if path.startswith(("/etc", "/dev", "/no"))]
    assert connects == []


def test_served_directory_is_reachable_without_allow_private(http_server, connects) -> None:
    """``input.serve``: exactly the served host and port are reachable, nothing else on loopback."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = other.getsockname()[1]
        download = stage(RunContext(ImageOutput(image_size=32), base_url=http_server.url("/")))
        rows = fetch(download, ["good/rel.jpg", http_server.url("/good/abs.jpg"), f"http://127.0.0.1:{other_port}/x.jpg"])
    assert [r[0] for r in rows] == [None, None, "blocked_address"]
    assert {address[1] for address in connects} == {int(http_server.base.rsplit(":", 1)[1])}


def test_a_name_connects_only_to_its_checked_addresses(http_server, monkeypatch, connects) -> None:
    """DNS rebinding: a name resolving to a refused and an allowed address is dialled only at the
    allowed one (the connector gets the checked list, not the name)."""
    port = int(http_server.base.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "images.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    rows = fetch(stage(allow_private=LOOPBACK), [f"http://images.rebind.test:{port}/good/r.jpg"])
    assert rows[0][0] is None
    assert [address[0] for address in connects] == ["127.0.0.1"]
    rows = fetch(stage(), [f"http://images.rebind.test:{port}/good/r.jpg"])
    assert rows[0][:2] == ("blocked_address", "images.rebind.test resolves to 10.0.0.7 is private" + SUFFIX)


def test_allow_schemes(http_server) -> None:
    rows = fetch(stage(allow_schemes=["https"], allow_private=LOOPBACK), [http_server.url("/good/a.jpg")])
    assert rows == [("blocked_scheme", "scheme 'http' is not fetched (allowed: https)", None)]
    with pytest.raises(ValueError, match="cannot fetch file, ftp"):
        DownloadParams(allow_schemes=["http", "ftp", "file"])
    with pytest.raises(ValueError, match="'10.0.0.1/8' is not a CIDR network"):
        DownloadParams(allow_private=["10.0.0.1/8"])

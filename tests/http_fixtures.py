"""A loopback HTTP server with one route per way a web image can fail (or succeed), for the
download and end-to-end tests (img2dataset's tests serve images the same way).

Routes (``server.url(path)`` builds the absolute URL):

* ``/good/<name>.jpg``   a 400x300 noisy JPEG (> 5 KB); ``<name>`` seeds the noise, so each name
  is a distinct image (``GOOD_SIZE``)
* ``/small.jpg``          a 100x80 noisy JPEG (``SMALL_SIZE``)
* ``/wide.jpg``           a 900x200 noisy JPEG, aspect ratio 4.5 (``WIDE_SIZE``)
* ``/flat.jpg``           a 300x300 single-colour JPEG: big enough, but under 5 KB (``FLAT_SIZE``)
* ``/bomb.png``           a PNG whose header declares 30000x30000 pixels (a decompression bomb)
* ``/404``, ``/503``      those status codes
* ``/slow``               sleeps ``SLOW_SECONDS`` before answering (longer than any test timeout)
* ``/trickle``            headers, then one byte every 0.3 s forever (only a hard deadline ends it)
* ``/redirect``           302 to ``/good/redirected.jpg``
* ``/html``               200 with an HTML body
* ``/truncated.jpg``      the first half of a good JPEG
* ``/noai.jpg``           a good JPEG with ``X-Robots-Tag: noai``
* ``/flaky/<name>?fail=K`` 503 for the first K requests of that path, then a good JPEG
* ``/busy/<name>?fail=K&after=V`` 503 with ``Retry-After: V`` for the first K requests, then a good JPEG
* ``/drip-headers``       the status line and headers one byte every ``DRIP_INTERVAL`` s, never ending
* ``/silent``             accepts the request and never answers
* ``/big?mb=M``           M MB of zeros (with Content-Length); ``/big?mb=M&length=no``: without it
* ``/to?location=L``      302 to L (any URL: the redirect half of the address-policy tests)

``server.hits[path]`` counts requests per path (query excluded), ``server.times[path]`` lists
when they arrived (``time.monotonic()``); ``server.reset()`` clears both.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

GOOD_SIZE = (400, 300)
SMALL_SIZE = (100, 80)
WIDE_SIZE = (900, 200)
FLAT_SIZE = (300, 300)
BOMB_SIZE = (30000, 30000)
SLOW_SECONDS = 6.0
TRICKLE_INTERVAL = 0.3
DRIP_INTERVAL = 0.05


@lru_cache(maxsize=256)
def noisy_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG of random noise: incompressible, so a 400x300 one is far above 5 KB."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@lru_cache(maxsize=4)
def flat_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@lru_cache(maxsize=2)
def zeros(megabytes: int) -> bytes:
    return bytes(megabytes * 1_000_000)


def good_jpeg(name: str = "0") -> bytes:
    return noisy_jpeg(*GOOD_SIZE, seed=zlib.crc32(name.encode()))


def png_header_bomb(width: int = BOMB_SIZE[0], height: int = BOMB_SIZE[1]) -> bytes:
    """A syntactically valid PNG whose IHDR declares ``width x height`` with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops connections under parallel download

    def __init__(self, address):
        super().__init__(address, _Handler)
        self.hits: Counter[str] = Counter()
        self.times: defaultdict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002  (signature of the base class)
        pass

    def _send(self, status: int, body: bytes, content_type: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802  (name fixed by BaseHTTPRequestHandler)
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        with self.server.lock:
            self.server.hits[path] += 1
            self.server.times[path].append(time.monotonic())
            hits = self.server.hits[path]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (deadline)
            self._route(path, query, hits)

    def _route(self, path: str, query: dict, hits: int) -> None:
        if path.startswith("/good/"):
            self._send(200, good_jpeg(path.removeprefix("/good/")))
        elif path == "/small.jpg":
            self._send(200, noisy_jpeg(*SMALL_SIZE, seed=1))
        elif path == "/wide.jpg":
            self._send(200, noisy_jpeg(*WIDE_SIZE, seed=2))
        elif path == "/flat.jpg":
            self._send(200, flat_jpeg(*FLAT_SIZE))
        elif path == "/bomb.png":
            self._send(200, png_header_bomb(), "image/png")
        elif path == "/404":
            self._send(404, b"not found", "text/plain")
        elif path == "/503":
            self._send(503, b"unavailable", "text/plain")
        elif path == "/slow":
            if not self.server.stopping.wait(SLOW_SECONDS):
                self._send(200, good_jpeg("slow"))
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            while not self.server.stopping.wait(TRICKLE_INTERVAL):
                self.wfile.write(b"\xff")
                self.wfile.flush()
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/good/redirected.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/html":
            self._send(200, b"<!doctype html><html><body><h1>Not an image</h1></body></html>", "text/html; charset=utf-8")
        elif path == "/truncated.jpg":
            body = good_jpeg("truncated")
            self._send(200, body[: len(body) // 2])
        elif path == "/noai.jpg":
            self._send(200, good_jpeg("noai"), headers={"X-Robots-Tag": "noai"})
        elif path.startswith("/flaky/"):
            failures = int(query.get("fail", ["2"])[0])
            if hits <= failures:
                self._send(503, b"try again", "text/plain")
            else:
                self._send(200, good_jpeg(path))
        elif path.startswith("/busy/"):
            if hits <= int(query.get("fail", ["1"])[0]):
                self._send(503, b"busy", "text/plain", headers={"Retry-After": query.get("after", ["1"])[0]})
            else:
                self._send(200, good_jpeg(path))
        elif path == "/drip-headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Pad: " + b"a" * 100_000
            for byte in head:
                if self.server.stopping.wait(DRIP_INTERVAL):
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        elif path == "/silent":
            self.server.stopping.wait()
        elif path == "/big":
            body = zeros(int(query.get("mb", ["1"])[0]))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            if query.get("length", ["yes"])[0] != "no":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/to":
            self.send_response(302)
            self.send_header("Location", query["location"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no such route", "text/plain")


class LoopbackServer:
    """Handle on a running :class:`_Server`: URLs, per-path hit counters, reset."""

    def __init__(self, server: _Server):
        self._server = server
        self.base = f"http://127.0.0.1:{server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + ("" if path.startswith("/") else "/") + path

    @property
    def hits(self) -> Counter[str]:
        return self._server.hits

    @property
    def times(self) -> defaultdict[str, list[float]]:
        return self._server.times

    def reset(self) -> None:
        with self._server.lock:
            self._server.hits.clear()
            self._server.times.clear()


@contextlib.contextmanager
def http_server() -> Iterator[LoopbackServer]:
    """Start the loopback server on an ephemeral port in a daemon thread; stop it on exit."""
    server = _Server(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield LoopbackServer(server)
    finally:
        server.stopping.set()  # ends /slow and /trickle handlers
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

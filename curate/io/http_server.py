"""A loopback HTTP server over a directory, started by curate for one run (``input.serve``),
so that a local corpus is fetched by URL for real, through the same download path as the web."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from curate.errors import ConfigError, InputError


def check_serve_reachable(serve: str | None, address: str | None, source: str) -> None:
    """Refuse ``input.serve`` on a cluster (``--address`` or ``RAY_ADDRESS``), before Ray starts:
    the server binds the driver's loopback, which the other nodes' download workers cannot reach
    (they would fetch their own 127.0.0.1 and fail every row as ``connection_refused``)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if serve and address and address != "local":
        raise ConfigError(source, "input.serve", f"serves {serve} on this machine's loopback, which the other nodes "
                          f"of the cluster at {address} cannot reach",
                          "serve the files from an address every node reaches and list their URLs, or run without --address")


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops connections under parallel download

    def handle_error(self, request, client_address) -> None:
        # The download client closes a connection on purpose (deadline, max_bytes, a worker that
        # stopped early): not an error worth a traceback on the user's terminal.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _QuietHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002  (signature of the base class)
        pass


@contextlib.contextmanager
def serve_directory(root: str | Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``root`` on an ephemeral loopback port; yields the base URL (ending in ``/``)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"input.serve: {root} is not a directory")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _LoopbackServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="curate-serve", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()

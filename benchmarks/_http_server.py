"""Loopback HTTP file server for the download benchmark, run as its own process so that it
does not share a GIL with the client being measured. Prints its base URL on stdout, then
serves until terminated. The query string is ignored (``a.jpg?i=7`` serves ``a.jpg``), so
one photo can stand behind many distinct URLs."""

import contextlib
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass


def main() -> None:
    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()

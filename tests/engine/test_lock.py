"""One driver per run directory: the lock names its holder, dies with it (even by kill -9), and
falls back to pid liveness where the filesystem has no flock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from curate.engine.lock import LOCK_NAME, RunLock, live_holder
from curate.errors import UserError

HOLD = ("import sys, time; from curate.engine.lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)")


def _holder_process(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_second_lock_is_refused_naming_the_holder_until_it_is_killed(tmp_path) -> None:
    holder = _holder_process(tmp_path)
    try:
        with pytest.raises(UserError) as refused:
            RunLock(tmp_path).acquire()
        since = json.loads((tmp_path / LOCK_NAME).read_text())["since"]
        assert str(refused.value) == (f"{tmp_path}: in use by another curate run (host {socket.gethostname()}, "
                                      f"pid {holder.pid}, since {since}); wait for it to finish or choose another --output")
        assert live_holder(tmp_path)["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 leaves the file naming a dead pid; the kernel has released the flock
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    assert live_holder(tmp_path) is None
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):  # a second open file in this process too
            RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: names nobody
    assert live_holder(tmp_path) is None


def test_without_flock_a_live_holder_is_refused_and_a_dead_ones_lock_taken_over(tmp_path) -> None:
    first = RunLock(tmp_path, use_flock=False)
    first.acquire()
    with pytest.raises(UserError, match=rf"pid {os.getpid()}, .*; if that process is gone, remove {tmp_path / LOCK_NAME}"):
        RunLock(tmp_path, use_flock=False).acquire()
    first.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the lock file and our own link source are gone

    (tmp_path / LOCK_NAME).write_text("")  # what a released flock leaves
    with RunLock(tmp_path, use_flock=False):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = {"host": socket.gethostname(), "pid": gone.pid, "since": "2024-01-01T00:00:00+0000"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    assert live_holder(tmp_path) is None
    with RunLock(tmp_path, use_flock=False):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()

    elsewhere = {**stale, "host": "another-host"}  # cannot check a pid on another host: refused
    (tmp_path / LOCK_NAME).write_text(json.dumps(elsewhere))
    with pytest.raises(UserError, match="host another-host, pid"):
        RunLock(tmp_path, use_flock=False).acquire()


def test_a_holder_that_has_not_written_its_name_yet(tmp_path) -> None:
    holder = _holder_process(tmp_path)
    try:
        (tmp_path / LOCK_NAME).write_text("")  # as between the holder's flock and its write
        with pytest.raises(UserError, match="in use by another curate run \\(a driver that is still starting\\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()

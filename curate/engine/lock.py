"""One driver per run directory: an exclusive lock file naming its holder (host, pid, since).

Two drivers on one ``--output`` lost ~390 kept samples and broke every later rerun (issue 5 §3):
the second one's recovery deleted the first one's ``_tmp/`` and unmarked shards. The lock is
``fcntl.flock`` on ``<run>/curate.lock``: the kernel releases it when its holder dies, even
by ``kill -9``, so a stale lock cannot block a rerun. Where the filesystem has no flock (some
NFS and FUSE mounts answer ENOLCK / EOPNOTSUPP), the lock file is created exclusively instead
and a leftover one is taken over only when its holder ran on this host and its pid is gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

import psutil

from curate.errors import UserError

LOCK_NAME = "curate.lock"

# errnos of a filesystem that cannot flock at all (as opposed to "held by someone else").
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLock:
    """Exclusive lock of a run directory; ``with RunLock(root):`` or ``acquire()``/``release()``."""

    def __init__(self, root: Path, use_flock: bool = True):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.use_flock = use_flock
        self._fd: int | None = None  # the flocked file, while held
        self._linked = False  # holding the no-flock fallback's lock file

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`UserError` naming the holder."""
        if self.use_flock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._held_error(read_holder(self.path)) from None
            except OSError as err:
                os.close(fd)
                if err.errno not in _NO_FLOCK:
                    raise
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(_me()).encode(), 0)
                self._fd = fd
                return
        self._link_exclusive()
        self._linked = True

    def release(self) -> None:
        if self._linked:
            self.path.unlink(missing_ok=True)
            self._linked = False
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the file stays (unlinking it races a waiter), naming nobody
            os.close(self._fd)
            self._fd = None

    def _link_exclusive(self) -> None:
        """The no-flock fallback: our name written to a file of our own, then hard-linked to the
        lock path, which fails if it exists (atomic even on NFS), so the lock file is never seen
        empty while held. An empty one (left by flock mode) or a dead pid's on this host is stale."""
        mine = self.path.with_name(f"{LOCK_NAME}.{socket.gethostname()}.{os.getpid()}")
        mine.write_text(json.dumps(_me()))
        try:
            for _ in range(3):
                try:
                    os.link(mine, self.path)
                    return
                except FileExistsError:
                    holder = live_holder(self.root)
                    if holder:
                        raise self._held_error(holder, stays=True) from None
                    self.path.unlink(missing_ok=True)
            raise self._held_error(read_holder(self.path), stays=True)
        finally:
            mine.unlink(missing_ok=True)

    def _held_error(self, holder: dict | None, stays: bool = False) -> UserError:
        """``stays``: a fallback lock file outlives a killed holder (a flock does not)."""
        if not holder:
            who = "a driver that is still starting"
        else:
            who = f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}"
        fix = "wait for it to finish or choose another --output"
        if stays:
            fix += f"; if that process is gone, remove {self.path}"
        return UserError(f"{self.root}: in use by another curate run ({who}); {fix}")


def live_holder(root: Path) -> dict | None:
    """Who holds a run's lock, for ``curate stats``: read, never locked (a probe lock would turn
    away a driver starting at that instant). A released lock file is empty; one left by a
    ``kill -9`` names a pid that is gone (checked on this host; another host's is reported)."""
    holder = read_holder(Path(root) / LOCK_NAME)
    if not holder:
        return None
    pid = int(holder.get("pid", 0))
    return holder if holder.get("host") != socket.gethostname() or (pid > 0 and psutil.pid_exists(pid)) else None


def read_holder(path: Path) -> dict | None:
    try:
        text = path.read_text()
        return json.loads(text) if text else None
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # just created by a holder that has not written its name yet


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

"""One driver per run directory: an exclusive lock file naming its holder (host, pid, since).

Two drivers on one ``--output`` lost ~390 kept samples and broke every later rerun (issue 5 §3):
the second one's recovery deleted the first one's ``_tmp/`` and unmarked shards. The lock is
``fcntl.flock`` on ``<run>/curate.lock``: the kernel releases it when its holder dies, even
by ``kill -9``, so a stale lock cannot block a rerun. Where the filesystem has no flock (some
NFS and FUSE mounts answer ENOLCK / EOPNOTSUPP), the lock file is created exclusively instead
and a leftover one is taken over only when its holder ran on this host and its pid is gone.

On an object store (:class:`StoreLock`) there is no flock and no rename. The lock is an object,
``<run>/curate.lock``, created with a conditional PUT (``If-None-Match: *``; SeaweedFS 4.48
and S3 honour it, tests/storage checks the refusal) and held as a lease: it names its holder
and an expiry ``LEASE_S`` ahead, which a thread renews every ``LEASE_S / 4`` with ``If-Match``
on the ETag it last wrote. A later driver takes the lock over only from a holder whose lease has
expired or whose pid is gone on this host, again with ``If-Match``, so two takers cannot both
win. Expiry compares wall clocks across hosts. ``gs://`` gets the same lease without the
preconditions (checked, then written).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

import psutil

from curate import storage
from curate.engine import s3_conditional
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


def live_holder(root: Path | str) -> dict | None:
    """Who holds a run's lock, for ``curate stats``: read, never locked (a probe lock would turn
    away a driver starting at that instant). A released lock file is empty; one left by a
    ``kill -9`` names a pid that is gone (checked on this host; another host's is reported);
    a store lease past its expiry holds nothing."""
    if not storage.is_local(str(root)):
        holder, _ = _read_lease(storage.join(str(root), LOCK_NAME))
        return holder if holder and not _stale(holder) else None
    holder = read_holder(Path(root) / LOCK_NAME)
    if not holder:
        return None
    return None if _dead_here(holder) else holder


def _dead_here(holder: dict) -> bool:
    pid = int(holder.get("pid", 0))
    return holder.get("host") == socket.gethostname() and not (pid > 0 and psutil.pid_exists(pid))


def read_holder(path: Path) -> dict | None:
    try:
        text = path.read_text()
        return json.loads(text) if text else None
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # just created by a holder that has not written its name yet


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


LEASE_S = 60.0


class StoreLock:
    """Exclusive lease of a run directory on an object store (module docstring)."""

    def __init__(self, root: str):
        self.root = str(root)
        self.uri = storage.join(self.root, LOCK_NAME)
        self._conditional = storage.scheme_of(self.root) == "s3"
        self._etag: str | None = None
        self._token = os.urandom(8).hex()  # tells our lease from a later holder's
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if not self._put({"If-None-Match": "*"}):
            holder, etag = _read_lease(self.uri)
            if holder and not _stale(holder):
                raise self._held_error(holder)
            if not self._put({"If-Match": etag} if etag else {"If-None-Match": "*"}):
                raise self._held_error(_read_lease(self.uri)[0])
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="curate-lock-lease", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        if self._renewer is None:
            return
        self._stop.set()
        self._renewer.join()
        self._renewer = None
        holder, etag = _read_lease(self.uri)
        if etag == self._etag or (holder and holder.get("token") == self._token):
            storage.delete(self.uri)
        self._etag = None

    def _put(self, condition: dict[str, str]) -> bool:
        """Write our lease under ``condition``; False when the store refused the precondition."""
        lease = {**_me(), "token": self._token, "expires": time.time() + LEASE_S}
        body = json.dumps(lease).encode()
        if not self._conditional:
            if condition.get("If-None-Match") and storage.exists(self.uri):
                return False
            storage.write_bytes(self.uri, body)
            self._etag = _read_lease(self.uri)[1]
            return True
        status, headers, text = s3_conditional.request("PUT", self.uri.partition("://")[2], body, condition)
        if status == s3_conditional.PRECONDITION_FAILED:
            return False
        if status >= 300:  # 404: no such bucket
            raise s3_conditional.S3RequestError(f"{self.uri}: PUT refused with HTTP {status}: {text[:200]!r}")
        self._etag = headers.get("etag")
        return True

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            try:
                if not self._put({"If-Match": self._etag} if self._etag else {}):
                    return  # taken over after our lease expired (a stalled driver); nothing to renew
            except OSError:
                continue  # a failed renewal is retried; the lease has 3 more periods to run

    def _held_error(self, holder: dict | None) -> UserError:
        if not holder:
            who = "a driver that is still starting"
        else:
            until = time.strftime("%H:%M:%S", time.localtime(holder.get("expires", 0)))
            who = f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}, lease until {until}"
        return UserError(f"{self.root}: in use by another curate run ({who}); wait for it to finish or choose "
                         f"another --output (a killed driver's lease expires {LEASE_S:.0f} s after its last renewal)")


def _read_lease(uri: str) -> tuple[dict | None, str | None]:
    """The lease's holder and ETag (None, None when there is none)."""
    try:
        fs, path = storage.filesystem_of(uri)
        with fs.open_input_stream(path, compression=None) as stream:
            body, meta = stream.read(), stream.metadata() or {}
    except FileNotFoundError:
        return None, None
    etag = meta.get(b"ETag") or meta.get("ETag")
    try:
        holder = json.loads(body) if body else None
    except json.JSONDecodeError:
        holder = None
    return holder, etag.decode() if isinstance(etag, bytes) else etag


def _stale(holder: dict) -> bool:
    return float(holder.get("expires", 0)) < time.time() or _dead_here(holder)

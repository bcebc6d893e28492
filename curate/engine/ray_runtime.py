"""Starting Ray: an embedded Ray of curate's own by default, or a cluster via ``--address`` / ``RAY_ADDRESS``.

The embedded Ray (issue 5 §2, §5, §7) is a private, loopback-only single-node Ray:

- it always starts its own (``address="local"``): a stale ``ray_current_cluster`` left by an
  earlier ``ray start`` is never joined (it used to hang for minutes on "Failed to connect to GCS");
- it binds to 127.0.0.1 (node IP, so every gRPC server and agent) and reaches nothing else: Ray's
  API-server process is not started, because its only module in ``include_dashboard=False`` mode
  (usage stats) probes cloud metadata (169.254.169.254:80, DNS for ``metadata.google.internal``)
  on every start, usage stats on or off; the node IP stays 127.0.0.1, so Ray's driver does not
  probe 8.8.8.8:53 for an external address either (see ``_embedded_patches``);
- token authentication is on, with a random token per session held in the environment of the
  session's processes only (no world-readable ``~/.ray/auth_token``, no warning on the terminal);
- worker output stays in the session's log files (no ``(map_batches pid=...)`` lines on the
  terminal); a worker's error still reaches the driver as the task's exception, and when a run
  fails its Ray logs are kept and named in the error;
- Prometheus metrics (``metrics: {enabled: true}``, the default): the node's metrics agent exports
  Ray's and curate's metrics on 127.0.0.1 (``metrics.export_port``, a free port by default) and the
  driver writes Prometheus' service-discovery file for it, ``<tmp>/curate-ray-<uid>/prom_metrics_<session>.json``
  (Ray writes its own only from the dashboard, which is not started). With metrics off the agents run
  minimal: no metrics agent, no export;
- its files live in a directory per driver, ``<tmp>/curate-ray-<uid>/<name>/``, locked while the
  driver lives. Each start kills the leftover Ray processes of drivers that died (kill -9 leaves
  raylet and agents running for minutes) and removes their directories; another user's Ray, or a
  Ray started by ``ray start``, is never touched: only processes whose command line names one of
  our dead directories (or holds a file open there) are.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from curate.config import MetricsSpec, ResourcesSpec
from curate.errors import UserError
from curate.io.plan_tasks import Call

LOOPBACK = "127.0.0.1"
LOCK_NAME = "driver.lock"
KEPT_MARKER = "kept"
"""A failed run's directory holds this file: its Ray logs stay until the user removes them."""
TERMINATE_GRACE_S = 3.0
DISCOVERY_PREFIX = "prom_metrics_"
"""Prometheus' file service discovery of an embedded Ray: ``<sessions root>/prom_metrics_<session>.json``."""


@contextlib.contextmanager
def ray_session(address: str | None, resources: ResourcesSpec, metrics: MetricsSpec | None = None) -> Iterator[None]:
    """Reuse a running Ray (tests, notebooks), join a cluster, or start an embedded one."""
    import ray

    from curate.stats.metrics import configure

    metrics = metrics or MetricsSpec()
    configure(metrics.enabled)
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        _quiet_data_context()
        yield
        return
    if address:
        _join_cluster(address)
        _quiet_data_context()
        try:
            yield
        finally:
            ray.shutdown()
        return
    object_store = resources.object_store_memory_mb * 1024 * 1024 if resources.object_store_memory_mb else None
    embedded = EmbeddedRay(num_cpus=resources.cpus, object_store_memory=object_store,
                           metrics_port=metrics.export_port if metrics.enabled else None)
    embedded.start()
    _quiet_data_context()
    failed = False
    try:
        yield
    except Exception as error:
        # A bug or a crashed worker: keep Ray's logs and name them (a user mistake needs none).
        failed = not isinstance(error, UserError)
        if failed:
            error.add_note(f"Ray's logs of this run: {embedded.logs_dir}")
        raise
    finally:
        embedded.stop(failed=failed)


def _join_cluster(address: str) -> None:
    """Connect to a running cluster as its driver, shipping this package to its workers (they
    may lack it). Worker output stays in the cluster's logs, as in the embedded Ray.

    Ray turns a loopback address into the machine's external one (probing 8.8.8.8:53 to find
    it), which a cluster started with ``--node-ip-address 127.0.0.1`` does not listen on: the
    driver then retried for minutes. A loopback address is kept, with a loopback driver."""
    import ray
    from ray._private import ray_constants

    runtime_env = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    kwargs: dict = {"address": address, "include_dashboard": False, "log_to_driver": False,
                    "logging_level": logging.WARNING, "runtime_env": runtime_env}
    with contextlib.ExitStack() as patches:
        if _is_loopback(address.rpartition(":")[0] or address):
            patches.enter_context(mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False))
            kwargs["_node_ip_address"] = LOOPBACK
        ray.init(**kwargs)


def _is_loopback(host: str) -> bool:
    host = host.removeprefix("ray://").strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def on_workers(calls: list[Call]) -> list:
    """Run planning calls as Ray tasks (one CPU each, all at once); results in the calls' order.

    A call's :class:`UserError` (an unreadable input file) is raised as itself, the first in
    the calls' order, and the tasks not yet finished are cancelled."""
    import ray

    remote: dict = {}
    refs = []
    for function, args in calls:
        task = remote.setdefault(function, ray.remote(num_cpus=1)(function))
        refs.append(task.remote(*args))
    try:
        return [ray.get(ref) for ref in refs]
    except ray.exceptions.RayTaskError as err:
        for ref in refs:
            ray.cancel(ref)
        if isinstance(err.cause, UserError):
            raise err.cause from None
        raise


class EmbeddedRay:
    """One private, loopback-only Ray for this driver (see the module docstring)."""

    def __init__(self, num_cpus: int | None = None, object_store_memory: int | None = None,
                 metrics_port: int | None = None):
        """``metrics_port``: export Prometheus metrics on 127.0.0.1 at this port (0: a free one);
        None: no metrics agent (the agents run minimal)."""
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.metrics_port = metrics_port
        self.session_dir: Path | None = None
        self._lock: int | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def logs_dir(self) -> Path | None:
        return self.session_dir / "session_latest" / "logs" if self.session_dir else None

    @property
    def discovery_file(self) -> Path | None:
        """Prometheus' file_sd target file of this session (written while it runs with metrics)."""
        return discovery_file(self.session_dir) if self.session_dir else None

    def start(self) -> None:
        import ray

        root = sessions_root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(root)
        with _root_lock(root):
            reap_dead_sessions(root)
            self.session_dir = Path(tempfile.mkdtemp(prefix="s", dir=root))
            self._lock = _lock_fd(self.session_dir / LOCK_NAME, blocking=True)
        self._set_env(_session_env())
        kwargs: dict = {
            "address": "local",
            "_node_ip_address": LOOPBACK,
            "_temp_dir": str(self.session_dir),
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.num_cpus:
            kwargs["num_cpus"] = self.num_cpus
        if self.object_store_memory:
            kwargs["object_store_memory"] = self.object_store_memory
        if self.metrics_port is not None:
            kwargs["_metrics_export_port"] = self.metrics_port
        try:
            with _embedded_patches(metrics=self.metrics_port is not None):
                ray.init(**kwargs)
            if self.metrics_port is not None:
                _write_discovery_file(self.discovery_file)
        except BaseException:
            self.stop(failed=True)
            raise

    def stop(self, failed: bool) -> None:
        import ray

        ray.shutdown()
        self._restore_env()
        if self.session_dir is None:
            return
        self.discovery_file.unlink(missing_ok=True)
        if failed:
            (self.session_dir / KEPT_MARKER).touch()
        else:
            shutil.rmtree(self.session_dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _set_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _reload_ray_config()

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._saved_env:
            _reload_ray_config()
        self._saved_env = {}


def sessions_root(tmp: str | None = None) -> Path:
    """``<tmp>/curate-ray-<uid>``, ``<tmp>`` being ``RAY_TMPDIR`` (as for Ray's own files) or the system's
    temp dir: per user, so one user's start never scans another's sessions."""
    tmp = tmp or os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    return Path(tmp) / f"curate-ray-{os.getuid()}"


def discovery_file(session: Path) -> Path:
    """Beside the session dirs, not in one: Prometheus globs the last path segment only
    (``file_sd_configs: [{files: [<root>/prom_metrics_*.json]}]`` finds every live embedded Ray)."""
    return session.parent / f"{DISCOVERY_PREFIX}{session.name}.json"


def _write_discovery_file(path: Path) -> None:
    """Ray's own format (``ray._private.metrics_agent.PrometheusServiceDiscoveryWriter``), written
    atomically as Ray does: Prometheus may read it at any moment."""
    import json

    import ray

    targets = [f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}" for node in ray.nodes() if node["Alive"]]
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
    os.replace(partial, path)


def _check_private(root: Path) -> None:
    """Ray makes its session dirs world-writable; ours live in a dir only this user can enter."""
    info = root.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UserError(f"{root}: not a private directory of this user (mode {info.st_mode & 0o777:o}, owner "
                        f"uid {info.st_uid}); remove it, or set RAY_TMPDIR to a directory of your own")


def reap_dead_sessions(root: Path) -> list[int]:
    """Kill the Ray processes of every session under ``root`` whose driver is gone; remove its dir.

    A driver holds an exclusive ``flock`` on its session's lock file for as long as it lives
    (the kernel drops it when the process dies, kill -9 included), so a lock we can take is a
    dead driver's. Returns the pids that were signalled."""
    killed: list[int] = []
    for session in sorted(p for p in root.iterdir() if p.is_dir()):
        lock_path = session / LOCK_NAME
        if lock_path.exists():
            fd = _lock_fd(lock_path, blocking=False)
            if fd is None:
                continue  # a live driver's session
            os.close(fd)
        # No lock file: a driver died between mkdtemp and creating it (both happen under the
        # root lock, so no live driver is ever in that state when we look).
        killed += _kill_processes_naming(session)
        discovery_file(session).unlink(missing_ok=True)
        if not (session / KEPT_MARKER).exists():
            shutil.rmtree(session, ignore_errors=True)
    return killed


def _kill_processes_naming(session: Path) -> list[int]:
    """SIGTERM, then SIGKILL after a grace period, every process of ours that belongs to ``session``."""
    import psutil

    uid = os.getuid()
    victims = []
    for proc in psutil.process_iter(["pid", "uids"]):
        if proc.info["uids"] is None or proc.info["uids"].real != uid or proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if _belongs_to(proc, session):
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(victims, timeout=TERMINATE_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=TERMINATE_GRACE_S)
    return [p.pid for p in victims]


def _belongs_to(proc, session: Path) -> bool:
    """Its argv names the session dir (GCS, raylet, workers' flags), or it holds a file open there:
    Ray's agents retitle themselves (``ray::DashboardAgent``, argv and environment overwritten)
    but keep the raylet's log files open."""
    prefix = str(session) + os.sep
    if any(arg.startswith(prefix) or prefix in arg for arg in proc.cmdline()):
        return True
    return any(f.path.startswith(prefix) for f in proc.open_files())


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """Serialises session creation against reaping, so a new session is never taken for a dead one."""
    fd = _lock_fd(root / ".lock", blocking=True)
    try:
        yield
    finally:
        os.close(fd)


def _lock_fd(path: Path, blocking: bool) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _session_env() -> dict[str, str]:
    """Environment of the embedded Ray's processes (inherited at spawn; restored in the driver after)."""
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # loopback node IP in every Ray process
    if "RAY_AUTH_MODE" not in os.environ:
        # Explicit mode: Ray's "token authentication is enabled" warning is for an unset one.
        env["RAY_AUTH_MODE"] = "token"
        if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
            env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


def _reload_ray_config() -> None:
    """Make this process's Ray see RAY_AUTH_* as set now (Ray's own ``_enable_token_auth`` does the same)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _embedded_patches(metrics: bool) -> Iterator[None]:
    """What ``ray.init`` has no switch for, changed for the length of the call only.

    - Ray turns a loopback node IP into the machine's external one (probing 8.8.8.8:53 to find
      it) unless clusters are off, as on macOS: off, every server binds 127.0.0.1.
    - No API-server process: with ``include_dashboard=False`` it runs only the usage-stats module,
      which sends cloud-metadata requests off the machine; Ray treats a missing API server as one
      that failed to start, which ``include_dashboard=False`` tolerates. Waiting for it to publish
      its URL was 6.6 s of a 24 s ``ray.init`` on 2 busy cores.
    - No autoscaler monitor process: one node, nothing to scale (~1 s of start-up CPU).
    - Without metrics, agents run minimal (no HTTP/metrics servers) without the driver importing
      aiohttp and the rest of the dashboard's dependencies to decide it (2.5 s of the driver's
      ``ray.init``). With metrics, the full dashboard agent runs the metrics agent; its HTTP server
      (unused here: it serves the dashboard) takes a free port instead of the fixed 52365, which a
      second curate run on the machine could not bind.
    """
    from ray._private import node, parameter, ray_constants, services
    from ray._private import utils as ray_utils

    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False))
        patches.enter_context(mock.patch.object(services, "start_api_server", lambda *a, **k: (None, None)))
        patches.enter_context(mock.patch.object(node.Node, "start_monitor", lambda self: None))
        if metrics:
            free_agent_port = functools.partial(parameter.RayParams, dashboard_agent_listen_port=0)
            patches.enter_context(mock.patch.object(parameter, "RayParams", free_agent_port))
        else:
            minimal = ImportError("curate's embedded Ray runs Ray's agents minimal")
            patches.enter_context(mock.patch.object(ray_utils, "get_dashboard_dependency_error", lambda: minimal))
        yield


def _quiet_data_context() -> None:
    """curate draws its own progress bar and funnel; Ray Data's per-dataset chatter goes."""
    from ray.data import DataContext

    # curate re-raises a failed task itself, as one line or with its traceback; Ray Data's own
    # ERROR lines about it would only come first (seen on a full disk).
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_operator_progress_bars = False

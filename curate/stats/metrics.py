"""Live metrics of a run through Ray's metrics API (``ray.util.metrics``), so they flow through
Ray's own Prometheus export: the embedded Ray's on 127.0.0.1, a cluster's on each node.

Ray prefixes every name with ``ray_`` (``curate_rows_in`` is ``ray_curate_rows_in_total`` in
Prometheus, a histogram adds ``_bucket``/``_sum``/``_count``), and adds ``WorkerId``, ``NodeAddress``
and ``SessionName`` labels: each worker process has its own series, so queries ``sum by`` the
labels below (``stage``, ``part``, ``reason``, ``status``, ``device``, ``phase``).

The metric objects are made lazily, once per process, on first use; recording one is a call into
Ray's C++ recorder (no I/O: the core worker pushes to the node's metrics agent every
``metrics_report_interval_ms``, 10 s by default). With ``metrics: {enabled: false}`` in the spec
nothing here creates a metric object: the driver's choice reaches the workers through Ray Data's
``DataContext`` (copied into every task and actor of the run), read with :func:`enabled`.

Counters count work done, which is the funnel's rows except where work is redone: a task Ray
re-executes after a worker crash counts its batch again (the ledger does not), and so does a
``--retry-failed`` pass. A global stage's observe pass, which replays the cheap stages before it,
is not counted in the row counters (:func:`replaying`), so they match the funnel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

#: DataContext key holding the spec's ``metrics.enabled`` for every task and actor of the run.
ENABLED_KEY = "curate.metrics.enabled"
#: DataContext key set while a global stage's observe pass replays the stages before it.
REPLAY_KEY = "curate.metrics.replaying"

#: Seconds; one batch of a cheap caption filter takes ~1 ms, a download batch of 500 URLs with a
#: 5 s deadline up to ~10 s, a CPU CLIP batch of 256 rows ~30 s on 2 cores.
LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]

_enabled_in_driver: bool | None = None  # set by configure(); None in a worker process
_metrics: dict[str, Any] | None = None  # this process's metric objects, made on first use


def configure(enabled: bool) -> None:
    """On the driver, before a run's datasets are built: whether this run records metrics."""
    global _enabled_in_driver
    from ray.data import DataContext

    _enabled_in_driver = enabled
    DataContext.get_current().set_config(ENABLED_KEY, enabled)


def enabled() -> bool:
    """The run's choice, in the driver or in any task or actor of the run (default: on)."""
    if _enabled_in_driver is not None:
        return _enabled_in_driver
    from ray.data import DataContext

    return bool(DataContext.get_current().get_config(ENABLED_KEY, True))


@contextlib.contextmanager
def replaying(replay: bool) -> Iterator[None]:
    """While a global stage's observe pass replays the stages before it, their rows are not
    counted again (they are counted once, by the pass that decides them)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.get_config(REPLAY_KEY, False)
    context.set_config(REPLAY_KEY, replay)
    try:
        yield
    finally:
        context.set_config(REPLAY_KEY, before)


def _make() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge, Histogram

    stage = ("stage", "part")
    return {
        "rows_in": Counter("curate_rows_in", "rows a stage received (alive rows only)", stage),
        "rows_kept": Counter("curate_rows_kept", "rows a stage passed on", stage),
        "rows_dropped": Counter("curate_rows_dropped", "rows a stage dropped, by reason", (*stage, "reason")),
        "batch_seconds": Histogram("curate_batch_seconds", "seconds a stage spent on one batch", LATENCY_BUCKETS,
                                   stage),
        "model_batch_seconds": Histogram("curate_model_batch_seconds",
                                         "seconds a model stage (an actor pool) spent on one batch, by device",
                                         LATENCY_BUCKETS, (*stage, "device")),
        "download_bytes": Counter("curate_download_bytes", "response body bytes fetched", ("stage",)),
        "download_requests": Counter("curate_download_requests",
                                     "URLs fetched, by HTTP status (or failure reason when no response came)",
                                     ("stage", "status")),
        "units_committed": Counter("curate_units_committed", "units committed by the driver", ("phase",)),
        "units_pending": Gauge("curate_units_pending", "units of the current pass not yet committed", ("phase",)),
    }


def _get() -> dict[str, Any]:
    global _metrics
    if _metrics is None:
        _metrics = _make()
    return _metrics


def stage_batch(stage, rows_in: int, drops: Mapping[str, int], seconds: float) -> None:
    """One batch of ``stage`` (the Stage object: ``.name`` the user's stage, ``.kind`` the part)
    took ``seconds`` on ``rows_in`` alive rows and dropped ``drops`` ({reason: rows})."""
    if not enabled():
        return
    from ray.data import DataContext

    metrics = _get()
    tags = {"stage": stage.name, "part": stage.kind}
    metrics["batch_seconds"].observe(seconds, tags)
    if _is_model(stage):
        device = "gpu" if stage.resources.gpus > 0 else "cpu"
        metrics["model_batch_seconds"].observe(seconds, {**tags, "device": device})
    if DataContext.get_current().get_config(REPLAY_KEY, False):
        return
    dropped = 0
    for reason, rows in drops.items():
        if rows > 0:  # Ray's Counter.inc refuses 0
            metrics["rows_dropped"].inc(rows, {**tags, "reason": reason})
            dropped += rows
    if rows_in > 0:
        metrics["rows_in"].inc(rows_in, tags)
    if rows_in > dropped:
        metrics["rows_kept"].inc(rows_in - dropped, tags)


def _is_model(stage) -> bool:
    """A stage that runs in an actor pool (it loads something: a model) has a model batch time."""
    from curate.engine.operators import runs_in_actors  # late: the engine imports this module

    return runs_in_actors(stage)


def download_batch(stage: str, body_bytes: int, statuses: Mapping[str, int]) -> None:
    """A download batch fetched ``body_bytes`` of bodies; ``statuses``: {HTTP status or reason: URLs}."""
    if not enabled():
        return
    metrics = _get()
    if body_bytes > 0:
        metrics["download_bytes"].inc(body_bytes, {"stage": stage})
    for status, count in statuses.items():
        if count > 0:
            metrics["download_requests"].inc(count, {"stage": stage, "status": status})


def units_progress(phase: str, committed_now: int, pending: int) -> None:
    """On the driver: ``committed_now`` more units of ``phase`` committed, ``pending`` left."""
    if not enabled():
        return
    metrics = _get()
    if committed_now > 0:
        metrics["units_committed"].inc(committed_now, {"phase": phase})
    metrics["units_pending"].set(pending, {"phase": phase})


def created() -> bool:
    """Whether this process made its metric objects (for tests: never when metrics are off)."""
    return _metrics is not None

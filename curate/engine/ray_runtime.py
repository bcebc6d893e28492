"""Starting Ray: embedded by default, or an existing cluster via ``--address`` / ``RAY_ADDRESS``."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from curate.config import ResourcesSpec


@contextlib.contextmanager
def ray_session(address: str | None, resources: ResourcesSpec) -> Iterator[None]:
    """Reuse a running Ray (tests, notebooks), join a cluster, or start an embedded one."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    started = False
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
        if address:
            # Ship this package to the cluster's workers in case they lack it.
            kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
            ray.init(address=address, **kwargs)
        else:
            if resources.cpus:
                kwargs["num_cpus"] = resources.cpus
            if resources.object_store_memory_mb:
                kwargs["object_store_memory"] = resources.object_store_memory_mb * 1024 * 1024
            ray.init(**kwargs)
        started = True
    _quiet_data_context()
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _quiet_data_context() -> None:
    """curate draws its own progress bar and funnel; Ray Data's per-dataset chatter goes."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_operator_progress_bars = False

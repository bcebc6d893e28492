"""How planning runs the work that reads input files: a list of ``(function, args)`` calls,
answered in order. Here in this process (tools, tests) or as Ray tasks on the cluster
(:func:`curate.engine.ray_runtime.on_workers`), which is how ``curate run`` plans: the driver
only seeks and reads first lines, so nothing it holds grows with the input (issue 6 §4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: A call of planning work: a module-level function (it travels to a Ray worker) and its arguments.
Call = tuple[Callable[..., Any], tuple]
#: Runs calls and returns their results in the order of the calls; a call's error is raised.
TaskRunner = Callable[[list[Call]], list]


def run_here(calls: list[Call]) -> list:
    """Every call in this process, one after another."""
    return [function(*args) for function, args in calls]

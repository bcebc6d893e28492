"""How one stage becomes Ray Data operators.

* A stage that loads something (overrides ``setup``) runs in an actor pool: each actor runs
  ``setup_on_node`` (once per node, :mod:`curate.engine.node_setup`) and ``setup`` when it
  starts and ``teardown`` when Ray Data releases it. Pool size: the stage's ``resources.actors``
  ``[min, max]``, by default from 1 up to what the cluster's resources fit.
* A stateless stage runs as Ray tasks; each task worker process sets a stage up once (a cache
  keyed by run and stage) and tears down the stages of an earlier run when a new run reaches it.
* A stage's ``expand()`` sub-stages become one operator each, with their own resources (CPU
  decode tasks -> GPU inference actors -> CPU scoring); their drops are the stage's in the
  ledger (the engine gives every sub-stage the stage's ``name``). The YAML ``resources`` of such
  a stage size the part its ``expand`` hands them to (``part.resource_overrides``).
* Operators are named after their stages: Ray Data names a ``map_batches`` operator
  ``MapBatches(<function or class name>)``, so each stage gets a function or class of its own
  named after it, and Ray's progress bars and dashboard show ``MapBatches(download)``.
"""

from __future__ import annotations

import pyarrow as pa

from curate.engine.blocks import apply_stage
from curate.engine.node_setup import setup_on_node_once
from curate.errors import UserError
from curate.stages.base import Resources, Stage

# Per-process cache of set-up stages, so ``setup()`` runs once per worker, not per block.
# Tokens are ``<run>:<stage>``; a worker reused by a later run tears down the earlier run's stages.
_READY: dict[str, Stage] = {}


def ready(stage: Stage, token: str) -> Stage:
    """``stage`` set up in this process (once per ``token``)."""
    if token not in _READY:
        run = token.split(":", 1)[0]
        for stale in [t for t in _READY if t.split(":", 1)[0] != run]:
            _READY.pop(stale).teardown()
        setup_on_node_once(stage, token)
        stage.setup()
        _READY[token] = stage
    return _READY[token]


def runs_in_actors(stage: Stage) -> bool:
    """True for a stage that loads something in ``setup`` (it then keeps it in an actor), unless
    it declares ``runs_as_tasks`` (cheap setup, I/O-bound work: see benchmarks/stage_operators.py)
    and its YAML ``resources`` ask for no pool."""
    wants_tasks = stage.runs_as_tasks and stage.resources.actors is None
    return stage.has_setup and not wants_tasks


class _StageActor:
    """Actor-pool form of a stage; a subclass named after the stage is made per operator."""

    def __init__(self, stage: Stage, token: str):
        setup_on_node_once(stage, token)
        stage.setup()
        self.stage = stage

    def __call__(self, block: pa.Table) -> pa.Table:
        return apply_stage(self.stage, block)

    def __del__(self):
        # Ray Data drops the UDF when it releases the actor (ActorPoolMapOperator.__ray_shutdown__)
        stage = self.__dict__.get("stage")  # absent when setup raised
        if stage is not None:
            stage.teardown()


def _named_task(label: str):
    def run_stage(block: pa.Table, stage: Stage, token: str) -> pa.Table:
        return apply_stage(ready(stage, token), block)

    run_stage.__name__ = run_stage.__qualname__ = label
    return run_stage


def _named_actor(label: str) -> type:
    return type(label, (_StageActor,), {"__module__": __name__, "__qualname__": label})


def _pool(resources: Resources):
    import ray

    low, high = resources.actors or (1, None)  # None: Ray Data grows the pool while resources allow
    return ray.data.ActorPoolStrategy(min_size=low, max_size=high)


def _remote_args(resources: Resources) -> dict:
    args: dict = {"num_cpus": resources.cpus}
    if resources.gpus:
        args["num_gpus"] = resources.gpus
    if resources.memory_mb:
        args["memory"] = resources.memory_mb * 1024 * 1024
    return args


def operators_of(stage: Stage, token: str) -> list[tuple[str, Stage, str]]:
    """(operator label, stage to run, setup token) for each operator of ``stage``."""
    parts = stage.expand()
    if parts == [stage]:
        return [(stage.name, stage, token)]
    for part in parts:
        part.name = stage.name  # the ledger names the stage the user wrote, not its parts
    return [(f"{stage.name}.{part.kind}", part, f"{token}.{index}") for index, part in enumerate(parts)]


def check_room_for_tasks(parts: list[Stage], cluster_cpus: float) -> None:
    """Refuse a plan that would hang: an actor pool that Ray Data cannot fuse with the tasks before
    it (its resources differ from a task's: more CPUs, or a GPU) keeps its minimum actors for the
    whole run, so the cluster must keep at least one CPU beside them for those tasks (a
    ``clip_score`` with ``resources: {cpus: 2}`` on a 2-CPU machine read nothing for 3 minutes)."""
    task = Resources()
    for part in parts:
        resources = part.resources
        if not runs_in_actors(part) or (resources.cpus, resources.gpus) == (task.cpus, task.gpus):
            continue
        held = resources.cpus * (resources.actors or (1, None))[0]
        if held + task.cpus > cluster_cpus:
            raise UserError(f"{part.name}: its actors take {held:g} of the cluster's {cluster_cpus:g} CPUs, leaving none "
                            "for the tasks that feed them (reading, decoding): lower its resources.cpus (or actors) "
                            "or run on more CPUs")


def add_stage(ds, stage: Stage, token: str):
    """``ds`` with ``stage`` applied to every block (dropped rows become ledger rows)."""
    for label, part, part_token in operators_of(stage, token):
        resources = part.resources
        common = {"batch_size": resources.batch_size, "batch_format": "pyarrow", **_remote_args(resources)}
        if runs_in_actors(part):
            ds = ds.map_batches(_named_actor(label), fn_constructor_args=(part, part_token), compute=_pool(resources),
                                **common)
        else:
            ds = ds.map_batches(_named_task(label), zero_copy_batch=True, fn_kwargs={"stage": part, "token": part_token},
                                **common)
    return ds

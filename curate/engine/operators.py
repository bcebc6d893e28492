"""How one stage becomes Ray Data operators: tasks for stateless stages, actor pools for stages
that load something, each named after its stage (Ray's progress bars and dashboard show
``download``, not ``MapBatches(_stage_block)``)."""

from __future__ import annotations

import pyarrow as pa

from curate.engine.blocks import apply_stage
from curate.stages.base import Resources, Stage

# Per-process cache of set-up stages, so ``setup()`` runs once per worker, not per block.
# Tokens are ``<run>:<stage>``; a worker reused by a later run drops the earlier run's stages.
_READY: dict[str, Stage] = {}


def ready(stage: Stage, token: str) -> Stage:
    if token not in _READY:
        run = token.split(":", 1)[0]
        for stale in [t for t in _READY if t.split(":", 1)[0] != run]:
            del _READY[stale]
        stage.setup()
        _READY[token] = stage
    return _READY[token]


def _stage_block(block: pa.Table, stage: Stage, token: str) -> pa.Table:
    return apply_stage(ready(stage, token), block)


class _StageActor:
    """Actor-pool form of a stage (GPU stages): set up once in ``__init__``."""

    def __init__(self, stage: Stage):
        stage.setup()
        self.stage = stage

    def __call__(self, block: pa.Table) -> pa.Table:
        return apply_stage(self.stage, block)


def _memory(resources: Resources) -> dict:
    return {"memory": resources.memory_mb * 1024 * 1024} if resources.memory_mb else {}


def add_stage(ds, stage: Stage, token: str):
    """``ds`` with ``stage`` applied to every block (dropped rows become ledger rows)."""
    import ray

    resources = stage.resources
    if resources.gpus > 0:
        return ds.map_batches(_StageActor, fn_constructor_args=(stage,), batch_size=resources.batch_size,
                              batch_format="pyarrow", num_gpus=resources.gpus, num_cpus=resources.cpus,
                              **_memory(resources), compute=ray.data.ActorPoolStrategy(min_size=1))
    return ds.map_batches(_stage_block, batch_size=resources.batch_size, batch_format="pyarrow",
                          num_cpus=resources.cpus, zero_copy_batch=True, **_memory(resources),
                          fn_kwargs={"stage": stage, "token": token})

"""Run a global stage's two phases in this process, through the engine's own functions:
observe each unit's live rows, partition, reduce, write verdicts per unit, bind."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from curate.engine.blocks import split_alive
from curate.engine.global_phase import bind_reduced, reduce_tables, with_partition
from curate.stages.base import GlobalFilter


def reduce_in_process(stage: GlobalFilter, tables: list[pa.Table], root: Path, partitions: int = 3) -> int:
    """Phase one over ``tables`` (each the rows of one or more units); returns the verdict count."""
    summaries = [with_partition(stage.observe(split_alive(t)[0]), stage.key, partitions) for t in tables]
    rows = reduce_tables(summaries, stage, str(root))
    bind_reduced(stage, str(root))
    return rows

"""Applying one stage to one Arrow block while keeping every row.

Dropped rows travel on as ledger rows (``_drop_stage``/``_drop_reason``/``_drop_detail`` set,
heavy columns released) instead of vanishing, so the sink can check conservation per unit.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, released_heavy
from curate.stages.base import Filter, GlobalFilter, Stage

_NULL_STR = pa.scalar(None, pa.string())


def split_alive(block: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows still alive, rows already dropped by an earlier stage)."""
    alive = pc.is_null(block.column(DROP_STAGE))
    return block.filter(alive), block.filter(pc.invert(alive))


def apply_stage(stage: Stage, block: pa.Table) -> pa.Table:
    """Run ``stage`` on the live rows of ``block``; mark the rows it drops."""
    alive, dead = split_alive(block)
    if alive.num_rows == 0:
        return _without(block, stage.consumes)
    out = stage.process(alive)
    if out.num_rows != alive.num_rows:
        raise RuntimeError(f"stage {stage.name} returned {out.num_rows} rows for {alive.num_rows}")
    if isinstance(stage, Filter):
        out = mark_drops(stage, out)
    if isinstance(stage, GlobalFilter):  # verdict columns the stage does not write served only to decide
        out = out.drop_columns([c for c in stage.verdict_types if c not in stage.writes and c in out.column_names])
    out = _without(out, stage.consumes)
    dead = _without(dead, stage.consumes)
    return pa.concat_tables([out, dead], promote_options="permissive") if dead.num_rows else out


def _without(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """``table`` without the transient ``columns`` a stage consumed (those it has)."""
    present = [c for c in columns if c in table.column_names]
    return table.drop_columns(present) if present else table


def mark_drops(stage: Filter, scored: pa.Table) -> pa.Table:
    decision = stage.decide(scored)
    drop = pc.invert(pc.fill_null(decision.keep, False))
    if not pc.any(drop).as_py():
        return scored
    reason = pc.cast(decision.reason, pa.string())
    if pc.any(pc.and_(drop, pc.is_null(reason))).as_py():
        raise RuntimeError(f"stage {stage.name} dropped a row without a reason")
    detail = pc.cast(decision.detail, pa.string()) if decision.detail is not None else pa.nulls(len(drop), pa.string())
    updates = {
        DROP_STAGE: pc.if_else(drop, pa.scalar(stage.name), _NULL_STR),
        DROP_REASON: pc.if_else(drop, reason, _NULL_STR),
        DROP_DETAIL: pc.if_else(drop, detail, _NULL_STR),
    }
    updates.update(released_heavy(scored, drop, stage.released))
    for name, values in updates.items():
        scored = scored.set_column(scored.schema.get_field_index(name), name, values)
    return scored

"""Applying one stage to one Arrow block while keeping every row.

Dropped rows travel on as ledger rows (``_drop_stage``/``_drop_reason``/``_drop_detail`` set,
heavy columns released) instead of vanishing, so the sink can check conservation per unit.
Before a dropped row's image is released, a few of them per reason keep a thumbnail for the
ledger (:data:`~curate.schema.DROP_THUMBNAIL`), so the report can show what each reason removed.
Each live row carries its share of the time its stage took (``_seconds:<stage>``), and each
batch is counted in the run's live metrics (:mod:`curate.stats.metrics`).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import (
    DROP_DETAIL,
    DROP_REASON,
    DROP_STAGE,
    DROP_THUMBNAIL,
    IMAGE,
    SECONDS_PREFIX,
    THUMBNAILS_PER_REASON,
    UNIT,
    released_heavy,
)
from curate.stages.base import Filter, GlobalFilter, Stage
from curate.stats import metrics

_NULL_STR = pa.scalar(None, pa.string())


def pictured_unit(unit: np.ndarray) -> np.ndarray:
    """Units whose dropped rows may keep thumbnails: the first 64 and every 1024th. With at most
    THUMBNAILS_PER_REASON per (stage, reason) and unit part, a 100,000-unit run keeps a few thousand
    thumbnails (~3 KB each), not one per dropped image."""
    return (unit < 64) | (unit % 1024 == 0)


def split_alive(block: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows still alive, rows already dropped by an earlier stage)."""
    alive = pc.is_null(block.column(DROP_STAGE))
    return block.filter(alive), block.filter(pc.invert(alive))


def apply_stage(stage: Stage, block: pa.Table) -> pa.Table:
    """Run ``stage`` on the live rows of ``block``; mark the rows it drops."""
    alive, dead = split_alive(block)
    if alive.num_rows == 0:
        return _without(block, stage.consumes)
    started = time.perf_counter()
    out = stage.process(alive)
    if out.num_rows != alive.num_rows:
        raise RuntimeError(f"stage {stage.name} returned {out.num_rows} rows for {alive.num_rows}")
    if isinstance(stage, Filter):
        out = mark_drops(stage, out)
    seconds = time.perf_counter() - started
    metrics.stage_batch(stage, alive.num_rows, _reason_counts(out) if isinstance(stage, Filter) else {}, seconds)
    out = _charge(out, stage.name, seconds)
    if isinstance(stage, GlobalFilter):  # verdict columns the stage does not write served only to decide
        out = out.drop_columns([c for c in stage.verdict_types if c not in stage.writes and c in out.column_names])
    out = _without(out, stage.consumes)
    dead = _without(dead, stage.consumes)
    return pa.concat_tables([out, dead], promote_options="permissive") if dead.num_rows else out


def _without(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """``table`` without the transient ``columns`` a stage consumed (those it has)."""
    present = [c for c in columns if c in table.column_names]
    return table.drop_columns(present) if present else table


def _reason_counts(marked: pa.Table) -> dict[str, int]:
    """{reason: rows} of the rows a stage just dropped (``marked`` holds only its live rows)."""
    counts = pc.value_counts(pc.drop_null(marked.column(DROP_REASON)))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def _charge(table: pa.Table, stage: str, seconds: float) -> pa.Table:
    """Add each row's share of ``seconds`` to its ``_seconds:<stage>`` (the parts of an expanded
    stage add up in one column)."""
    name = SECONDS_PREFIX + stage
    share = pa.array(np.full(table.num_rows, seconds / table.num_rows, np.float32))
    index = table.schema.get_field_index(name)
    if index < 0:
        return table.append_column(name, share)
    return table.set_column(index, name, pc.add(pc.fill_null(table.column(name), 0.0), share))


def drop_thumbnails(scored: pa.Table, drop: pa.Array, reason: pa.Array) -> pa.Array | None:
    """Thumbnails of the first :data:`THUMBNAILS_PER_REASON` dropped rows per reason that have an
    image, in pictured units (null elsewhere); None when no such row exists."""
    from curate.imaging.thumbnail import thumbnail_jpeg

    if IMAGE not in scored.column_names:
        return None
    has_image = pc.and_(drop, pc.is_valid(scored.column(IMAGE))).to_numpy(zero_copy_only=False)
    if UNIT in scored.column_names:  # always in a run; a stage applied by hand may have no unit
        has_image = has_image & pictured_unit(scored.column(UNIT).to_numpy())
    candidates = np.flatnonzero(has_image)
    if not len(candidates):
        return None
    reasons = np.asarray(reason.take(pa.array(candidates)).to_pylist(), dtype=object)
    chosen = [i for r in dict.fromkeys(reasons) for i in candidates[reasons == r][:THUMBNAILS_PER_REASON]]
    thumbnails: list[bytes | None] = [None] * scored.num_rows
    images = scored.column(IMAGE)
    for i in chosen:
        thumbnails[i] = thumbnail_jpeg(images[int(i)].as_py())
    return pa.array(thumbnails, pa.binary())


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
    thumbnails = drop_thumbnails(scored, drop, reason)
    if thumbnails is not None:
        earlier = scored.column(DROP_THUMBNAIL) if DROP_THUMBNAIL in scored.column_names else None
        updates[DROP_THUMBNAIL] = thumbnails if earlier is None else pc.coalesce(earlier, thumbnails)
    updates.update(released_heavy(scored, drop, stage.released))
    for name, values in updates.items():
        index = scored.schema.get_field_index(name)
        scored = scored.set_column(index, name, values) if index >= 0 else scored.append_column(name, values)
    return scored

"""Phase one of a global stage, on the cluster (issue 6 §1; DESIGN.md, Stages).

1. **Observe**: every unit's live rows reaching the stage are summarised by ``stage.observe``
   and written by the worker as parts under ``state/<stage>/observed/`` (a
   :class:`~curate.engine.partstore.PartStore`, so a killed run re-observes only the units
   without a marker). Each summary row gets a partition number, a hash of the stage's ``key``.
2. **Reduce**: Ray Data groups the summaries by partition (a shuffle on the cluster); one
   ``stage.reduce`` call sees all rows of its keys and returns verdicts keyed by (unit, row).
   The verdicts are grouped again by unit and written as ``state/<stage>/verdicts/<unit>.parquet``;
   ``state/<stage>/reduced.json`` is written last. A :class:`BroadcastFilter`'s reduce output is
   its state instead, gathered on the driver under its ``max_state_bytes`` cap.
3. **Decide** (phase two, in the stage's tasks): each block loads only its own unit's verdicts
   (:func:`join_verdicts`).

The driver handles one marker per unit and the stream of per-unit results, never the
summaries: nothing it holds grows with the rows of the input.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console

from curate import storage
from curate.engine.partstore import PartStore
from curate.errors import UserError
from curate.schema import ROW, UNIT, input_positions
from curate.stages.base import BroadcastFilter, GlobalFilter

PART = "_part"
#: Summary rows per reduce partition: one ``reduce`` call sorts about this many rows (url_dedup:
#: 1M summary rows are ~32 MB and sort in ~0.2 s), so partitions stay small on any worker.
ROWS_PER_PARTITION = 1_000_000
REDUCED = "reduced.json"
#: Summaries up to this many parquet bytes are reduced without a shuffle (see reduce_summaries):
#: url_dedup's summaries of ~2M rows; the driver's memory stays bounded by it, whatever the input.
LOCAL_REDUCE_BYTES = 32 << 20


def state_root(run_root: str, stage: GlobalFilter) -> str:
    return storage.join(str(run_root), "state", stage.name)


def partition_count(total_rows: int) -> int:
    return max(1, min(4096, math.ceil(total_rows / ROWS_PER_PARTITION)))


def with_partition(summary: pa.Table, key: tuple[str, ...], partitions: int) -> pa.Table:
    """``summary`` with its partition number: a deterministic hash of the key columns."""
    hashes = np.zeros(summary.num_rows, np.uint64)
    for name in key:
        values = summary.column(name).to_numpy(zero_copy_only=False)
        column = pd.util.hash_array(values.astype(object) if values.dtype == object else values, categorize=False)
        hashes = hashes * np.uint64(1_000_003) ^ column
    return summary.append_column(PART, pa.array((hashes % np.uint64(partitions)).astype(np.int32)))


def reduce_summaries(parts: list[str], stage: GlobalFilter, root: str) -> int:
    """Reduce the committed summaries; returns how many verdict rows (verdict stages, written per
    unit) or state rows (broadcast stages) came out. Summaries smaller than
    ``LOCAL_REDUCE_BYTES`` are reduced in this process (the same partitions and calls): a
    Ray Data shuffle costs seconds of fixed overhead, which dominates small runs."""
    if sum(storage.file_size(p) for p in parts) <= LOCAL_REDUCE_BYTES:
        return reduce_tables([_read(p) for p in parts], stage, root)
    return reduce_on_cluster(parts, stage, root)


def reduce_tables(summaries: list[pa.Table], stage: GlobalFilter, root: str) -> int:
    """The reduce of :func:`reduce_on_cluster`, in this process, over summaries already in memory."""
    merged = pa.concat_tables(summaries, promote_options="permissive") if summaries else None
    outputs = []
    if merged is not None and merged.num_rows:
        partitions = merged.column(PART).to_numpy()
        for number in np.unique(partitions):
            outputs.append(_reduce_partition(merged.filter(pa.array(partitions == number)), stage))
    if isinstance(stage, BroadcastFilter):
        return _finish_state(stage, root, outputs)
    verdicts = pa.concat_tables(outputs) if outputs else verdict_schema(stage).empty_table()
    units = verdicts.column(UNIT).to_numpy()
    written = [_write_unit_verdicts(verdicts.filter(pa.array(units == unit)), storage.join(root, "verdicts"))
               for unit in np.unique(units)]
    return sum(int(table.column("rows")[0].as_py()) for table in written)


def _read(uri: str) -> pa.Table:
    fs, path = storage.filesystem_of(uri)
    return pq.read_table(path, filesystem=fs)


def reduce_on_cluster(parts: list[str], stage: GlobalFilter, root: str) -> int:
    """Shuffle the committed summaries by partition with Ray Data and reduce each partition."""
    import ray

    if not parts:
        return reduce_tables([], stage, root)
    fs, _ = storage.filesystem_of(parts[0])
    ds = ray.data.read_parquet([storage.filesystem_of(p)[1] for p in parts], filesystem=fs)
    reduced = ds.groupby(PART).map_groups(_reduce_partition, fn_kwargs={"stage": stage}, batch_format="pyarrow")
    if isinstance(stage, BroadcastFilter):
        return _finish_state(stage, root, reduced.iter_batches(batch_size=None, batch_format="pyarrow"))
    written = reduced.groupby(UNIT).map_groups(_write_unit_verdicts, fn_kwargs={"root": storage.join(root, "verdicts")},
                                               batch_format="pyarrow")
    return sum(int(pc.sum(batch.column("rows")).as_py() or 0)
               for batch in written.iter_batches(batch_size=None, batch_format="pyarrow"))


def _reduce_partition(partition: pa.Table, stage: GlobalFilter) -> pa.Table:
    out = stage.reduce(partition.drop_columns([PART]))
    if isinstance(stage, BroadcastFilter):
        return out
    return out.cast(verdict_schema(stage))


def verdict_schema(stage: GlobalFilter) -> pa.Schema:
    return pa.schema([(UNIT, pa.int32()), (ROW, pa.int32()), *stage.verdict_types.items()])


def _write_unit_verdicts(verdicts: pa.Table, root: str) -> pa.Table:
    """Write one unit's verdicts, one row per (unit, row): a row whose keys landed in several
    partitions (align_frequency: its text and its image) gets a partial verdict from each, merged
    column-wise here (first non-null)."""
    unit = int(verdicts.column(UNIT)[0].as_py())
    uri = storage.join(root, f"{unit:05d}.parquet")
    fs, path = storage.filesystem_of(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    merged = _merge_row_verdicts(verdicts)
    pq.write_table(merged, path, filesystem=fs)
    return pa.table({"unit": [unit], "rows": [merged.num_rows]})


def _merge_row_verdicts(verdicts: pa.Table) -> pa.Table:
    """``verdicts`` (one unit's) sorted by row, rows with one ``_row`` combined: each column takes
    the first non-null value among them (vectorised: a min over candidate positions per group)."""
    verdicts = verdicts.sort_by([(ROW, "ascending")])
    rows = verdicts.column(ROW).to_numpy()
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    if len(starts) == len(rows):
        return verdicts
    positions = np.arange(len(rows))
    columns = []
    for column in verdicts.columns:
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        first_valid = np.minimum.reduceat(np.where(valid, positions, len(rows)), starts)
        columns.append(pc.take(column, pa.array(np.where(first_valid < len(rows), first_valid, starts))))
    return pa.table(columns, schema=verdicts.schema)


def _finish_state(stage: BroadcastFilter, root: str, batches) -> int:
    """Gather a broadcast stage's state, refusing one above its cap before it grows further."""
    tables, size = [], 0
    for batch in batches:
        size += batch.nbytes
        if size > stage.max_state_bytes:
            raise UserError(f"stage {stage.name}: its state passed {stage.max_state_bytes >> 20} MiB, the cap for state "
                            "sent to every worker (is its key really small by nature?)")
        tables.append(batch)
    state = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    uri = storage.join(root, "state.parquet")
    fs, path = storage.filesystem_of(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(state, path, filesystem=fs)
    return state.num_rows


def is_reduced(root: str) -> bool:
    return storage.exists(storage.join(root, REDUCED))


def mark_reduced(root: str, rows: int) -> None:
    storage.write_bytes(storage.join(root, REDUCED), json.dumps({"rows": rows}).encode())


def bind_reduced(stage: GlobalFilter, root: str) -> None:
    """Hand phase two what the reduce left: the verdicts' location, or the broadcast state."""
    if isinstance(stage, BroadcastFilter):
        fs, path = storage.filesystem_of(storage.join(root, "state.parquet"))
        stage.load_state(pq.read_table(path, filesystem=fs))
    else:
        stage.verdict_root = storage.join(root, "verdicts")


def observed_store(root: str) -> PartStore:
    return PartStore(storage.join(root, "observed"))


# -- phase two, on workers -----------------------------------------------------------------------


def join_verdicts(batch: pa.Table, stage: GlobalFilter) -> pa.Table:
    """``batch`` with the stage's verdict columns (null where a row has none), in row order."""
    root = getattr(stage, "verdict_root", None)
    if root is None:
        raise RuntimeError(f"stage {stage.name} ran before its verdicts were reduced")
    schema = verdict_schema(stage)
    units = np.unique(batch.column(UNIT).to_numpy())
    tables = [_unit_verdicts(root, int(unit), schema) for unit in units]
    verdicts = pa.concat_tables(tables) if tables else schema.empty_table()
    index = pc.index_in(pa.array(input_positions(batch)), value_set=pa.array(input_positions(verdicts)))
    for name in stage.verdict_types:
        values = pc.take(verdicts.column(name), index)
        position = batch.schema.get_field_index(name)
        batch = batch.set_column(position, name, values) if position >= 0 else batch.append_column(name, values)
    return batch


def _unit_verdicts(root: str, unit: int, schema: pa.Schema) -> pa.Table:
    uri = storage.join(root, f"{unit:05d}.parquet")
    fs, path = storage.filesystem_of(uri)
    try:
        return pq.read_table(path, filesystem=fs, schema=schema)
    except FileNotFoundError:  # no row of this unit has a verdict
        return schema.empty_table()


def observe_all(run_root: str, stage: GlobalFilter, console: Console, observe) -> None:
    """Phase one of ``stage`` unless an earlier attempt finished it; ``observe(store)`` streams
    the pending units' summaries into ``store`` and commits their markers."""
    root = state_root(run_root, stage)
    if not is_reduced(root):
        store = observed_store(root)
        store.remove_unlisted()
        observe(store)
        with console.status(f"{stage.name}: reducing on the cluster"):
            rows = reduce_summaries(store.committed_parts(), stage, root)
        mark_reduced(root, rows)
    observed_store(root).delete()  # the verdicts are what phase two needs; summaries can be large
    bind_reduced(stage, root)

"""Duplicated ``input.uid_column`` values: the first occurrence (in input order: work unit,
then row) is kept, every later one is a ``read`` ledger row ``duplicate_uid`` whose detail names
the first row (``first at row R of PATH``). A uid is the shard member name, so two kept rows
with one uid would also collide inside a shard.

Design: the check needs the whole input, so it is a :class:`GlobalFilter`,
:class:`DuplicateUidCheck`, that the pipeline runs as an implicit first stage whenever
``input.uid_column`` is set (:func:`curate.io.readers.read_stages`); it catches repeats within a unit too. (A
separate within-unit check in the reader would drop a unit's second occurrence with a detail
naming its first occurrence *in that unit*, itself a repeat of an earlier unit's row; one
mechanism keeps every detail pointing at the true first row.) Its ledger rows carry the stage
name ``read``, so the funnel counts them with the reader's own.

``observe`` summarises a unit as 24 bytes a live row (the uid as two uint64 and the input
position); ``aggregate`` keeps only the uids seen more than once, with their first position, so
the state every worker loads is proportional to the duplicates, not to the input. Until global
stages reduce on the cluster (issue #6), the engine gathers the summaries on the driver: 24
bytes per input row while aggregating (2.4 GB per 100M rows). Hashed uids need no such pass:
they include the file's path and row, so they are unique by construction.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.read_common import READ_STAGE, Unit
from curate.schema import UID, input_positions, uids_to_pairs
from curate.stages.base import Decision, GlobalFilter, StageParams

_STATE_SCHEMA = pa.schema([("hi", pa.uint64()), ("lo", pa.uint64()), ("pos", pa.int64())])


def first_at(path: str, row: int) -> str:
    return f"first at row {row} of {path}"


class DuplicateUidCheck(GlobalFilter):
    """Drop every later occurrence of a uid across work units (``duplicate_uid``, stage ``read``)."""

    kind = "duplicate_uid_check"
    reads = (UID,)

    def __init__(self, units: list[Unit]):
        super().__init__(StageParams(), name=READ_STAGE)
        # Where each file's units start: small by nature (one entry per input file), so a
        # detail can name the first occurrence's file without shipping a per-unit table.
        self._file_starts: list[int] = []
        self._file_paths: list[str] = []
        for unit in units:
            if not self._file_paths or self._file_paths[-1] != unit.path:
                self._file_starts.append(unit.index)
                self._file_paths.append(unit.path)
        self._keys: np.ndarray | None = None
        self._first: np.ndarray | None = None

    def observe(self, batch: pa.Table) -> pa.Table:
        pairs = uids_to_pairs(batch.column(UID))
        return pa.table({"hi": pairs["f0"], "lo": pairs["f1"], "pos": input_positions(batch)})

    def aggregate(self, summaries: Iterable[pa.Table]) -> pa.Table:
        tables = [t for t in summaries if t.num_rows]
        if not tables:
            return _STATE_SCHEMA.empty_table()
        merged = pa.concat_tables(tables)
        hi, lo, pos = (merged.column(c).to_numpy() for c in ("hi", "lo", "pos"))
        order = np.lexsort((pos, lo, hi))
        hi, lo, pos = hi[order], lo[order], pos[order]
        starts = np.r_[True, (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])]
        repeated = np.r_[~starts[1:], False]  # a first occurrence followed by the same uid
        keep = starts & repeated
        return pa.table({"hi": hi[keep], "lo": lo[keep], "pos": pos[keep]}, schema=_STATE_SCHEMA)

    def load_state(self, state: pa.Table) -> None:
        # Sorted (hi, lo) keys and first positions, built once per worker, not per batch.
        self._keys = np.zeros(state.num_rows, np.dtype("u8,u8"))
        self._keys["f0"], self._keys["f1"] = state.column("hi").to_numpy(), state.column("lo").to_numpy()
        self._first = state.column("pos").to_numpy()

    def process(self, batch: pa.Table) -> pa.Table:
        return batch  # no score column: ``decide`` looks each uid up in the state

    def decide(self, scored: pa.Table) -> Decision:
        if self._keys is None:
            raise RuntimeError("the duplicate uid check ran before its state was loaded")
        index = _index_of(uids_to_pairs(scored.column(UID)), self._keys)
        later = index >= 0
        if later.any():  # a known repeated uid: every row but its first occurrence goes
            later &= self._first[np.maximum(index, 0)] != input_positions(scored)
        null = pa.scalar(None, pa.string())
        reason = pc.if_else(pa.array(later), pa.scalar("duplicate_uid"), null)
        detail = None
        if later.any():
            details = np.full(scored.num_rows, None, object)
            for row in np.flatnonzero(later):
                details[row] = self._where(int(self._first[index[row]]))
            detail = pa.array(details, pa.string())
        return Decision(keep=pa.array(~later), reason=reason, detail=detail)

    def _where(self, pos: int) -> str:
        unit, row = pos >> 32, pos & 0xFFFFFFFF
        return first_at(self._file_paths[bisect.bisect_right(self._file_starts, unit) - 1], row)


def _index_of(pairs: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each uid in the sorted ``keys``, or -1."""
    if len(keys) == 0:
        return np.full(len(pairs), -1, np.int64)
    clipped = np.minimum(np.searchsorted(keys, pairs), len(keys) - 1)
    return np.where(keys[clipped] == pairs, clipped, -1).astype(np.int64)

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
position); the engine shuffles the summaries by uid on the cluster, ``reduce`` gives every later
occurrence a verdict naming the first, and each unit loads only its own verdicts: nothing on the
driver grows with the input (issue 6 §1). Hashed uids need no such pass: they include the file's
path and row, so they are unique by construction.
"""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.read_common import READ_STAGE, Unit
from curate.schema import ROW, UID, UNIT, input_positions, uids_to_pairs
from curate.stages.base import Decision, GlobalFilter, StageParams

_FIRST_AT = "_uid_first_at"  # the verdict: where the uid first occurs (dropped after decide)


def first_at(path: str, row: int) -> str:
    return f"first at row {row} of {path}"


class DuplicateUidCheck(GlobalFilter):
    """Drop every later occurrence of a uid across work units (``duplicate_uid``, stage ``read``)."""

    kind = "duplicate_uid_check"
    reads = (UID,)
    key = ("uid_hi", "uid_lo")
    verdict_types = {_FIRST_AT: pa.string()}

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

    def observe(self, batch: pa.Table) -> pa.Table:
        pairs = uids_to_pairs(batch.column(UID)) if batch.num_rows else np.zeros(0, np.dtype("u8,u8"))
        return pa.table({"uid_hi": pairs["f0"], "uid_lo": pairs["f1"], UNIT: batch.column(UNIT), ROW: batch.column(ROW)})

    def reduce(self, partition: pa.Table) -> pa.Table:
        hi, lo = partition.column("uid_hi").to_numpy(), partition.column("uid_lo").to_numpy()
        pos = input_positions(partition)
        order = np.lexsort((pos, lo, hi))
        hi, lo = hi[order], lo[order]
        first = np.r_[True, (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])] if len(order) else np.zeros(0, bool)
        survivor = pos[order][np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
        later = order[~first]
        index = pa.array(later, pa.int64())
        return pa.table({UNIT: pc.take(partition.column(UNIT), index), ROW: pc.take(partition.column(ROW), index),
                         _FIRST_AT: pa.array([self._where(int(p)) for p in survivor[~first]], pa.string())})

    def decide(self, scored: pa.Table) -> Decision:
        first = scored.column(_FIRST_AT).combine_chunks()
        keep = pc.is_null(first)
        return Decision(keep=keep, reason=pc.if_else(keep, pa.scalar(None, pa.string()), "duplicate_uid"), detail=first)

    def _where(self, pos: int) -> str:
        unit, row = pos >> 32, pos & 0xFFFFFFFF
        return first_at(self._file_paths[bisect.bisect_right(self._file_starts, unit) - 1], row)

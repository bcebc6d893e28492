"""Exact URL deduplication: the first two-phase global stage (DESIGN.md, Stages).

Phase one observes every row that reaches the stage and records, per normalised URL, its
first occurrence in input order (work unit, then row). Only URLs seen more than once are
kept in the state table, persisted at ``state/<stage>.parquet`` so a resumed run reuses it.
Phase two drops every later occurrence with reason ``duplicate_url`` and the survivor's uid
as detail (and in the ``dup_of`` column), as img2dataset users and DataComp's pool
construction dedup exact URLs before download.

URLs are compared by a 64-bit hash of the normalised URL (:func:`curate.schema.normalize_urls`);
at a billion distinct URLs the chance of any collision is about 3%.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import UID, URL, input_positions, normalize_urls
from curate.stages.base import Decision, GlobalFilter, StageParams, append_columns
from curate.stages.registry import register

_STATE_SCHEMA = pa.schema([("url_hash", pa.uint64()), ("pos", pa.int64()), ("uid", pa.string())])


def url_hashes(urls: pa.Array) -> np.ndarray:
    """Deterministic 64-bit hashes of normalised URLs (pandas' vectorised SipHash)."""
    normalised = normalize_urls(urls).to_numpy(zero_copy_only=False).astype(object)
    return pd.util.hash_array(normalised, categorize=False)


@register
class UrlDedupFilter(GlobalFilter):
    """Keep the first occurrence of each normalised URL; drop the rest (``duplicate_url``)."""

    kind = "url_dedup"
    Params = StageParams
    reads = (URL, UID)
    writes = ("dup_of",)

    def __init__(self, params: StageParams, name: str | None = None):
        super().__init__(params, name)
        self._state: pa.Table | None = None

    def observe(self, batch: pa.Table) -> pa.Table:
        hashes = url_hashes(batch.column(URL))
        summary = pa.table(
            {"url_hash": hashes, "pos": input_positions(batch), "uid": batch.column(UID), "n": np.ones(len(hashes), np.int64)}
        )
        return _first_per_hash(summary)

    def aggregate(self, summaries: Iterable[pa.Table]) -> pa.Table:
        summaries = list(summaries)  # any iterable, a generator included
        merged = _first_per_hash(pa.concat_tables(summaries) if summaries else None)
        if merged is None:
            return _STATE_SCHEMA.empty_table()
        duplicated = pc.greater(merged.column("n"), 1)
        return merged.filter(duplicated).select(["url_hash", "pos", "uid"]).cast(_STATE_SCHEMA)

    def load_state(self, state: pa.Table) -> None:
        self._state = state

    def process(self, batch: pa.Table) -> pa.Table:
        if self._state is None:
            raise RuntimeError("url_dedup used before its state was loaded")
        hashes = pa.array(url_hashes(batch.column(URL)), pa.uint64())
        index = pc.index_in(hashes, value_set=self._state.column("url_hash"))
        survivor_pos = pc.take(self._state.column("pos"), index)
        survivor_uid = pc.take(self._state.column("uid"), index)
        is_later = pc.fill_null(pc.not_equal(survivor_pos, pa.array(input_positions(batch))), False)
        dup_of = pc.if_else(is_later, survivor_uid, pa.scalar(None, pa.string()))
        return append_columns(batch, {"dup_of": dup_of})

    def decide(self, scored: pa.Table) -> Decision:
        dup_of = scored.column("dup_of").combine_chunks()
        keep = pc.is_null(dup_of)
        reason = pc.if_else(keep, pa.scalar(None, pa.string()), "duplicate_url")
        return Decision(keep=keep, reason=reason, detail=dup_of)


def _first_per_hash(summary: pa.Table | None) -> pa.Table | None:
    """One row per hash: the earliest position, its uid, and the total count."""
    if summary is None or summary.num_rows == 0:
        return summary
    hashes = summary.column("url_hash").to_numpy()
    pos = summary.column("pos").to_numpy()
    order = np.lexsort((pos, hashes))
    hashes, pos = hashes[order], pos[order]
    first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    counts = np.add.reduceat(summary.column("n").to_numpy()[order], first)
    uids = pc.take(summary.column("uid"), pa.array(order[first]))
    return pa.table({"url_hash": hashes[first], "pos": pos[first], "uid": uids, "n": counts})

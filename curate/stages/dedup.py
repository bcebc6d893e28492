"""URL deduplication, a global stage (DESIGN.md, Stages; issue 6 §1).

Observe summarises each unit's live rows as (URL hash, unit, row, uid): 32 bytes a row, written
per unit in the run directory. The engine shuffles the summaries by URL hash on the cluster, so
every occurrence of a URL reaches one ``reduce`` call, which keeps the first occurrence in input
order (work unit, then row) and gives every later one a verdict; each unit then loads only its
own verdicts. Dropped rows get the reason ``duplicate_url``, as img2dataset users and DataComp's
pool construction dedup exact URLs before download.

Two reduce strategies (``mode``):

- ``exact`` (default): the partition is sorted by (hash, position); the detail (and ``dup_of``)
  is the surviving row's uid.
- ``bloom``: the LAION-5B way (Schuhmann et al. 2022 deduplicated URLs with a bloom filter):
  the partition is walked in input order against a bloom filter sized for its rows at
  ``false_positive_rate`` (at most that share of unique URLs is dropped by mistake; 0.001 takes
  ~14.4 bits a URL). A bloom filter remembers no survivor, so the detail says ``bloom filter hit``.

URLs are compared by a 64-bit hash of the normalised URL (:func:`curate.schema.normalize_urls`);
at a billion distinct URLs the chance of any collision is about 3%.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.schema import ROW, UID, UNIT, URL, input_positions, normalize_urls, pairs_to_uids, uids_to_pairs
from curate.stages.base import Decision, GlobalFilter, StageParams
from curate.stages.registry import register

#: Rows checked against the bloom filter at once; repeats inside a chunk are found exactly.
_BLOOM_CHUNK = 65_536


def url_hashes(urls: pa.Array) -> np.ndarray:
    """Deterministic 64-bit hashes of normalised URLs (pandas' vectorised SipHash)."""
    normalised = normalize_urls(urls).to_numpy(zero_copy_only=False).astype(object)
    return pd.util.hash_array(normalised, categorize=False)


class UrlDedupParams(StageParams):
    mode: Literal["exact", "bloom"] = "exact"
    false_positive_rate: float = Field(0.001, gt=0, lt=0.5, description="bloom mode: share of unique URLs that may be "
                                                                        "dropped by mistake")


@register
class UrlDedupFilter(GlobalFilter):
    """Keep the first occurrence of each normalised URL; drop the rest (``duplicate_url``)."""

    kind = "url_dedup"
    Params = UrlDedupParams
    reads = (URL, UID)
    writes = ("dup_of",)
    key = ("url_hash",)
    verdict_types = {"dup_of": pa.string()}

    def observe(self, batch: pa.Table) -> pa.Table:
        pairs = uids_to_pairs(batch.column(UID)) if batch.num_rows else np.zeros(0, np.dtype("u8,u8"))
        return pa.table({"url_hash": pa.array(url_hashes(batch.column(URL)), pa.uint64()),
                         UNIT: batch.column(UNIT), ROW: batch.column(ROW),
                         "uid_hi": pairs["f0"], "uid_lo": pairs["f1"]})

    def reduce(self, partition: pa.Table) -> pa.Table:
        if partition.num_rows == 0:
            return _verdicts(partition, np.zeros(0, np.int64), pa.array([], pa.string()))
        if self.params.mode == "bloom":
            return _bloom_verdicts(partition, self.params.false_positive_rate)
        hashes = partition.column("url_hash").to_numpy()
        pos = input_positions(partition)
        order = np.lexsort((pos, hashes))
        sorted_hashes = hashes[order]
        first = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
        survivor = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
        later, survivor = order[~first], survivor[~first]
        uids = pairs_to_uids(partition.column("uid_hi").to_numpy()[survivor], partition.column("uid_lo").to_numpy()[survivor])
        return _verdicts(partition, later, pa.array(uids, pa.string()))

    def decide(self, scored: pa.Table) -> Decision:
        dup_of = scored.column("dup_of").combine_chunks()
        keep = pc.is_null(dup_of)
        reason = pc.if_else(keep, pa.scalar(None, pa.string()), "duplicate_url")
        return Decision(keep=keep, reason=reason, detail=dup_of)


def _verdicts(partition: pa.Table, rows: np.ndarray, dup_of: pa.Array) -> pa.Table:
    index = pa.array(rows, pa.int64())
    return pa.table({UNIT: pc.take(partition.column(UNIT), index), ROW: pc.take(partition.column(ROW), index),
                     "dup_of": dup_of})


def _bloom_verdicts(partition: pa.Table, rate: float) -> pa.Table:
    """Later occurrences by a bloom filter walked in input order (exact within a chunk)."""
    order = np.argsort(input_positions(partition), kind="stable")
    hashes = partition.column("url_hash").to_numpy()[order]
    n = max(1, len(hashes))
    bits = max(64, math.ceil(-n * math.log(rate) / math.log(2) ** 2))
    probes = max(1, round(bits / n * math.log(2)))
    table = np.zeros((bits + 7) // 8, np.uint8)
    step = (hashes >> np.uint64(32)) | np.uint64(1)  # double hashing (Kirsch & Mitzenmacher 2006)
    base = hashes & np.uint64(0xFFFFFFFF)
    later = []
    for start in range(0, len(hashes), _BLOOM_CHUNK):
        stop = min(start + _BLOOM_CHUNK, len(hashes))
        slots = (base[start:stop, None] + np.arange(probes, dtype=np.uint64) * step[start:stop, None]) % np.uint64(bits)
        seen = np.all(table[slots >> np.uint64(3)] & (np.uint8(1) << (slots & np.uint64(7)).astype(np.uint8)), axis=1)
        _, first = np.unique(hashes[start:stop], return_index=True)
        repeat = np.ones(stop - start, bool)
        repeat[first] = False
        later.append(np.flatnonzero(seen | repeat) + start)
        flat = slots.ravel()
        np.bitwise_or.at(table, flat >> np.uint64(3), np.uint8(1) << (flat & np.uint64(7)).astype(np.uint8))
    rows = order[np.concatenate(later)] if later else np.zeros(0, np.int64)
    detail = f"bloom filter hit (false-positive rate {rate:g})"
    return _verdicts(partition, rows, pa.array([detail] * len(rows), pa.string()))

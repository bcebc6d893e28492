"""``metaclip_balance``: MetaCLIP's balancing (Xu et al. 2023, "Demystifying CLIP Data", §3.3,
Algorithm 1; facebookresearch/MetaCLIP ``metaclip/balancing.py``).

Phase one counts, over the whole pool, the samples matching each entry (``metaclip_entries``,
written by ``metaclip_match``): each unit's live rows are summarised as (entry, count) rows plus
two rows for the unit's samples (entry -1) and matched samples (entry -2); the summaries are
summed per entry and the state (~12 bytes an entry: 6 MB for MetaCLIP's 500k) is given to every
worker. Phase two scores each sample:

* an entry's probability ``p_e = t / max(count_e, t)`` (MetaCLIP: ``entry_count[entry_count < t]
  = t; entry_prob = t / entry_count``): tail entries (count <= t) are kept whole, head entries
  are cut to about ``t`` samples;
* the sample's keep probability ``1 - prod(1 - p_e)`` over its matched entries
  (``metaclip_keep_prob``). MetaCLIP draws once per entry and keeps on the first success, which
  has exactly this probability; we draw once per sample;
* the draw (``metaclip_draw``, uniform in [0, 1)) is a hash of the sample's uid and ``seed``, not
  a random generator's state, so a rerun, a resume or another cluster size keeps the same subset.

The decision keeps ``draw < keep_prob``; otherwise ``metaclip_no_match`` (no entry matched, as
MetaCLIP curates only matched pairs) or ``metaclip_balanced_out`` (detail: the keep
probability). The two columns stay on the kept rows, so a different ``t`` can be applied to a
finished run's shards without matching again.

``t`` (§3.3, Table 1): 20,000 for MetaCLIP's 400M recipe (the default); 170,000 for 2.5B.
Balancing may run on the pool, before ``download`` (fewer fetches), or after it (counts over what
downloaded): the recipe's order chooses.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import Field

from curate import storage
from curate.metaclip.card import build_card, entry_counts
from curate.metaclip.metadata import load_metadata
from curate.schema import UID, uids_to_pairs
from curate.stages.base import BroadcastFilter, Decision, Rule, StageParams, append_columns, first_failure
from curate.stages.metaclip import ENTRIES
from curate.stages.registry import register

KEEP_PROB = "metaclip_keep_prob"
DRAW = "metaclip_draw"
#: State rows that are not entries: the samples observed, and those that matched an entry.
ALL_SAMPLES, MATCHED_SAMPLES = -1, -2


class MetaClipBalanceParams(StageParams):
    t: int = Field(20_000, gt=0, description="entry count threshold t: 20,000 for MetaCLIP's 400M recipe, 170,000 "
                                             "for 2.5B (Xu et al. 2023, §3.3)")
    seed: int = Field(0, ge=0, lt=1 << 63, description="seed of the per-sample draw (a hash of uid and seed)")
    metadata: str | None = Field(None, description="metadata file naming the entries in the data card (default: the "
                                                   "run's metaclip_match metadata)")


def uid_draws(uids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uniform draw in [0, 1) per 32-hex uid: splitmix64's finaliser over the uid's two halves
    and the seed (53 bits kept), vectorised; a function of (uid, seed) only."""
    pairs = uids_to_pairs(uids)
    with np.errstate(over="ignore"):
        mixed = _mix(pairs["f0"] ^ _mix(pairs["f1"] ^ _mix(np.full(len(pairs), seed, np.uint64))))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function (Steele, Lea and Flood 2014), modulo 2^64."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _flat_entries(entries: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, int]:
    """Matched entry ids, the row of each, and the row count (a null list counts as empty)."""
    entries = entries.combine_chunks() if isinstance(entries, pa.ChunkedArray) else entries
    flat = pc.list_flatten(entries).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(entries).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat, parents, len(entries)


@register
class MetaClipBalanceFilter(BroadcastFilter):
    """Keep a sample with probability 1 - prod(1 - t / max(count_e, t)) over its matched entries."""

    kind = "metaclip_balance"
    Params = MetaClipBalanceParams
    reads = (UID, ENTRIES)
    writes = (KEEP_PROB, DRAW)
    key = ("entry",)

    _counts: np.ndarray | None = None

    def observe(self, batch: pa.Table) -> pa.Table:
        flat, parents, rows = _flat_entries(batch.column(ENTRIES))
        found = np.bincount(flat)
        ids = np.flatnonzero(found)
        matched = np.unique(parents).size
        return pa.table({"entry": pa.array(np.r_[ids, ALL_SAMPLES, MATCHED_SAMPLES], pa.int32()),
                         "count": pa.array(np.r_[found[ids], rows, matched], pa.int64())})

    def reduce(self, partition: pa.Table) -> pa.Table:
        summed = partition.group_by("entry").aggregate([("count", "sum")])
        return pa.table({"entry": summed.column("entry"), "count": summed.column("count_sum")})

    def load_state(self, state: pa.Table) -> None:
        self._counts, self.samples, self.matched = entry_counts(state)

    def process(self, batch: pa.Table) -> pa.Table:
        if self._counts is None:
            raise RuntimeError(f"stage {self.name} ran before its entry counts were reduced")
        flat, parents, rows = _flat_entries(batch.column(ENTRIES))
        counts = np.zeros(flat.size, np.int64)
        known = flat < self._counts.size
        counts[known] = self._counts[flat[known]]
        t = self.params.t
        with np.errstate(divide="ignore"):  # p_e = 1 (a tail entry): log(0) = -inf, a certain keep
            log_miss = np.log1p(-(t / np.maximum(counts, t)))
        keep_prob = -np.expm1(np.bincount(parents, weights=log_miss, minlength=rows))
        return append_columns(batch, {KEEP_PROB: pa.array(keep_prob, pa.float64()),
                                      DRAW: pa.array(uid_draws(batch.column(UID), self.params.seed), pa.float64())})

    def decide(self, scored: pa.Table) -> Decision:
        matches = pc.fill_null(pc.list_value_length(scored.column(ENTRIES)), 0)
        keep_prob = scored.column(KEEP_PROB)
        return first_failure([
            Rule(pc.equal(matches, 0), "metaclip_no_match", "entries", matches),
            Rule(pc.greater_equal(scored.column(DRAW), keep_prob), "metaclip_balanced_out", "prob",
                 pc.round(keep_prob, 6)),
        ])

    def data_card(self, run_root: str, shard_parquets: list[str]) -> tuple[str, dict]:
        """``("metaclip.json", card)`` for ``stats/``: see :mod:`curate.metaclip.card`."""
        import pyarrow.parquet as pq

        from curate.engine.global_phase import state_root

        fs, path = storage.filesystem_of(storage.join(state_root(run_root, self), "state.parquet"))
        state = pq.read_table(path, filesystem=fs)
        metadata = self.params.metadata or _match_metadata(run_root, self.name)
        names = load_metadata(metadata) if metadata else None
        return "metaclip.json", build_card(state, self.params.t, self.params.seed, names, metadata, shard_parquets,
                                           ENTRIES)


def _match_metadata(run_root: str, stage_name: str) -> str | None:
    """The ``metadata`` of the last ``metaclip_match`` stage before ``stage_name`` in the run's
    resolved spec (``pipeline.yaml``); None where the entries came with the input."""
    spec = yaml.safe_load(storage.read_bytes(storage.join(run_root, "pipeline.yaml")))
    found = None
    for entry in spec.get("stages", []):
        if (entry.get("name") or entry["stage"]) == stage_name:
            break
        if entry["stage"] == "metaclip_match":
            found = entry["params"]["metadata"]
    return found

"""LLaVA's concept balancing of CC3M (issue 7 §4): a global stage over the whole pool.

LLaVA (Liu et al. 2023, "Visual Instruction Tuning", §4.1 "Stage 1: Pre-training for Feature
Alignment" filters CC3M to 595K pairs for a more balanced concept coverage; the appendix's CC3M
paragraph describes the filter) picks captions by their noun phrases:

1. extract the noun phrases of every caption (LLaVA used spaCy; here the offline chunker of
   :mod:`curate.text.phrases`) and count, for each phrase, the captions of the pool carrying it;
2. skip phrases seen fewer than ``min_count`` times (default 3, LLaVA's: such phrases are mostly
   rare combinations of a concept and attributes that other captions already cover);
3. from the rarest phrase up, add the captions carrying it; a phrase with more captions than
   ``per_phrase`` (default 100, LLaVA's) gets a random subset of that size. Here the captions
   already taken by a rarer phrase count toward a phrase's ``per_phrase``, and the rest are
   drawn by a hash of (``seed``, uid, phrase), so the subset does not depend on how the rows
   were cut into units, on worker counts or on resumes. Equally rare phrases go in the order of
   their 64-bit hash (fixed, arbitrary).

The kept set is the union of the captions taken. Each row carrying a phrase seen at least
``min_count`` times gets a verdict: ``concept_phrase`` (the phrase that took it; for a row not
taken, its rarest phrase, whose ``per_phrase`` was already full), ``concept_count`` (the captions
carrying that phrase) and ``concept_selected``. Rows taken are kept; the others are dropped with
``concept_not_selected`` (detail: that phrase) or, with no phrase seen ``min_count`` times
(a missing caption has none), ``concept_no_phrase``.

Reduce: the selection walks the phrases in order, so it cannot be split by phrase: the stage's
key is empty, every summary row lands in one partition and one ``reduce`` call sees them all
(in the driver below 32 MB of summaries, on one Ray worker through a shuffle above). Its scale
limit is that worker's memory: the summary is 32 bytes per (caption, phrase) pair (phrase hash,
unit, row, uid halves) and the reduce holds about 55 bytes per pair more (measured by
``benchmarks/concept_balance.py`` at CC3M's size: 3M captions, 8.75M pairs, a 267 MB summary,
+462 MB peak RSS during the reduce, 2.7 CPU-seconds), so ~10 GB of worker memory reduce ~30M
captions; past 2^31 pairs (32-bit indexes) the stage refuses with a one-line error.

Phrases with at most ``per_phrase`` captions (the rarest, most of them) take all their captions
whatever the order, so they are resolved at once with numpy; only the more frequent phrases are
walked one by one (4,722 of 161,694 in that benchmark). Phrases are compared by a 64-bit hash (a
collision among ten million distinct phrases has a chance of about 3e-6); phase two recovers
each verdict's phrase text by extracting its row's phrases again.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from curate.errors import UserError
from curate.schema import CAPTION, ROW, UID, UNIT, uids_to_pairs
from curate.stages.base import Decision, GlobalFilter, Rule, StageParams, append_columns, first_failure
from curate.stages.registry import register
from curate.text.phrases import PhraseExtractor
from curate.text.wordnet import DEFAULT_DIR, check_dict_dir

VERDICT_TYPES: dict[str, pa.DataType] = {"concept_hash": pa.uint64(), "concept_count": pa.int64(),
                                          "concept_selected": pa.bool_()}
_MASK64 = (1 << 64) - 1
#: Up to this many frequent phrases, their pairs are grouped by a 16-bit key, which numpy's stable
#: sort orders by radix in linear time; more take a 32-bit key (a merge sort).
RADIX_PHRASES = 1 << 16
#: (caption, phrase) pairs one reduce takes: indexes are 32-bit (64 GiB of summary beyond it).
MAX_PAIRS = (1 << 31) - 1


class ConceptBalanceParams(StageParams):
    min_count: int = Field(3, ge=1, description="LLaVA: phrases carried by fewer captions of the pool are skipped")
    per_phrase: int = Field(100, ge=1, description="LLaVA: at most this many captions taken per phrase")
    seed: int = Field(0, ge=0, le=_MASK64, description="seed of the deterministic draw among a frequent phrase's captions")
    wordnet: str | None = Field(None, validate_default=True,
                                description=f"WordNet dict directory (default: $WORDNET_DIR, else {DEFAULT_DIR})")

    @field_validator("wordnet")
    @classmethod
    def _dict_dir_exists(cls, value: str | None) -> str | None:
        """Refuse a missing WordNet at spec-check time, not on the workers."""
        from os import environ

        try:
            check_dict_dir(value if value is not None else environ.get("WORDNET_DIR") or DEFAULT_DIR)
        except Exception as err:  # noqa: BLE001  (its one line becomes the spec error)
            raise ValueError(str(err)) from None
        return value


@register
class ConceptBalanceFilter(GlobalFilter):
    """Keep, from the rarest noun phrase up, at most ``per_phrase`` captions per phrase seen at
    least ``min_count`` times (LLaVA's CC3M-595K filter)."""

    kind = "concept_balance"
    Params = ConceptBalanceParams
    reads = (UID, CAPTION)
    writes = ("concept_phrase", "concept_count", "concept_selected")
    key: ClassVar[tuple[str, ...]] = ()  # one reduce call sees every summary row (module docstring)
    verdict_types: ClassVar[dict[str, pa.DataType]] = VERDICT_TYPES

    extractor: PhraseExtractor | None = None

    def setup(self) -> None:
        self.extractor = PhraseExtractor.open(self.params.wordnet)

    def teardown(self) -> None:
        self.extractor = None

    def observe(self, batch: pa.Table) -> pa.Table:
        """One row per (caption, phrase): phrase hash, unit, row and uid halves (32 bytes)."""
        per_caption = self._phrases(batch.column(CAPTION))
        index = pa.array(np.repeat(np.arange(batch.num_rows), [len(p) for p in per_caption]), pa.int64())
        pairs = uids_to_pairs(batch.column(UID)) if batch.num_rows else np.zeros(0, np.dtype("u8,u8"))
        pairs = pairs[index.to_numpy()]
        return pa.table({"phrase_hash": pa.array(phrase_hashes([p for ps in per_caption for p in ps]), pa.uint64()),
                         UNIT: pc.take(batch.column(UNIT), index), ROW: pc.take(batch.column(ROW), index),
                         "uid_hi": pairs["f0"], "uid_lo": pairs["f1"]})

    def reduce(self, partition: pa.Table) -> pa.Table:
        return select(partition, self.params.min_count, self.params.per_phrase, self.params.seed)

    def process(self, batch: pa.Table) -> pa.Table:
        """The verdicts joined on, each verdict's phrase hash turned back into its text."""
        joined = super().process(batch)
        hashes = joined.column("concept_hash").combine_chunks()
        rows = pc.indices_nonzero(pc.is_valid(hashes))
        per_row = self._phrases(pc.take(joined.column(CAPTION), rows))
        flat = [p for phrases in per_row for p in phrases]
        owner = np.repeat(np.arange(len(per_row)), [len(phrases) for phrases in per_row])
        match = np.flatnonzero(phrase_hashes(flat) == pc.take(hashes, rows).to_numpy()[owner])
        owners, first = np.unique(owner[match], return_index=True)
        if len(owners) != len(per_row):
            raise RuntimeError(f"stage {self.name}: a verdict's phrase is not among its row's phrases")
        found = [flat[i] for i in match[first].tolist()]
        phrase = _scatter(pa.array(found, pa.string()), rows, joined.num_rows)
        return append_columns(joined.drop_columns(["concept_hash"]), {"concept_phrase": phrase})

    def decide(self, scored: pa.Table) -> Decision:
        selected = scored.column("concept_selected")
        min_count = pa.array([self.params.min_count] * scored.num_rows, pa.int64())
        return first_failure([
            Rule(pc.is_null(selected), "concept_no_phrase", "min_count", min_count),
            Rule(pc.invert(selected), "concept_not_selected", "phrase", scored.column("concept_phrase")),
        ])

    def _phrases(self, captions: pa.Array | pa.ChunkedArray) -> list[list[str]]:
        if self.extractor is None:
            raise RuntimeError(f"stage {self.name}: setup() was not called")
        return [self.extractor.phrases(caption) for caption in captions.to_pylist()]


def phrase_hashes(phrases: list[str]) -> np.ndarray:
    """Deterministic 64-bit hashes of phrases (pandas' vectorised SipHash, fixed key)."""
    return pd.util.hash_array(np.array(phrases, dtype=object), categorize=False) if phrases else np.zeros(0, np.uint64)


def select(summary: pa.Table, min_count: int, per_phrase: int, seed: int) -> pa.Table:
    """LLaVA's selection over every (caption, phrase) pair of the pool -> one verdict row per
    caption carrying a phrase seen at least ``min_count`` times (see the module docstring)."""
    if summary.num_rows > MAX_PAIRS:
        raise UserError(f"concept_balance: {summary.num_rows:,} (caption, phrase) pairs for one reduce, more than "
                        f"its {MAX_PAIRS:,} (the selection runs in one process): balance parts of the pool separately")
    codes, phrases = pd.factorize(summary.column("phrase_hash").to_numpy())  # hashing, not a sort
    counts = np.bincount(codes, minlength=len(phrases))
    # Rank of each frequent phrase: rarest first, equally rare by hash; -1 for the others.
    ranked = np.flatnonzero(counts >= min_count)
    if not len(ranked):
        return pa.table({name: pa.array([], t) for name, t in _verdict_schema().items()})
    ranked = ranked[np.lexsort((phrases[ranked], counts[ranked]))]
    rank_of = np.full(len(phrases), -1, np.int32)
    rank_of[ranked] = np.arange(len(ranked), dtype=np.int32)
    pair_rank = rank_of[codes]
    del codes  # per-pair arrays go as soon as they are used: the reduce holds every pair of the pool
    frequent = np.flatnonzero(pair_rank >= 0)  # the pairs that count
    pair_rank = pair_rank[frequent]
    captions, caption_of = np.unique(_positions(summary, frequent), return_inverse=True)
    caption_of = caption_of.astype(np.int32)

    # A phrase with at most ``per_phrase`` captions takes all of them, whichever phrases came
    # first, so only which phrase takes a caption depends on the order: its rarest such phrase.
    none = len(ranked)
    first_big = none - int((counts[ranked] > per_phrase).sum())  # ``ranked`` ends with them
    taker = np.full(len(captions), none, np.int32)
    small = pair_rank < first_big
    np.minimum.at(taker, caption_of[small], pair_rank[small])
    big = np.flatnonzero(~small)
    del small
    _walk_frequent(taker, caption_of[big], pair_rank[big] - first_big, phrases[ranked[first_big:]],
                   summary.select(["uid_hi", "uid_lo"]).take(pa.array(frequent[big])), per_phrase, seed, first_big)
    taken = taker < none
    rarest = np.full(len(captions), none, np.int32)
    np.minimum.at(rarest, caption_of, pair_rank)
    phrase = ranked[np.where(taken, taker, rarest)]  # the phrase that took the row, else its rarest
    return pa.table({UNIT: pa.array((captions >> 32).astype(np.int32)),
                     ROW: pa.array((captions & 0xFFFFFFFF).astype(np.int32)),
                     "concept_hash": pa.array(phrases[phrase], pa.uint64()),
                     "concept_count": pa.array(counts[phrase], pa.int64()),
                     "concept_selected": pa.array(taken)})


def _positions(summary: pa.Table, pairs: np.ndarray) -> np.ndarray:
    """:func:`curate.schema.input_positions` of the summary rows ``pairs`` only."""
    unit = summary.column(UNIT).to_numpy()[pairs].astype(np.int64)
    return (unit << 32) | summary.column(ROW).to_numpy()[pairs]


def _walk_frequent(taker: np.ndarray, caption_of: np.ndarray, rank: np.ndarray, hashes: np.ndarray, uids: pa.Table,
                   per_phrase: int, seed: int, first_rank: int) -> None:
    """The phrases with more than ``per_phrase`` captions, rarest first (``rank`` 0, 1, ... of
    each pair; ``hashes`` by rank): each tops the captions already taken up to ``per_phrase``
    with the lowest draws among its other captions. Marks ``taker`` in place."""
    if not len(hashes):
        return
    unset = first_rank + len(hashes)  # ``taker``'s value for a caption no phrase took
    # Pairs grouped by phrase with one stable sort (see RADIX_PHRASES).
    order = np.argsort(rank.astype(np.uint16 if len(hashes) <= RADIX_PHRASES else np.int32), kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(rank, minlength=len(hashes)))]
    uid_hi, uid_lo = uids.column("uid_hi").to_numpy(), uids.column("uid_lo").to_numpy()
    for phrase, (start, stop) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        pairs = order[start:stop]
        fresh = pairs[taker[caption_of[pairs]] == unset]
        room = per_phrase - (len(pairs) - len(fresh))
        if room <= 0 or not len(fresh):
            continue
        if len(fresh) > room:
            fresh = _lowest_draws(fresh, uid_hi, uid_lo, hashes[phrase], seed, room)
        taker[caption_of[fresh]] = first_rank + phrase


def _lowest_draws(pairs: np.ndarray, uid_hi: np.ndarray, uid_lo: np.ndarray, phrase_hash: np.uint64, seed: int,
                  room: int) -> np.ndarray:
    """The ``room`` pairs with the lowest draws (equal draws: the lower uid first)."""
    draws = _draws(uid_hi[pairs], uid_lo[pairs], phrase_hash, seed)
    within = draws <= np.partition(draws, room - 1)[room - 1]
    chosen = pairs[within]
    if len(chosen) > room:  # equal draws at the bar (a chance of about n/2^64)
        chosen = chosen[np.lexsort((uid_lo[chosen], uid_hi[chosen], draws[within]))[:room]]
    return chosen


def _verdict_schema() -> dict[str, pa.DataType]:
    return {UNIT: pa.int32(), ROW: pa.int32(), **VERDICT_TYPES}


def _draws(uid_hi: np.ndarray, uid_lo: np.ndarray, phrase: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit draw per (caption, phrase), from the uid, the phrase and ``seed`` (splitmix64's
    finaliser, Steele et al. 2014): independent of where the row sits in the input."""
    value = _mix(uid_hi ^ _mix(uid_lo ^ np.uint64(seed & _MASK64)))
    return _mix(value ^ phrase)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _scatter(values: pa.Array, rows: pa.Array, length: int) -> pa.Array:
    """``values`` placed at ``rows`` of an array of ``length``, null elsewhere."""
    slot = np.full(length, -1, np.int64)
    slot[rows.to_numpy()] = np.arange(len(rows))
    return pc.take(values, pa.array(slot, mask=slot < 0))

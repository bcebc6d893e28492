"""Rare words: drop captions holding a word the whole input rarely uses (a global vocabulary pass).

* ALIGN (Jia et al. 2021, §3): "We also discard alt-texts that contain any rare token (outside of
  100 million most frequent unigrams and bigrams from the raw dataset)": ``top_n``. ALIGN counted
  unigrams and bigrams over 1.8B pairs; this stage counts unigrams, so scale ``top_n`` to the
  pool (ALIGN's 100M would keep every word of any pool smaller than theirs).
* Conceptual 12M (Changpinyo et al. 2021, §2): a word must occur at least 20 times in the pool:
  ``min_count: 20``. CC3M's corpus mode uses the same count filter.

Words: the caption lower-cased (Unicode), split at every character that is not a letter, a mark,
a digit or an apostrophe (``'`` or ``’``), apostrophes trimmed from both ends of each piece,
empty pieces dropped: "Dog's LIFE, 1920x1080!" -> ``dog's``, ``life``, ``1920x1080``. A missing
caption has no words (kept).

Phase one observes each unit's (word, count); the engine partitions by word, so each ``reduce``
sums its words' counts over the whole input and keeps only what phase two needs: words with a
count >= ``min_count``, and at most the partition's ``top_n`` most frequent. The concatenated
partitions are the broadcast state (under ``max_state_bytes``, else a one-line error), cut to the
global ``top_n`` in :meth:`RareWordsFilter.load_state`; ties at the cut go to the smaller word
(Unicode code-point order), so the vocabulary never depends on partitioning or worker count.

Columns: ``rare_word`` (the caption's first word outside the vocabulary, null if none) and
``rare_word_count`` (how many of its words are outside it). The exact count of a rare word over
the input is not kept: it would need every word of the pool in the state, which grows with the
input. Ledger: reason ``rare_word``, detail ``word=<w> rare_words=<n>``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.schema import CAPTION
from curate.stages.base import BroadcastFilter, Decision, StageParams, append_columns
from curate.stages.registry import register

_NOT_WORD = r"[^\pL\pM\pN'’]+"
_APOSTROPHES = "'’"
#: Ties at the ``top_n`` cut go to the smaller word, so the vocabulary is the same on any cluster.
_FREQUENCY_ORDER = [("count", "descending"), ("word", "ascending")]
STATE_SCHEMA = pa.schema([("word", pa.string()), ("count", pa.int64())])


def word_tokens(captions: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Every word of ``captions`` in order (see the module docstring) and the index of its caption."""
    if isinstance(captions, pa.ChunkedArray):
        captions = captions.combine_chunks()
    pieces = pc.split_pattern_regex(pc.utf8_lower(pc.fill_null(pc.cast(captions, pa.string()), "")), _NOT_WORD)
    words = pc.utf8_trim(pc.list_flatten(pieces), _APOSTROPHES)
    nonempty = pc.not_equal(words, "")
    return words.filter(nonempty), pc.list_parent_indices(pieces).filter(nonempty).to_numpy()


class RareWordsParams(StageParams):
    min_count: int | None = Field(None, ge=1, description="a word occurring fewer times in the input is rare "
                                                          "(CC12M §2: 20)")
    top_n: int | None = Field(None, ge=1, description="a word outside the input's top_n most frequent is rare "
                                                      "(ALIGN §3: 100M unigrams and bigrams)")

    @model_validator(mode="after")
    def _some_rule(self) -> RareWordsParams:
        if self.min_count is None and self.top_n is None:
            raise ValueError("rare_words needs min_count (CC12M: 20), top_n (ALIGN), or both")
        return self


@register
class RareWordsFilter(BroadcastFilter):
    """Drop captions with a word outside the input's vocabulary (reason ``rare_word``): words with
    at least ``min_count`` occurrences and/or among the ``top_n`` most frequent."""

    kind = "rare_words"
    Params = RareWordsParams
    reads = (CAPTION,)
    writes = ("rare_word", "rare_word_count")
    key: ClassVar[tuple[str, ...]] = ("word",)
    vocabulary: pa.Array | None = None  # set by load_state, before the stage is shipped to workers

    def observe(self, batch: pa.Table) -> pa.Table:
        words, _ = word_tokens(batch.column(CAPTION))
        counts = pc.value_counts(words)
        return pa.table([counts.field("values"), pc.cast(counts.field("counts"), pa.int64())], schema=STATE_SCHEMA)

    def reduce(self, partition: pa.Table) -> pa.Table:
        """Whole-input counts of this partition's words, cut to what phase two needs."""
        summed = partition.group_by("word").aggregate([("count", "sum")]).rename_columns(["word", "count"])
        if self.params.min_count is not None:
            summed = summed.filter(pc.greater_equal(summed.column("count"), self.params.min_count))
        if self.params.top_n is not None:
            summed = summed.sort_by(_FREQUENCY_ORDER).slice(0, self.params.top_n)
        return summed.cast(STATE_SCHEMA)

    def load_state(self, state: pa.Table) -> None:
        """The vocabulary: every partition's words, cut to the global ``top_n``."""
        state = state.cast(STATE_SCHEMA) if state.num_columns else STATE_SCHEMA.empty_table()
        if self.params.top_n is not None:
            state = state.sort_by(_FREQUENCY_ORDER).slice(0, self.params.top_n)
        self.vocabulary = state.column("word").combine_chunks()

    def process(self, batch: pa.Table) -> pa.Table:
        if self.vocabulary is None:
            raise RuntimeError(f"stage {self.name} ran before its vocabulary was reduced")
        words, rows = word_tokens(batch.column(CAPTION))
        rare = pc.invert(pc.is_in(words, value_set=self.vocabulary)).to_numpy(zero_copy_only=False)
        rare_rows = rows[rare]
        first = np.full(batch.num_rows, -1, np.int64)
        caption_rows, at = np.unique(rare_rows, return_index=True)
        first[caption_rows] = np.flatnonzero(rare)[at]
        return append_columns(batch, {
            "rare_word": pc.take(words, pa.array(first, mask=first < 0)),
            "rare_word_count": pa.array(np.bincount(rare_rows, minlength=batch.num_rows), pa.int32()),
        })

    def decide(self, scored: pa.Table) -> Decision:
        word = scored.column("rare_word").combine_chunks()
        keep = pc.is_null(word)
        detail = pc.binary_join_element_wise("word=", word, " rare_words=",
                                             pc.cast(scored.column("rare_word_count"), pa.string()), "")
        return Decision(keep=keep, reason=pc.if_else(keep, pa.scalar(None, pa.string()), "rare_word"),
                        detail=detail.combine_chunks() if isinstance(detail, pa.ChunkedArray) else detail)

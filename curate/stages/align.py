"""ALIGN's alt-text rules (Jia et al. 2021, "Scaling Up Visual and Vision-Language Representation
Learning With Noisy Text Supervision", §3 "A Large-Scale Noisy Image-Text Dataset").

§3, text-based filtering: "We exclude alt-texts that are shared by more than 10 images [...]
We also discard alt-texts that contain any rare token [...], and those that are either too short
(<3 unigrams) or too long (>20 unigrams)." Image-based filtering: "Images with more than 1000
associated alt-texts are discarded." The rare-token rule is :mod:`curate.stages.rare_words`.

* ``align_caption`` (a row-local filter): keep 3–20 unigrams. A unigram is a whitespace-separated
  token, as ``caption.split()`` counts them (score column ``align_unigrams``).
* ``align_frequency`` (a global filter): over the whole input, the number of distinct images per
  normalised alt-text and of distinct normalised alt-texts per image.

Normalised alt-text: lower-cased (Unicode), runs of Unicode whitespace collapsed to one space,
trimmed; a missing caption is "". Image: the content hash of the fetched bytes (``orig_hash``,
written by ``download`` and tar inputs) where present and non-null, else the normalised URL
(:func:`curate.schema.normalize_urls`): before a download one image is one URL, after it one
content. Both are compared by 64-bit hashes (a collision among a billion values: ~3%).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.schema import CAPTION, ROW, UNIT, URL
from curate.stages.base import Decision, Filter, GlobalFilter, Rule, StageParams, append_columns, first_failure
from curate.stages.dedup import url_hashes
from curate.stages.registry import register
from curate.stages.text import _word_counts

ORIG_HASH = "orig_hash"
TEXT, IMAGE = 0, 1  # the ``kind`` of a summary row: counts images of a text, or texts of an image
#: 25 bytes a summary row, two rows a sample: the (kind, value) key, the kind, the value on the
#: other side (the image of a text row, the text of an image row), and where the sample is.
SUMMARY_SCHEMA = pa.schema([("key", pa.uint64()), ("kind", pa.int8()), ("other", pa.uint64()), (UNIT, pa.int32()),
                            (ROW, pa.int32())])


class AlignCaptionParams(StageParams):
    min_unigrams: int = Field(3, ge=0, description="ALIGN §3: drop alt-texts shorter than 3 unigrams")
    max_unigrams: int = Field(20, ge=0, description="ALIGN §3: drop alt-texts longer than 20 unigrams")

    @model_validator(mode="after")
    def _ordered(self) -> AlignCaptionParams:
        if self.min_unigrams > self.max_unigrams:
            raise ValueError(f"min_unigrams {self.min_unigrams} is above max_unigrams {self.max_unigrams}")
        return self


@register
class AlignCaptionFilter(Filter):
    """Keep alt-texts of ``min_unigrams``..``max_unigrams`` whitespace tokens (ALIGN §3: 3–20);
    drop the rest with ``caption_too_few_unigrams`` / ``caption_too_many_unigrams``."""

    kind = "align_caption"
    Params = AlignCaptionParams
    reads = (CAPTION,)
    writes = ("align_unigrams",)

    def process(self, batch: pa.Table) -> pa.Table:
        return append_columns(batch, {"align_unigrams": _word_counts(pc.fill_null(batch.column(CAPTION), ""))})

    def decide(self, scored: pa.Table) -> Decision:
        unigrams = scored.column("align_unigrams")
        return first_failure([
            Rule(pc.less(unigrams, self.params.min_unigrams), "caption_too_few_unigrams", "unigrams", unigrams),
            Rule(pc.greater(unigrams, self.params.max_unigrams), "caption_too_many_unigrams", "unigrams", unigrams),
        ])


def normalize_texts(captions: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lower-cased, Unicode whitespace runs collapsed to one space, trimmed; null as ""."""
    trimmed = pc.utf8_trim_whitespace(pc.utf8_lower(pc.fill_null(pc.cast(captions, pa.string()), "")))
    return pc.binary_join(pc.utf8_split_whitespace(trimmed), " ")


def text_hashes(captions: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of normalised alt-texts (pandas' vectorised SipHash)."""
    return pd.util.hash_array(normalize_texts(captions).to_numpy(zero_copy_only=False).astype(object), categorize=False)


def image_hashes(batch: pa.Table) -> np.ndarray:
    """64-bit image identities: ``orig_hash`` where the row has one, else the normalised URL's hash."""
    values = url_hashes(batch.column(URL))
    if ORIG_HASH in batch.column_names:
        content = batch.column(ORIG_HASH)
        present = pc.is_valid(content).to_numpy(zero_copy_only=False)
        values[present] = pc.fill_null(content, 0).to_numpy().view(np.uint64)[present]
    return values


def combined_keys(kind: int, values: np.ndarray) -> np.ndarray:
    """The 64-bit partition key of (kind, value): splitmix64's finaliser over value + kind x the
    golden ratio, so a text and an image with one 64-bit value get unrelated keys."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64) + np.uint64(kind) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class AlignFrequencyParams(StageParams):
    max_images_per_text: int = Field(10, ge=1, description="ALIGN §3: drop alt-texts shared by more than 10 images")
    max_texts_per_image: int = Field(1000, ge=1, description="ALIGN §3: drop images with more than 1000 alt-texts")


@register
class AlignFrequencyFilter(GlobalFilter):
    """Drop alt-texts shared by more than ``max_images_per_text`` distinct images (ALIGN §3: 10;
    ``alt_text_shared_by_many_images``, detail ``images=N``) and images carrying more than
    ``max_texts_per_image`` distinct alt-texts (ALIGN §3: 1000; ``image_has_many_alt_texts``,
    detail ``alt_texts=N``). Columns ``align_text_images`` / ``align_image_texts``: those counts,
    null where the row is within the limit.

    Observe: two summary rows per live row (its text's key with its image as ``other``, its
    image's key with its text as ``other``); every row of one key reaches one ``reduce`` call,
    which counts distinct ``other`` values. A row's two verdicts come from two partitions; the
    engine merges them per (unit, row)."""

    kind = "align_frequency"
    Params = AlignFrequencyParams
    reads = (URL, CAPTION)  # and orig_hash where an earlier stage wrote it
    writes = ("align_text_images", "align_image_texts")
    key: ClassVar[tuple[str, ...]] = ("key",)
    verdict_types: ClassVar[dict[str, pa.DataType]] = {"align_text_images": pa.int32(), "align_image_texts": pa.int32()}

    def observe(self, batch: pa.Table) -> pa.Table:
        texts, images = text_hashes(batch.column(CAPTION)), image_hashes(batch)
        n = batch.num_rows
        units, rows = batch.column(UNIT), batch.column(ROW)
        return pa.concat_tables([
            pa.table([combined_keys(TEXT, texts), np.full(n, TEXT, np.int8), images, units, rows], schema=SUMMARY_SCHEMA),
            pa.table([combined_keys(IMAGE, images), np.full(n, IMAGE, np.int8), texts, units, rows], schema=SUMMARY_SCHEMA),
        ])

    def reduce(self, partition: pa.Table) -> pa.Table:
        """A verdict for every summary row whose key has more distinct ``other`` values than its limit."""
        kinds = partition.column("kind").to_numpy()
        keys = partition.column("key").to_numpy()
        others = partition.column("other").to_numpy()
        order = np.lexsort((others, keys, kinds))
        kinds, keys, others = kinds[order], keys[order], others[order]
        new_key = np.ones(len(order), bool)  # the first summary row of each (kind, key)
        new_key[1:] = (kinds[1:] != kinds[:-1]) | (keys[1:] != keys[:-1])
        new_other = new_key.copy()  # ... and of each distinct other within it
        new_other[1:] |= others[1:] != others[:-1]
        distinct = np.add.reduceat(new_other.astype(np.int64), np.flatnonzero(new_key))
        counts = distinct[np.cumsum(new_key) - 1]
        limits = np.where(kinds == TEXT, self.params.max_images_per_text, self.params.max_texts_per_image)
        over = counts > limits
        index = pa.array(order[over], pa.int64())
        counts, is_text = counts[over].astype(np.int32), kinds[over] == TEXT
        return pa.table({UNIT: pc.take(partition.column(UNIT), index), ROW: pc.take(partition.column(ROW), index),
                         "align_text_images": pa.array(counts, pa.int32(), mask=~is_text),
                         "align_image_texts": pa.array(counts, pa.int32(), mask=is_text)})

    def decide(self, scored: pa.Table) -> Decision:
        images, texts = scored.column("align_text_images"), scored.column("align_image_texts")
        return first_failure([
            Rule(pc.greater(images, self.params.max_images_per_text), "alt_text_shared_by_many_images", "images", images),
            Rule(pc.greater(texts, self.params.max_texts_per_image), "image_has_many_alt_texts", "alt_texts", texts),
        ])

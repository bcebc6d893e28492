"""``metaclip_match``: MetaCLIP's sub-string matching of captions against metadata entries (Xu et
al. 2023, "Demystifying CLIP Data", §3.2; facebookresearch/MetaCLIP ``substr_matching.py``).

An entry matches a caption iff ``f" {entry} "`` is a sub-string of the caption spaced as MetaCLIP
spaces it (:mod:`curate.metaclip.matcher`): case-sensitive, every overlapping and nested match
counts. A scoring stage: it writes the matched entry ids (``metaclip_entries``, ``list<int32>``,
sorted, each once; an id is the entry's position in the metadata file) and their number
(``metaclip_match_count``), and drops nothing. A sample without a match is dropped by
``metaclip_balance`` (``metaclip_no_match``), as MetaCLIP's curation keeps only matched pairs.

The metadata (``metadata: PATH``) is ours (``curate metaclip build-metadata``) or MetaCLIP's
released ``metadata.json`` as is. It is read and checked on the driver before the run starts
(a missing or malformed file is one line) and travels with the stage, so workers need no access
to the file; each worker builds its Aho–Corasick automaton once, in ``setup``. With ``build:``
(the options of ``build-metadata``) a missing file is first built there, on the driver, so a
recipe makes its own metadata.
"""

from __future__ import annotations

import hashlib
import os

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from curate import storage
from curate.metaclip.matcher import EntryMatcher
from curate.metaclip.metadata import build_metadata, load_metadata
from curate.schema import CAPTION
from curate.stages.base import Resources, RunContext, Stage, StageParams, append_columns
from curate.stages.registry import register

ENTRIES = "metaclip_entries"
MATCH_COUNT = "metaclip_match_count"


class MetadataBuild(StageParams):
    """How to build a missing metadata file: the options of ``curate metaclip build-metadata``."""

    wordnet: str | None = Field(None, description="WordNet dict directory (default: $WORDNET_DIR or /usr/share/wordnet)")
    use_wordnet: bool = Field(True, description="include WordNet's lemma names")
    corpus: list[str] = Field([], description="text (one document a line, .gz ok) or parquet files for unigrams and bigrams")
    column: str = Field("caption", description="the corpus column of a parquet corpus")
    titles: str | None = Field(None, description="a file of titles, one per line")
    min_count: int = Field(100, ge=1, description="MetaCLIP: unigrams seen at least 100 times")
    min_pmi: float = Field(30.0, description="MetaCLIP: bigrams with log2 PMI at least 30 (needs ~1e9 tokens)")


class MetaClipMatchParams(StageParams):
    metadata: str = Field(..., description="metadata file: ours (`curate metaclip build-metadata`, one entry a line, "
                                           "first tab-separated column) or MetaCLIP's metadata.json (a JSON list)")
    build: MetadataBuild | None = Field(None, description="build the metadata file there before the run if it is missing")

    @field_validator("metadata")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if storage.is_local(value):
            value = os.path.abspath(os.path.expanduser(value))  # workers may run elsewhere than the driver's cwd
        return value

    @model_validator(mode="after")
    def _metadata_exists(self) -> MetaClipMatchParams:
        if self.build is None and not storage.exists(self.metadata):
            raise ValueError(f"no such metadata file {self.metadata} (build one with `curate metaclip build-metadata`, "
                             "give MetaCLIP's metadata.json, or add `build:` to make it before the run)")
        if self.build is not None and self.build.use_wordnet and not storage.exists(self.metadata):
            from curate.text.wordnet import WordNet

            WordNet.open(self.build.wordnet)  # a missing WordNet is one line now, not after Ray started
        return self

@register
class MetaClipMatchStage(Stage):
    """Match captions against the metadata; write ``metaclip_entries`` and ``metaclip_match_count``."""

    kind = "metaclip_match"
    Params = MetaClipMatchParams
    reads = (CAPTION,)
    writes = (ENTRIES, MATCH_COUNT)
    # Each worker holds the automaton: 500k entries of 8.5 characters on average took 192 MB
    # (RSS, pyahocorasick's 2.8M nodes) and 6 s to build on this 2-core machine; MetaCLIP's
    # released entries are longer (titles), hence the margin.
    default_resources = Resources(memory_mb=512)

    entries: list[str] | None = None

    def bind(self, context: RunContext) -> None:
        build = self.params.build
        if build is not None and not storage.exists(self.params.metadata):  # on the driver, before any worker
            from curate.text.wordnet import WordNet

            lemmas = WordNet.open(build.wordnet).lemma_names() if build.use_wordnet else None
            build_metadata(self.params.metadata, lemmas, build.corpus, build.column, build.titles, build.min_count,
                           build.min_pmi)
        self.entries = load_metadata(self.params.metadata)

    def content_record(self) -> dict[str, str]:
        digest = hashlib.sha256("\n".join(self.entries or ()).encode()).hexdigest()
        return {"metadata": self.params.metadata, "entries": len(self.entries or ()), "sha256": digest}

    def setup(self) -> None:
        if self.entries is None:  # used outside a run (a notebook, a benchmark)
            self.entries = load_metadata(self.params.metadata)
        self._matcher = EntryMatcher(self.entries)

    def process(self, batch: pa.Table) -> pa.Table:
        matched = self._matcher.match(batch.column(CAPTION))
        return append_columns(batch, {ENTRIES: matched, MATCH_COUNT: pc.cast(pc.list_value_length(matched), pa.int32())})

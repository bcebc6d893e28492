"""Caption rules: cheap alt-text heuristics that run before any download.

Scores are columns (``caption_chars``, ``caption_words``) so thresholds can be retuned
without rescoring; the decision is a vectorised comparison (pyarrow.compute, no Python loop).

* LAION-5B (Schuhmann et al. 2022, §3.2): drop alt-text shorter than 5 characters.
* DataComp basic filtering (Gadre et al. 2023, §3.3 / App. "Basic filtering"): keep captions
  with more than 2 whitespace-separated words and more than 5 characters.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.schema import CAPTION
from curate.stages.base import Decision, Filter, Rule, StageParams, Threshold, append_columns, first_failure
from curate.stages.registry import register


class CaptionRulesParams(StageParams):
    min_chars: int = Field(0, ge=0, description="keep captions with at least this many characters")
    min_words: int = Field(0, ge=0, description="keep captions with at least this many whitespace-separated words")


@register
class CaptionRulesFilter(Filter):
    """Drop rows whose caption is too short in characters (``caption_too_short``) or words
    (``caption_too_few_words``); a missing caption counts as empty."""

    kind = "caption_rules"
    Params = CaptionRulesParams
    reads = (CAPTION,)
    writes = ("caption_chars", "caption_words")

    def process(self, batch: pa.Table) -> pa.Table:
        captions = pc.fill_null(batch.column(CAPTION), "")
        scores = {"caption_chars": pc.cast(pc.utf8_length(captions), pa.int32())}
        if "caption_words" in self.writes:
            scores["caption_words"] = _word_counts(captions)
        return append_columns(batch, scores)

    def thresholds(self) -> list[Threshold]:
        cuts = [Threshold("caption_chars", self.params.min_chars, "above")]
        if "caption_words" in self.writes:
            cuts.append(Threshold("caption_words", self.params.min_words, "above"))
        return [cut for cut in cuts if cut.value > 0]

    def decide(self, scored: pa.Table) -> Decision:
        chars = scored.column("caption_chars")
        rules = [Rule(pc.less(chars, self.params.min_chars), "caption_too_short", "chars", chars)]
        if "caption_words" in self.writes:
            words = scored.column("caption_words")
            rules.append(Rule(pc.less(words, self.params.min_words), "caption_too_few_words", "words", words))
        return first_failure(rules)


def _word_counts(captions: pa.ChunkedArray) -> pa.Array:
    """Whitespace-separated words, as ``len(caption.split())``. Arrow's split yields empty
    strings for leading/trailing whitespace and [""] for "": trim first, count "" as 0."""
    trimmed = pc.utf8_trim_whitespace(captions)
    words = pc.if_else(pc.equal(trimmed, ""), 0, pc.list_value_length(pc.utf8_split_whitespace(trimmed)))
    return pc.cast(words, pa.int32())


class LaionCaptionParams(StageParams):
    min_chars: int = Field(5, ge=0, description="LAION-5B: at least 5 characters")


@register
class LaionCaptionFilter(CaptionRulesFilter):
    """LAION-5B's alt-text rule: at least 5 characters (Schuhmann et al. 2022, §3.2); only the
    character count is scored."""

    kind = "laion_caption"
    Params = LaionCaptionParams
    writes = ("caption_chars",)


class DataCompCaptionParams(CaptionRulesParams):
    min_chars: int = Field(6, ge=0, description="DataComp: more than 5 characters")
    min_words: int = Field(3, ge=0, description="DataComp: more than 2 words")


@register
class DataCompCaptionFilter(CaptionRulesFilter):
    """DataComp basic filtering's caption rule: > 2 words and > 5 characters (Gadre et al. 2023)."""

    kind = "datacomp_caption"
    Params = DataCompCaptionParams


"""``cc12m_caption``: Conceptual 12M's relaxed alt-text filters (Changpinyo et al. 2021,
"Conceptual 12M", §2), offline (closed-class word lists and WordNet nouns, as in
:mod:`curate.stages.cc3m`, instead of a part-of-speech tagger).

Per caption, in order (each rule its own ledger reason; scores are columns, so a finished run
re-thresholds without rescoring). §2 relaxes CC3M's text filters:

1. "we allow text between 3 and 256 words in the alt-text" (``too_few_words`` /
   ``too_many_words``; column ``caption_word_count``: words as :func:`curate.text.tokens.words`
   finds them, punctuation not counted). Named apart from ``caption_rules``'
   ``caption_too_few_words``, which counts whitespace-separated words.
2. "We still discard candidates with no noun or no determiner, but permit ones without
   prepositions" (``missing_determiner`` / ``missing_noun``; columns ``caption_has_*``).
3. "We set the maximum fraction of word repetition allowed to 0.2" (``repetitive_caption``;
   column ``caption_repetition`` = (words - distinct words) / words over the words outside the
   closed classes (:func:`curate.text.parts.content_words`: "a", "the", "of" repeat in any long
   sentence), dropped above ``max_repetition``).

CC3M's capitalisation rules are dropped by §2, and so is hypernymisation: names are kept, or
replaced by ``<PERSON>`` where ``names`` gives a list (one name per line; whole words,
case-sensitive, longest first; §2 replaced person names with this token). The rules score the
caption as read; ``caption`` becomes the rewritten text and ``caption_original`` holds the
caption as read where it changed, else null.

§2's rare-word rule ("the threshold for counting a word type as rare is increased from 5 to
20") counts words over the whole pool: that is the global ``rare_words`` stage with
``min_count: 20``, which the cc12m recipe runs after this one. The image rules (JPEG, sides over
400 px, aspect ratio at most 2.5) are ``cc12m_image``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from curate.schema import CAPTION
from curate.stages.base import Decision, Filter, Rule, StageParams, append_columns, first_failure
from curate.stages.registry import register
from curate.text.parts import checked_wordnet, content_words, has_determiner, has_noun, wordnet_field
from curate.text.rewrite import ORIGINAL, PhraseReplacer, rewritten_captions
from curate.text.tokens import repetition_ratio, words
from curate.text.wordnet import WordNet

PERSON = "<PERSON>"


class Cc12mCaptionParams(StageParams):
    min_words: int = Field(3, ge=0, description="keep captions with at least this many words (CC12M §2: 3)")
    max_words: int = Field(256, ge=0, description="keep captions with at most this many words (CC12M §2: 256)")
    max_repetition: float = Field(0.2, ge=0, le=1, description="drop above this share of repeated words, "
                                  "closed-class words not counted (CC12M §2: 0.2)")
    names: str | None = Field(None, description="file of person names, one per line, replaced by <PERSON> "
                              "(null: names are kept)")
    wordnet: str | None = wordnet_field()

    _wordnet = field_validator("wordnet")(checked_wordnet)

    @field_validator("names")
    @classmethod
    def _readable_names(cls, path: str | None) -> str | None:
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ValueError(f"names file {path} is not a readable file (give a text file with one person name per line)")
        return path

    @model_validator(mode="after")
    def _ordered(self) -> Cc12mCaptionParams:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words {self.min_words} is above max_words {self.max_words}")
        return self


@register
class Cc12mCaptionFilter(Filter):
    """CC12M's text filters (Changpinyo et al. 2021, §2); see the module docstring."""

    kind = "cc12m_caption"
    Params = Cc12mCaptionParams
    reads = (CAPTION,)
    writes = (CAPTION, ORIGINAL, "caption_word_count", "caption_has_determiner", "caption_has_noun",
              "caption_repetition")

    def setup(self) -> None:
        # words repeat: cached answers, as in cc3m_caption (2^18 words: ~30 MB at most)
        self._is_noun = lru_cache(maxsize=1 << 18)(WordNet.open(self.params.wordnet).is_noun)
        self._replace_names = PhraseReplacer(dict.fromkeys(read_names(self.params.names), PERSON))

    def process(self, batch: pa.Table) -> pa.Table:
        counts, determiners, nouns, repetition = [], [], [], []
        for caption in batch.column(CAPTION).to_pylist():
            tokens = words(caption or "")
            lowered = [token.lower() for token in tokens]
            counts.append(len(tokens))
            determiners.append(has_determiner(lowered))
            nouns.append(has_noun(lowered, self._is_noun))
            repetition.append(repetition_ratio(content_words(lowered)))
        captions = [c if c is None else self._replace_names(c) for c in batch.column(CAPTION).to_pylist()]
        return append_columns(batch, {
            **rewritten_captions(batch, captions),
            "caption_word_count": pa.array(counts, pa.int32()),
            "caption_has_determiner": pa.array(determiners, pa.bool_()),
            "caption_has_noun": pa.array(nouns, pa.bool_()),
            "caption_repetition": pa.array(repetition, pa.float32()),
        })

    def decide(self, scored: pa.Table) -> Decision:
        p = self.params
        count, repetition = scored.column("caption_word_count"), scored.column("caption_repetition")
        determiner, noun = scored.column("caption_has_determiner"), scored.column("caption_has_noun")
        return first_failure([
            Rule(pc.less(count, p.min_words), "too_few_words", "words", count),
            Rule(pc.greater(count, p.max_words), "too_many_words", "words", count),
            Rule(pc.invert(determiner), "missing_determiner", "has_determiner", determiner),
            Rule(pc.invert(noun), "missing_noun", "has_noun", noun),
            # float32 threshold: 2/10 scores float32(0.2), which is above the double 0.2
            Rule(pc.greater(repetition, pa.scalar(p.max_repetition, pa.float32())), "repetitive_caption",
                 "repetition", repetition),
        ])


def read_names(path: str | None) -> list[str]:
    """The names of a names file: one per line, surrounding whitespace and blank lines dropped."""
    if path is None:
        return []
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
